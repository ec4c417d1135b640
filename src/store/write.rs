//! The store's write API: each call is one [`Write`] handed to the writer
//! thread, answered once the batch holding it is on disk.

use super::record::{
    Acked, ConsumerOpened, Decision, DecisionOutcome, Destination, Escalation, ItemRecord,
    NoticeOutcome, PutOutcome, ReceiptOutcome,
};
use super::txn::Txn;
use super::wal;
use super::writer::Write;
use super::{Error, Store};
use crate::receipt::InGroup;
use crate::trust::Identity;
use std::sync::Arc;

/// A new item, or one already stored (see [`Store::put_with`]).
pub(super) struct Put {
    pub(super) id: String,
    pub(super) record: ItemRecord,
    pub(super) dest: Destination,
    pub(super) may_hold_back: bool,
}

impl Write for Put {
    type Out = PutOutcome;
    fn grows(&self) -> bool {
        true
    }
    fn lane(&self) -> u8 {
        self.record.lane()
    }
    fn bytes(&self) -> usize {
        self.record.signed.len()
    }
    fn apply(&self, txn: &mut Txn<'_>) -> Result<PutOutcome, Error> {
        txn.put(&self.id, &self.record, &self.dest, self.may_hold_back)
    }
    fn logged(&self) -> Option<wal::Logged> {
        Some(wal::Logged::of(wal::Kind::Put(wal::Put::new(
            &self.id,
            &self.record,
            &self.dest,
            self.may_hold_back,
        ))))
    }
    fn logs(&self) -> bool {
        true
    }
}

/// A put whose caller wants this node's receipt for the item, signed with
/// the other receipts of its commit.
struct PutReceipted {
    put: Put,
    /// This node's identity: the receiver the receipt names, and who signs
    /// it.
    signer: Arc<Identity>,
}

impl Write for PutReceipted {
    type Out = (PutOutcome, Option<InGroup>);
    fn grows(&self) -> bool {
        true
    }
    fn lane(&self) -> u8 {
        self.put.lane()
    }
    fn bytes(&self) -> usize {
        self.put.bytes()
    }
    fn apply(&self, txn: &mut Txn<'_>) -> Result<Self::Out, Error> {
        Ok((self.put.apply(txn)?, None))
    }
    fn logged(&self) -> Option<wal::Logged> {
        self.put.logged()
    }
    fn logs(&self) -> bool {
        self.put.logs()
    }
    fn receipt(&self, out: &Self::Out) -> Option<Vec<u8>> {
        let (PutOutcome::Stored(rec) | PutOutcome::Duplicate(rec)) = &out.0 else {
            return None;
        };
        let digest = rec.digest()?;
        Some(crate::receipt::encode(
            self.signer.node_id(),
            &rec.statement(&self.put.id, &digest),
        ))
    }
    fn seal(out: &mut Self::Out, receipt: InGroup) {
        out.1 = Some(receipt);
    }
    fn signer(&self) -> Option<&Identity> {
        Some(&self.signer)
    }
}

struct AnswerOverdue {
    id: String,
    due_ms: i64,
}

impl Write for AnswerOverdue {
    type Out = bool;
    fn apply(&self, txn: &mut Txn<'_>) -> Result<bool, Error> {
        txn.answer_overdue(&self.id, self.due_ms)
    }
}

struct Receipt {
    id: String,
    route: String,
    receipt: Vec<u8>,
    delivery: bool,
}

impl Write for Receipt {
    type Out = ReceiptOutcome;
    fn apply(&self, txn: &mut Txn<'_>) -> Result<ReceiptOutcome, Error> {
        let outcome = txn.receipt(&self.id, &self.route, &self.receipt, self.delivery)?;
        if self.delivery && outcome != ReceiptOutcome::NotPending {
            txn.delivery(&self.id, &self.receipt)?;
        }
        Ok(outcome)
    }
    fn logged(&self) -> Option<wal::Logged> {
        Some(wal::Logged::of(wal::Kind::Receipt(wal::Receipt {
            id: self.id.clone(),
            route: self.route.clone(),
            receipt: self.receipt.clone(),
            delivery: self.delivery,
        })))
    }
}

struct Delivery {
    id: String,
    receipt: Vec<u8>,
}

impl Write for Delivery {
    type Out = bool;
    fn apply(&self, txn: &mut Txn<'_>) -> Result<bool, Error> {
        txn.delivery(&self.id, &self.receipt)
    }
    fn logged(&self) -> Option<wal::Logged> {
        Some(wal::Logged::of(wal::Kind::Delivery(wal::Delivery {
            id: self.id.clone(),
            receipt: self.receipt.clone(),
        })))
    }
}

/// Applies a write read back from the write-ahead log, as it was applied
/// when first made.
pub(super) fn apply_logged(logged: &wal::Logged, txn: &mut Txn<'_>) -> Result<(), Error> {
    match &logged.kind {
        Some(wal::Kind::Put(p)) => {
            Put {
                id: p.id.clone(),
                record: p.record.clone().unwrap_or_default(),
                dest: p.dest(),
                may_hold_back: p.may_hold_back,
            }
            .apply(txn)?;
        }
        Some(wal::Kind::Receipt(r)) => {
            Receipt {
                id: r.id.clone(),
                route: r.route.clone(),
                receipt: r.receipt.clone(),
                delivery: r.delivery,
            }
            .apply(txn)?;
        }
        Some(wal::Kind::Delivery(d)) => {
            Delivery {
                id: d.id.clone(),
                receipt: d.receipt.clone(),
            }
            .apply(txn)?;
        }
        Some(wal::Kind::Note(n)) => {
            Note(crate::audit::Entry {
                kind: crate::audit::AuditKind::try_from(n.kind)
                    .unwrap_or(crate::audit::AuditKind::Unspecified),
                item_id: n.item_id.clone(),
                peer: n.peer.clone(),
                detail: n.detail.clone(),
            })
            .apply(txn)?;
        }
        Some(wal::Kind::AckDown(a)) => {
            AckDown {
                child: a.child.clone(),
                ids: a.ids.clone(),
            }
            .apply(txn)?;
        }
        None => {}
    }
    Ok(())
}

struct Decide {
    id: String,
    decision: Decision,
}

impl Write for Decide {
    type Out = DecisionOutcome;
    fn bytes(&self) -> usize {
        self.decision.signed.len()
    }
    fn apply(&self, txn: &mut Txn<'_>) -> Result<DecisionOutcome, Error> {
        txn.decide(&self.id, &self.decision)
    }
}

struct AckDownDecisions {
    child: String,
    refs: Vec<(String, String, u32)>,
}

impl Write for AckDownDecisions {
    type Out = ();
    fn apply(&self, txn: &mut Txn<'_>) -> Result<(), Error> {
        txn.ack_down_decisions(&self.child, &self.refs)
    }
}

struct Hold {
    id: String,
    holder: String,
    notice: Vec<u8>,
    routes: Vec<String>,
    max: u64,
}

impl Write for Hold {
    type Out = super::record::HoldOutcome;
    fn apply(&self, txn: &mut Txn<'_>) -> Result<super::record::HoldOutcome, Error> {
        txn.hold(&self.id, &self.holder, &self.notice, &self.routes, self.max)
    }
}

struct AckHeld {
    route: String,
    refs: Vec<(String, String)>,
}

impl Write for AckHeld {
    type Out = ();
    fn apply(&self, txn: &mut Txn<'_>) -> Result<(), Error> {
        txn.ack_held(&self.route, &self.refs)
    }
}

struct AckHistory {
    node: String,
    name: String,
    upto: u64,
}

impl Write for AckHistory {
    type Out = u64;
    fn apply(&self, txn: &mut Txn<'_>) -> Result<u64, Error> {
        txn.ack_history(&self.node, &self.name, self.upto)
    }
}

struct AckDown {
    child: String,
    ids: Vec<String>,
}

impl Write for AckDown {
    type Out = ();
    fn apply(&self, txn: &mut Txn<'_>) -> Result<(), Error> {
        txn.ack_down(&self.child, &self.ids)
    }
    fn logged(&self) -> Option<wal::Logged> {
        Some(wal::Logged::of(wal::Kind::AckDown(wal::AckDown {
            child: self.child.clone(),
            ids: self.ids.clone(),
        })))
    }
}

struct OpenConsumer {
    owner: String,
    name: String,
    max: usize,
}

impl Write for OpenConsumer {
    type Out = ConsumerOpened;
    fn apply(&self, txn: &mut Txn<'_>) -> Result<ConsumerOpened, Error> {
        txn.open_consumer(&self.owner, &self.name, self.max)
    }
}

struct AckInbox {
    owner: String,
    name: String,
    ids: Vec<String>,
}

impl Write for AckInbox {
    type Out = Option<Acked>;
    fn apply(&self, txn: &mut Txn<'_>) -> Result<Option<Acked>, Error> {
        txn.ack_inbox(&self.owner, &self.name, &self.ids)
    }
}

struct Chunks {
    id: String,
    attachment: u32,
    first: u32,
    chunks: Vec<Vec<u8>>,
}

impl Write for Chunks {
    type Out = ();
    fn grows(&self) -> bool {
        true
    }
    fn bytes(&self) -> usize {
        self.chunks.iter().map(Vec::len).sum()
    }
    fn apply(&self, txn: &mut Txn<'_>) -> Result<(), Error> {
        txn.chunks(&self.id, self.attachment, self.first, &self.chunks)
    }
}

struct UploadChunk {
    child: String,
    id: String,
    attachment: u32,
    index: u32,
    data: Vec<u8>,
}

impl Write for UploadChunk {
    type Out = ();
    fn grows(&self) -> bool {
        true
    }
    fn bytes(&self) -> usize {
        self.data.len()
    }
    fn apply(&self, txn: &mut Txn<'_>) -> Result<(), Error> {
        txn.upload_chunk(
            &self.child,
            &self.id,
            self.attachment,
            self.index,
            &self.data,
        )
    }
}

struct BeginUpload {
    child: String,
    id: String,
    announced: u64,
}

impl Write for BeginUpload {
    type Out = ();
    fn grows(&self) -> bool {
        true
    }
    fn apply(&self, txn: &mut Txn<'_>) -> Result<(), Error> {
        txn.begin_upload(&self.child, &self.id, self.announced)
    }
}

struct ReclaimUpload {
    child: String,
    id: String,
}

impl Write for ReclaimUpload {
    type Out = u64;
    fn apply(&self, txn: &mut Txn<'_>) -> Result<u64, Error> {
        txn.reclaim_upload(&self.child, &self.id)
    }
}

struct DropChunks {
    id: String,
}

impl Write for DropChunks {
    type Out = ();
    fn apply(&self, txn: &mut Txn<'_>) -> Result<(), Error> {
        txn.drop_chunks(&self.id).map(|_| ())
    }
}

struct Refuse {
    id: String,
    route: String,
    why: String,
}

impl Write for Refuse {
    type Out = bool;
    fn apply(&self, txn: &mut Txn<'_>) -> Result<bool, Error> {
        txn.refuse(&self.id, &self.route, &self.why)
    }
}

struct RefuseRoute {
    route: String,
    why: String,
    limit: usize,
}

impl Write for RefuseRoute {
    type Out = Vec<String>;
    fn apply(&self, txn: &mut Txn<'_>) -> Result<Vec<String>, Error> {
        txn.refuse_route(&self.route, &self.why, self.limit)
    }
}

struct Note(crate::audit::Entry);

impl Write for Note {
    type Out = ();
    fn apply(&self, txn: &mut Txn<'_>) -> Result<(), Error> {
        txn.note(self.0.clone());
        Ok(())
    }
    fn logged(&self) -> Option<wal::Logged> {
        Some(wal::Logged::of(wal::Kind::Note(wal::Note {
            kind: self.0.kind as i32,
            item_id: self.0.item_id.clone(),
            peer: self.0.peer.clone(),
            detail: self.0.detail.clone(),
        })))
    }
}

struct Checkpoint {
    seq: u64,
    signed: Vec<u8>,
}

impl Write for Checkpoint {
    type Out = ();
    fn apply(&self, txn: &mut Txn<'_>) -> Result<(), Error> {
        txn.checkpoint(self.seq, &self.signed)
    }
}

struct PruneAudit {
    keep_after_ms: i64,
}

impl Write for PruneAudit {
    type Out = Option<u64>;
    fn apply(&self, txn: &mut Txn<'_>) -> Result<Option<u64>, Error> {
        txn.prune_audit(self.keep_after_ms)
    }
}

struct Reroute {
    route: String,
    to: Vec<(u8, Vec<String>)>,
}

impl Write for Reroute {
    type Out = usize;
    fn apply(&self, txn: &mut Txn<'_>) -> Result<usize, Error> {
        txn.reroute(&self.route, &self.to, 512)
    }
}

struct Escalate {
    id: String,
    routes: Vec<String>,
    overdue: bool,
}

impl Write for Escalate {
    type Out = Escalation;
    fn apply(&self, txn: &mut Txn<'_>) -> Result<Escalation, Error> {
        txn.escalate(&self.id, &self.routes, self.overdue)
    }
}

struct KeepNotice {
    id: String,
    version: u32,
    previous: Vec<u8>,
    signed: Vec<u8>,
}

impl Write for KeepNotice {
    type Out = NoticeOutcome;
    fn grows(&self) -> bool {
        true
    }
    fn bytes(&self) -> usize {
        self.signed.len()
    }
    fn apply(&self, txn: &mut Txn<'_>) -> Result<NoticeOutcome, Error> {
        txn.keep_notice(&self.id, self.version, &self.previous, &self.signed)
    }
}

struct AckNotices {
    child: String,
    refs: Vec<(String, u32)>,
}

impl Write for AckNotices {
    type Out = ();
    fn apply(&self, txn: &mut Txn<'_>) -> Result<(), Error> {
        txn.ack_notices(&self.child, &self.refs)
    }
}

struct FireNotice {
    id: String,
    version: u32,
}

impl Write for FireNotice {
    type Out = bool;
    fn apply(&self, txn: &mut Txn<'_>) -> Result<bool, Error> {
        txn.fire_notice(&self.id, self.version)
    }
}

struct ImportFacts(super::record::Facts);

impl Write for ImportFacts {
    type Out = ();
    fn grows(&self) -> bool {
        true
    }
    fn apply(&self, txn: &mut Txn<'_>) -> Result<(), Error> {
        txn.import_facts(&self.0)
    }
}

struct SetTarget {
    county: String,
    year: i32,
    points: i64,
    adopted: i64,
}

impl Write for SetTarget {
    type Out = ();
    fn apply(&self, txn: &mut Txn<'_>) -> Result<(), Error> {
        txn.set_target(&self.county, self.year, self.points, self.adopted)
    }
}

impl Store {
    /// Keeps a verified version of a notice (solicitation or bulletin):
    /// only the version after the newest kept, naming its digest as
    /// `previous`. Every child is then owed it.
    pub async fn keep_notice(
        &self,
        id: String,
        version: u32,
        previous: Vec<u8>,
        signed: Vec<u8>,
    ) -> Result<NoticeOutcome, Error> {
        self.write(KeepNotice {
            id,
            version,
            previous,
            signed,
        })
        .await
    }

    /// Records that `child` has kept these notice versions.
    pub async fn ack_notices(&self, child: String, refs: Vec<(String, u32)>) -> Result<(), Error> {
        self.write(AckNotices { child, refs }).await
    }

    /// Marks a solicitation version's deadline as dealt with; returns
    /// whether this call did (false: done before, e.g. before a restart).
    pub async fn fire_notice(&self, id: String, version: u32) -> Result<bool, Error> {
        self.write(FireNotice { id, version }).await
    }

    /// Writes rows of the statistics' fact tables with no items or
    /// decisions behind them: for `zhibao bench --stats`, which measures
    /// the statistics over a year of history without making one. Never
    /// called by a node.
    #[doc(hidden)]
    pub async fn import_facts(&self, facts: super::record::Facts) -> Result<(), Error> {
        self.write(ImportFacts(facts)).await
    }

    /// Sets a county's yearly target (both zero: clears it).
    pub async fn set_target(
        &self,
        county: String,
        year: i32,
        points: i64,
        adopted: i64,
    ) -> Result<(), Error> {
        self.write(SetTarget {
            county,
            year,
            points,
            adopted,
        })
        .await
    }

    /// Stores a new item durably, or reports that its id is already taken.
    ///
    /// `record.stored_ms`, `record.seq` and `record.pending_routes` are set by
    /// the store.
    pub async fn put(
        &self,
        id: String,
        record: ItemRecord,
        dest: Destination,
    ) -> Result<PutOutcome, Error> {
        self.put_with(id, record, dest, false).await
    }

    /// Like [`Store::put`]; for a correction or withdrawal made at this
    /// origin, `may_hold_back` says the original is not on the wire now,
    /// so that if it never left it is held back (not sent).
    pub async fn put_with(
        &self,
        id: String,
        record: ItemRecord,
        dest: Destination,
        may_hold_back: bool,
    ) -> Result<PutOutcome, Error> {
        self.write(Put {
            id,
            record,
            dest,
            may_hold_back,
        })
        .await
    }

    /// Like [`Store::put_with`], and also this node's receipt for the item
    /// (unless it conflicts), naming `signer`'s node as the receiver: a
    /// place in its commit's receipt group, which the writer signs as
    /// `signer` while the commit goes to the disk.
    pub async fn put_receipted(
        &self,
        id: String,
        record: ItemRecord,
        dest: Destination,
        may_hold_back: bool,
        signer: Arc<Identity>,
    ) -> Result<(PutOutcome, Option<InGroup>), Error> {
        self.write(PutReceipted {
            put: Put {
                id,
                record,
                dest,
                may_hold_back,
            },
            signer,
        })
        .await
    }

    /// Marks the answer due on `id` at `due_ms` overdue (once); returns
    /// whether this call marked it.
    pub async fn answer_overdue(&self, id: String, due_ms: i64) -> Result<bool, Error> {
        self.write(AnswerOverdue { id, due_ms }).await
    }

    /// Records `route`'s verified receipt for an item queued on it. The
    /// first receipt settles the item; a non-emergency item then leaves
    /// every route. A delivery receipt (from the final hub itself) is also
    /// kept as the item's delivery proof and queued to go down to the child
    /// it came from.
    pub async fn record_receipt(
        &self,
        id: String,
        route: String,
        receipt: Vec<u8>,
        delivery: bool,
    ) -> Result<ReceiptOutcome, Error> {
        self.write(Receipt {
            id,
            route,
            receipt,
            delivery,
        })
        .await
    }

    /// Keeps a verified delivery receipt that travelled down for an item
    /// this node forwarded, and queues it for the child the item came from.
    /// Returns whether the item is known here.
    pub async fn record_delivery(&self, id: String, receipt: Vec<u8>) -> Result<bool, Error> {
        self.write(Delivery { id, receipt }).await
    }

    /// Keeps a verified office decision on item `id`, in its deciding
    /// node's order, and queues it for the child the item came from.
    pub async fn decide(&self, id: String, decision: Decision) -> Result<DecisionOutcome, Error> {
        self.write(Decide { id, decision }).await
    }

    /// Forgets decisions `child` has acknowledged: (item, deciding node,
    /// number).
    pub async fn ack_down_decisions(
        &self,
        child: String,
        refs: Vec<(String, String, u32)>,
    ) -> Result<(), Error> {
        self.write(AckDownDecisions { child, refs }).await
    }

    /// Keeps a verified held notice (item `id` held by `holder`) and queues
    /// it to go up `routes`; not if the item already arrived here, nor a
    /// new one while `max` are kept.
    pub async fn hold(
        &self,
        id: String,
        holder: String,
        notice: Vec<u8>,
        routes: Vec<String>,
        max: u64,
    ) -> Result<super::record::HoldOutcome, Error> {
        self.write(Hold {
            id,
            holder,
            notice,
            routes,
            max,
        })
        .await
    }

    /// Forgets held notices `route` has kept: (item, holder).
    pub async fn ack_held(&self, route: String, refs: Vec<(String, String)>) -> Result<(), Error> {
        self.write(AckHeld { route, refs }).await
    }

    /// Records that consumer (`node`, `name`) processed the history up to
    /// `upto`; returns its position (never moved back).
    pub async fn ack_history(&self, node: String, name: String, upto: u64) -> Result<u64, Error> {
        self.write(AckHistory { node, name, upto }).await
    }

    /// Forgets delivery receipts `child` has acknowledged.
    pub async fn ack_down(&self, child: String, ids: Vec<String>) -> Result<(), Error> {
        self.write(AckDown { child, ids }).await
    }

    /// Opens the durable inbox consumer `name` of the certificate `owner`:
    /// registers it if it is new and `owner` has fewer than `max`.
    pub async fn open_consumer(
        &self,
        owner: String,
        name: String,
        max: usize,
    ) -> Result<ConsumerOpened, Error> {
        self.write(OpenConsumer { owner, name, max }).await
    }

    /// Records that the durable consumer `name` of `owner` has processed
    /// the inbox items `ids`; `None` if there is no such consumer. Ids of
    /// no inbox item are ignored and returned.
    pub async fn ack_inbox(
        &self,
        owner: String,
        name: String,
        ids: Vec<String>,
    ) -> Result<Option<Acked>, Error> {
        self.write(AckInbox { owner, name, ids }).await
    }

    /// Stores chunks `first`, `first + 1`, … of an attachment durably.
    pub async fn put_chunks(
        &self,
        id: String,
        attachment: u32,
        first: u32,
        chunks: Vec<Vec<u8>>,
    ) -> Result<(), Error> {
        self.write(Chunks {
            id,
            attachment,
            first,
            chunks,
        })
        .await
    }

    /// Stores one chunk of a child's upload durably, counting it against
    /// the child's partial uploads until the item is stored.
    pub async fn upload_chunk(
        &self,
        child: String,
        id: String,
        attachment: u32,
        index: u32,
        data: Vec<u8>,
    ) -> Result<(), Error> {
        self.write(UploadChunk {
            child,
            id,
            attachment,
            index,
            data,
        })
        .await
    }

    /// Records that `child` announced an upload of `announced` bytes for
    /// item `id`; it counts against the child's quota until stored or
    /// reclaimed.
    pub async fn begin_upload(
        &self,
        child: String,
        id: String,
        announced: u64,
    ) -> Result<(), Error> {
        self.write(BeginUpload {
            child,
            id,
            announced,
        })
        .await
    }

    /// Forgets a child's abandoned partial upload and its chunks (unless
    /// the item was stored meanwhile); returns the bytes given back.
    pub async fn reclaim_upload(&self, child: String, id: String) -> Result<u64, Error> {
        self.write(ReclaimUpload { child, id }).await
    }

    /// Forgets every stored chunk of an item (a transfer that did not verify).
    pub async fn drop_chunks(&self, id: String) -> Result<(), Error> {
        self.write(DropChunks { id }).await
    }

    /// Takes an item off `route` after a permanent refusal; when no route is
    /// left and none receipted it, the item is marked refused.
    pub async fn record_refusal(
        &self,
        id: String,
        route: String,
        why: String,
    ) -> Result<bool, Error> {
        self.write(Refuse { id, route, why }).await
    }

    /// Takes up to `limit` items off `route` because the upstream refuses
    /// this node (its certificate) for good; returns their ids. Items left
    /// on no route are marked refused.
    pub async fn refuse_route(
        &self,
        route: String,
        why: String,
        limit: usize,
    ) -> Result<Vec<String>, Error> {
        self.write(RefuseRoute { route, why, limit }).await
    }

    /// Writes an event that is not a change to the tables (an item sent on
    /// a route, a revoked peer cut off) to the custody log.
    pub async fn log(&self, entry: crate::audit::Entry) -> Result<(), Error> {
        self.write(Note(entry)).await
    }

    /// Like [`Store::log`], without waiting for the commit: for events on
    /// the hot path (an item put on the wire). The record keeps its place
    /// behind writes already handed to the writer.
    pub fn log_soon(&self, entry: crate::audit::Entry) {
        let (reply, _) = tokio::sync::oneshot::channel();
        let job: Box<dyn super::writer::Job> = Box::new(super::writer::Pending {
            write: Note(entry),
            out: None,
            reply,
            pressed: None,
        });
        // Never committed here, but counted: a write that comes while it
        // waits keeps its place behind it.
        let _ = self.inner.pending.arrive();
        match self.inner.ops.try_send(job) {
            Ok(()) => {}
            Err(tokio::sync::mpsc::error::TrySendError::Full(job)) => {
                let inner = self.inner.clone();
                tokio::spawn(async move {
                    if inner.ops.send(job).await.is_err() {
                        inner.pending.done(1);
                    }
                });
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => self.inner.pending.done(1),
        }
    }

    /// Keeps a signed checkpoint of the custody log's head at `seq`.
    pub async fn put_checkpoint(&self, seq: u64, signed: Vec<u8>) -> Result<(), Error> {
        self.write(Checkpoint { seq, signed }).await
    }

    /// Deletes custody-log records older than `keep_after_ms` (Unix ms),
    /// but only through a signed checkpoint, which is kept so the rest
    /// still verifies; returns the seq pruned through, if any.
    pub async fn prune_audit(&self, keep_after_ms: i64) -> Result<Option<u64>, Error> {
        self.write(PruneAudit { keep_after_ms }).await
    }

    /// Moves every item queued on `route`, no longer configured, to the
    /// routes its lane starts on (`to`: lane → routes); answers how many.
    pub async fn reroute(&self, route: String, to: Vec<(u8, Vec<String>)>) -> Result<usize, Error> {
        let mut total = 0;
        loop {
            let n = self
                .write(Reroute {
                    route: route.clone(),
                    to: to.clone(),
                })
                .await?;
            total += n;
            if n < 512 {
                return Ok(total);
            }
        }
    }

    /// Queues an unsettled item on more `routes`; with `overdue`, also marks
    /// it overdue (once).
    pub async fn escalate(
        &self,
        id: String,
        routes: Vec<String>,
        overdue: bool,
    ) -> Result<Escalation, Error> {
        self.write(Escalate {
            id,
            routes,
            overdue,
        })
        .await
    }
}
