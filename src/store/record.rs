//! What the store keeps per item, and what its writes answer.

/// The lifecycle of an item in this store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum RecordState {
    /// Waiting for a first receipt from upstream.
    Queued = 1,
    /// An upstream has signed a receipt for it (the deadline is settled).
    Receipted = 2,
    /// Every route refused it for a reason a retry cannot fix.
    Refused = 3,
    /// Stored here as its final destination (a hub's inbox).
    Delivered = 4,
    /// Withdrawn at this origin before it left: kept, never sent.
    Withdrawn = 5,
    /// Corrected at this origin before it left: kept, never sent.
    Superseded = 6,
}

impl RecordState {
    fn from_i32(v: i32) -> Option<Self> {
        [
            Self::Queued,
            Self::Receipted,
            Self::Refused,
            Self::Delivered,
            Self::Withdrawn,
            Self::Superseded,
        ]
        .into_iter()
        .find(|s| *s as i32 == v)
    }
}

/// Who handed an item over when it was submitted on this node.
pub const FROM_OPERATOR: &str = "operator";

/// One stored item. Encoded with protobuf so fields can be added later.
///
/// Every receipt in a record (`receipt`, `route_receipts`, `delivery`) was
/// verified — signer, CA, CRL, item, digest — before it was stored: the
/// store takes no receipt that did not.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ItemRecord {
    /// The encoded `SignedReport`, exactly as received or sealed.
    #[prost(bytes = "vec", tag = "1")]
    pub signed: Vec<u8>,
    /// Lane (class) number, see [`crate::class::Class::lane`].
    #[prost(uint32, tag = "2")]
    pub lane: u32,
    /// [`RecordState`] as a number.
    #[prost(int32, tag = "3")]
    pub state: i32,
    /// When the origin created the report, Unix ms.
    #[prost(int64, tag = "4")]
    pub created_ms: i64,
    /// When this store committed the item, Unix ms.
    #[prost(int64, tag = "5")]
    pub stored_ms: i64,
    /// When a receipt is due, Unix ms.
    #[prost(int64, tag = "6")]
    pub deadline_ms: i64,
    /// When the first upstream receipt was stored, Unix ms.
    #[prost(int64, tag = "7")]
    pub receipted_ms: i64,
    /// The first upstream's encoded `SignedReceipt`, once it came.
    #[prost(bytes = "vec", tag = "8")]
    pub receipt: Vec<u8>,
    /// Why the upstream refused the item, if it did.
    #[prost(string, tag = "9")]
    pub refusal: String,
    /// SHA-256 of the signed report bytes.
    #[prost(bytes = "vec", tag = "10")]
    pub sha256: Vec<u8>,
    /// Sequence number in the queue or in the inbox lane.
    #[prost(uint64, tag = "11")]
    pub seq: u64,
    /// Who handed the item to us: [`FROM_OPERATOR`] or a child's node id.
    #[prost(string, tag = "12")]
    pub from: String,
    /// Routes the item is queued on and not yet receipted by.
    #[prost(string, repeated, tag = "13")]
    pub pending_routes: Vec<String>,
    /// Every route's receipt, in the order they came.
    #[prost(message, repeated, tag = "14")]
    pub route_receipts: Vec<RouteReceiptRecord>,
    /// When the deadline passed with no receipt, Unix ms (0 = not overdue).
    #[prost(int64, tag = "15")]
    pub overdue_ms: i64,
    /// When the item was first escalated to more routes, Unix ms.
    #[prost(int64, tag = "16")]
    pub escalated_ms: i64,
    /// The final hub's encoded `SignedReceipt` of kind delivery, once known.
    #[prost(bytes = "vec", tag = "17")]
    pub delivery: Vec<u8>,
    /// How many attachments the report names (they travel in chunks).
    #[prost(uint32, tag = "18")]
    pub attachments: u32,
    /// How many office decisions on the item are kept here.
    #[prost(uint32, tag = "19")]
    pub decisions: u32,
    /// The kind (`DispositionKind`) of the latest decision, 0 = none yet.
    #[prost(int32, tag = "20")]
    pub decided: i32,
    /// When the item was closed (办结), Unix ms (0 = still open).
    #[prost(int64, tag = "21")]
    pub closed_ms: i64,
    /// While the item is returned for more information: when the answer is
    /// due, Unix ms (0 = no answer awaited).
    #[prost(int64, tag = "22")]
    pub answer_by_ms: i64,
    /// `LinkKind` of the report: what it does to `links_to` (0 = none).
    #[prost(int32, tag = "23")]
    pub link: i32,
    /// The earlier report of the same origin this one follows up.
    #[prost(string, tag = "24")]
    pub links_to: String,
    /// The report of the origin that withdrew this one, once known here.
    #[prost(string, tag = "25")]
    pub withdrawn_by: String,
    /// The report of the origin that corrected this one, once known here.
    #[prost(string, tag = "26")]
    pub corrected_by: String,
    /// Reports of the origin that add to this one, as they arrived here.
    #[prost(string, repeated, tag = "27")]
    pub supplements: Vec<String>,
    /// When the answer deadline passed with no supplement, Unix ms.
    #[prost(int64, tag = "28")]
    pub answer_overdue_ms: i64,
    /// The solicitation (约稿) the report answers; empty if none.
    #[prost(string, tag = "40")]
    pub answers: String,
    /// The report's origin, for the statistics kept at a hub.
    #[prost(string, tag = "41")]
    pub origin: String,
    /// The report's title, likewise.
    #[prost(string, tag = "42")]
    pub title: String,
    /// The origin's sign-off report (把关) of this one, once known here.
    #[prost(string, tag = "29")]
    pub reviewed_by: String,
    /// The report's priority; with `origin` and `title`, what a person still
    /// reads of the item once its body is pruned.
    #[prost(int32, tag = "43")]
    pub priority: i32,
    /// When the body and attachments were pruned after the retention
    /// period (at a hub: archived first), Unix ms; 0 = still held.
    #[prost(int64, tag = "44")]
    pub pruned_ms: i64,
    /// How many bytes of body and attachments were pruned.
    #[prost(uint64, tag = "45")]
    pub pruned_bytes: u64,
    /// Where the signed report bytes are kept when not in `signed`: in a
    /// segment of the store's log (see `store::bodies`). The store's reads
    /// put them back in `signed`, checked against their CRC-32.
    #[prost(message, optional, tag = "46")]
    pub body: Option<BodyRef>,
}

/// Where a report's bytes lie in the store's log: the segment, the offset
/// in its file and the length. Written once, with the frame that made the
/// item durable; the bytes move only into the row itself, when the rest
/// of their segment has been pruned (see `store::compact`).
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct BodyRef {
    /// The log's segment (see `store::bodies`).
    #[prost(uint64, tag = "1")]
    pub segment: u64,
    /// The report's first byte in the segment's file.
    #[prost(uint64, tag = "2")]
    pub offset: u64,
    /// The report's length, bytes.
    #[prost(uint32, tag = "3")]
    pub len: u32,
    /// CRC-32 of the report's bytes, checked at every read.
    #[prost(fixed32, tag = "4")]
    pub crc32: u32,
}

/// What a person reads of an item at a glance, from its body or, once the
/// body is pruned, from what the record kept of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Brief {
    /// The node that wrote the report.
    pub origin: String,
    /// `Priority` as a number.
    pub priority: i32,
    /// The report's title.
    pub title: String,
}

/// One route's receipt for an item.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RouteReceiptRecord {
    /// The route (upstream node id).
    #[prost(string, tag = "1")]
    pub route: String,
    /// The encoded `SignedReceipt`.
    #[prost(bytes = "vec", tag = "2")]
    pub receipt: Vec<u8>,
}

impl ItemRecord {
    /// The record's state, if it is one this version knows.
    pub fn state(&self) -> Option<RecordState> {
        RecordState::from_i32(self.state)
    }

    /// The lane the record is scheduled in (an unknown one is the lowest).
    pub fn lane(&self) -> u8 {
        u8::try_from(self.lane).unwrap_or(2).min(2)
    }

    /// What this node's receipt for the item states: custody while it is on
    /// its way further up, delivery once it is in this (final) node's inbox.
    pub fn statement<'a>(
        &'a self,
        id: &'a str,
        digest: &'a [u8; 32],
    ) -> crate::receipt::Statement<'a> {
        let kind = if self.state() == Some(RecordState::Delivered) {
            crate::proto::ReceiptKind::Delivery
        } else {
            crate::proto::ReceiptKind::Custody
        };
        crate::receipt::Statement {
            item_id: id,
            report_sha256: digest,
            stored_unix_ms: self.stored_ms,
            kind,
            on_time: self.stored_ms <= self.deadline_ms,
        }
    }

    /// SHA-256 of the signed report bytes, if the record holds one.
    pub fn digest(&self) -> Option<[u8; 32]> {
        self.sha256.as_slice().try_into().ok()
    }

    /// Of a record a store read handed out: whether it points at a report
    /// kept in the log that the read could not put back (damaged on the
    /// disk: see `store::bodies`); its `signed` is then empty.
    pub fn unreadable(&self) -> bool {
        self.body.is_some() && self.signed.is_empty()
    }

    /// Whether the report's bytes are kept: in the record, or in the log
    /// where it points (see [`ItemRecord::body`]).
    pub fn has_body(&self) -> bool {
        !self.signed.is_empty() || self.body.is_some()
    }

    /// Whether the body and attachments were pruned (the digest, receipts
    /// and decisions are still here).
    pub fn is_pruned(&self) -> bool {
        self.pruned_ms != 0
    }

    /// Origin, priority and title: from the body while it is here.
    pub fn brief(&self) -> Brief {
        use prost::Message;
        // Empty bytes decode as an empty report: the record's own fields
        // are what is left then (a body pruned, or kept in the log).
        let report = (!self.signed.is_empty())
            .then(|| crate::proto::SignedReport::decode(self.signed.as_slice()).ok())
            .flatten()
            .and_then(|s| crate::proto::Report::decode(s.report.as_slice()).ok());
        match report {
            Some(r) if !self.is_pruned() => Brief {
                origin: r.origin,
                priority: r.priority,
                title: r.title,
            },
            _ => Brief {
                origin: self.origin.clone(),
                priority: self.priority,
                title: self.title.clone(),
            },
        }
    }

    /// Whether the final hub is known to have the item: its delivery
    /// receipt came down, or the first upstream receipt was one (the
    /// upstream is the final hub).
    pub fn delivery_known(&self) -> bool {
        if !self.delivery.is_empty() {
            return true;
        }
        use prost::Message;
        crate::proto::SignedReceipt::decode(self.receipt.as_slice())
            .ok()
            .and_then(|s| crate::receipt::peek(&s))
            .is_some_and(|r| r.kind == crate::proto::ReceiptKind::Delivery as i32)
    }
}

/// Which items' bodies and attachments may go, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// A node that forwards: items the final hub is known to have, whose
    /// first receipt came at least `keep_ms` ago.
    Delivered {
        /// The retention period, ms.
        keep_ms: i64,
    },
    /// The final hub: items in its inbox stored at least `keep_ms` ago
    /// (archived before they are pruned).
    Archive {
        /// How long items stay in the store, ms.
        keep_ms: i64,
    },
}

impl Retention {
    /// Whether `rec` may be pruned at `now_ms` under this rule. Never an
    /// item not yet delivered, one whose origin owes an answer on it, or
    /// one already pruned.
    pub fn allows(&self, rec: &ItemRecord, now_ms: i64) -> bool {
        if rec.is_pruned() || !rec.has_body() || rec.answer_by_ms != 0 {
            return false;
        }
        match *self {
            Self::Delivered { keep_ms } => {
                rec.state() == Some(RecordState::Receipted)
                    && rec.pending_routes.is_empty()
                    && rec.delivery_known()
                    && rec.receipted_ms.saturating_add(keep_ms) <= now_ms
            }
            Self::Archive { keep_ms } => {
                rec.state() == Some(RecordState::Delivered)
                    && rec.stored_ms.saturating_add(keep_ms) <= now_ms
            }
        }
    }
}

/// Where a new item goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Into the forwarding queue of these routes (this node has upstreams).
    Queue(Vec<String>),
    /// Into the inbox (this node is the hub).
    Inbox,
}

/// What became of a [`crate::store::Store::put`].
#[derive(Debug, Clone)]
pub enum PutOutcome {
    /// Stored now; the record carries the commit time and sequence.
    Stored(ItemRecord),
    /// Already stored with the same bytes; the original record.
    Duplicate(ItemRecord),
    /// Already stored with *different* bytes under the same id.
    Conflict(ItemRecord),
}

/// What a receipt did to an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptOutcome {
    /// The item is not queued on that route (unknown item, or a repeat).
    NotPending,
    /// The first receipt: the item's deadline is settled.
    Settled,
    /// A further route's receipt, kept as proof.
    Proof,
}

/// A verified decision to keep: what the store needs to know of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// The encoded `SignedDisposition`, exactly as signed.
    pub signed: Vec<u8>,
    /// The deciding node.
    pub node: String,
    /// Its number in that node's history of the item.
    pub seq: u32,
    /// The digest of that node's decision before (empty for the first).
    pub previous: Vec<u8>,
    /// `DispositionKind` as a number.
    pub kind: i32,
    /// Its text (outlet, reason, question…), for the statistics.
    pub text: String,
    /// When it was decided, Unix ms.
    pub at_ms: i64,
    /// For a returned item, when the answer is due, Unix ms.
    pub answer_by_ms: i64,
    /// The decider's delivery receipt for the item, when it came with the
    /// decision (kept as the item's delivery proof if none is yet).
    pub delivery: Option<Vec<u8>>,
}

/// What became of a held notice handed to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldOutcome {
    /// Kept (or already kept) and queued to go up.
    Kept,
    /// The item itself is here already: nothing to keep.
    Arrived,
    /// As many notices as this node keeps are kept already.
    Full,
}

/// What an entry of the history is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum HistoryKind {
    /// An encoded `SignedDisposition`.
    Decision = 1,
    /// An encoded `SignedHeldNotice`.
    Held = 2,
}

impl HistoryKind {
    /// The kind stored as `n`, if this version knows it.
    pub fn from_u8(n: u8) -> Option<Self> {
        [Self::Decision, Self::Held]
            .into_iter()
            .find(|k| *k as u8 == n)
    }
}

/// What became of a decision handed to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecisionOutcome {
    /// Kept now, as the item's `n`-th decision here.
    Stored(u32),
    /// Already kept, byte for byte.
    Duplicate,
    /// The item is not in this store.
    UnknownItem,
    /// The deciding node's decision with that number is already kept with
    /// other bytes.
    Conflict,
    /// Not the next in the deciding node's history: it expects `expected`
    /// (a gap or a reordering), or the previous digest does not match.
    OutOfOrder {
        /// The number it expects next.
        expected: u32,
    },
}

/// A child's partial uploads, as its quota counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UploadUsage {
    /// How many.
    pub count: usize,
    /// Their bytes on disk.
    pub bytes: u64,
    /// Their bytes announced (what they will hold when complete).
    pub announced: u64,
    /// The bytes the one asked about announced, if it is one of them.
    pub this: Option<u64>,
}

/// What an escalation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Escalation {
    /// Routes the item was newly queued on.
    pub added: Vec<String>,
    /// Whether this call marked the item overdue.
    pub newly_overdue: bool,
}

/// How far a durable consumer of the inbox has acknowledged: in each lane,
/// every item up to `floors[lane]`, and `above` more beyond the floors
/// (kept one row each until the gap below them fills).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConsumerPosition {
    /// Per lane, the sequence up to which every item is acknowledged.
    pub floors: [u64; 3],
    /// Items acknowledged above their lane's floor.
    pub above: u64,
}

impl ConsumerPosition {
    pub(super) const fn from_row(row: (u64, u64, u64, u64)) -> Self {
        Self {
            floors: [row.0, row.1, row.2],
            above: row.3,
        }
    }

    pub(super) const fn row(self) -> (u64, u64, u64, u64) {
        (self.floors[0], self.floors[1], self.floors[2], self.above)
    }

    /// Inbox items not acknowledged, when each lane's last item has
    /// sequence `last[lane]`.
    pub fn pending(self, last: [u64; 3]) -> u64 {
        last.iter()
            .zip(self.floors)
            .map(|(l, f)| l.saturating_sub(f))
            .sum::<u64>()
            .saturating_sub(self.above)
    }
}

/// What opening a durable consumer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerOpened {
    /// It existed: it resumes where it was.
    Existing,
    /// It is new: nothing of the inbox is acknowledged yet.
    Created,
    /// It is new and its certificate already has the most it may have.
    TooMany,
}

/// What an acknowledgement did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acked {
    /// Inbox items the consumer has not acknowledged, after it.
    pub pending: u64,
    /// The ids that name no item of the inbox (ignored).
    pub unknown: Vec<String>,
}

/// Inbox items a durable consumer has not acknowledged, read in lane
/// order from a position.
#[derive(Debug, Clone, Default)]
pub struct Backlog {
    /// (lane, sequence, id, record), most urgent lane first.
    pub items: Vec<(u8, u64, String, ItemRecord)>,
    /// Per lane, the last sequence looked at (acknowledged or not): where
    /// the next read goes on from.
    pub upto: [u64; 3],
    /// Whether every lane was read to its end (else the read stopped at
    /// its limit or its scan budget, and there may be more).
    pub exhausted: bool,
}

/// What keeping a version of a notice did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoticeOutcome {
    /// Kept: it is the newest version here now.
    Stored,
    /// This very version was kept before.
    Duplicate,
    /// A different notice with this id and version is kept.
    Conflict,
    /// Not the next version, or its link to the one before is wrong.
    OutOfOrder {
        /// The version that was due.
        expected: u32,
    },
}

/// What the statistics count, as stored in the fact tables.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Items of the inbox.
    pub items: Vec<ItemFact>,
    /// Decisions kept.
    pub decisions: Vec<DecisionFact>,
}

/// One item of a hub's inbox, as the statistics see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemFact {
    /// Item id.
    pub id: String,
    /// Its origin.
    pub origin: String,
    /// Its lane (class).
    pub lane: u8,
    /// Its title.
    pub title: String,
    /// When the origin created it, Unix ms.
    pub created_ms: i64,
    /// When it was stored here, Unix ms.
    pub arrived_ms: i64,
    /// Its receipt deadline, Unix ms.
    pub deadline_ms: i64,
    /// `LinkKind`.
    pub link: u8,
    /// The solicitation it answers, or empty.
    pub answers: String,
}

/// One decision kept, as the statistics see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecisionFact {
    /// The item.
    pub item_id: String,
    /// The deciding node.
    pub node: String,
    /// Its number in that node's history of the item.
    pub seq: u32,
    /// `DispositionKind`.
    pub kind: u8,
    /// Outlet, reason, note…
    pub text: String,
    /// When it was decided, Unix ms.
    pub at_ms: i64,
    /// When the item was created, Unix ms (to find its fact row).
    pub item_created_ms: i64,
}
