//! What each write does to the tables, inside the one transaction the writer
//! commits for its whole batch. Nothing here waits, signs or verifies.

use redb::{ReadableTable, ReadableTableMetadata, Table, WriteTransaction};

use super::record::{
    Acked, ConsumerOpened, ConsumerPosition, Decision, DecisionOutcome, Destination, Escalation,
    FROM_OPERATOR, ItemRecord, PutOutcome, ReceiptOutcome, RecordState, RouteReceiptRecord,
};
use super::record::{BodyRef, HistoryKind, HoldOutcome, NoticeOutcome, Retention};
use super::tables::{
    ANSWERS, AUDIT, AUDIT_CHECKPOINTS, CHUNKS, CONSUMER_ACKS, CONSUMERS, DEADLINES, DECISION_FACTS,
    DECISIONS, DOWN, DOWN_DECISIONS, HELD, HELD_UP, HISTORY, HISTORY_ACKS, INBOX, ITEM_FACTS,
    ITEMS, META, NOTICE_ACKS, NOTICE_FIRED, NOTICES, OVERDUE, QUEUE, REVIEWS, REVIEWS_RETURNED,
    SEGMENTS, SOL_ANSWERS, TARGETS, UPLOADS, meta,
};
use super::tables::{DecisionFactKey, ItemFactRow};
use super::{Error, decode, encode};
use crate::audit::{AuditKind, Chain, Entry};

/// What a committed batch changed, for the watchers woken after the commit.
#[derive(Debug, Default)]
pub(super) struct Effects {
    /// Items whose record changed.
    pub(super) changed: Vec<String>,
    /// Something was queued on a route.
    pub(super) queued: bool,
    /// Something arrived in the inbox.
    pub(super) inboxed: bool,
    /// The delivery receipts to push down changed.
    pub(super) down: bool,
    /// An answer deadline was set.
    pub(super) answers: bool,
    /// Held notices to send up changed.
    pub(super) held_up: bool,
    /// Something was added to the history.
    pub(super) history: bool,
    /// A notice was kept or acknowledged.
    pub(super) notices: bool,
    /// A segment of the log lost its last report (see `store::bodies`).
    pub(super) segment_freed: bool,
    /// What the batch did, for the custody log.
    pub(super) audit: Vec<Entry>,
}

/// `consumers`: (node id, name) → floors per lane and acks above them.
type ConsumersTable<'t> = Table<'t, (&'static str, &'static str), (u64, u64, u64, u64)>;
/// `item_facts`: (created ms, id) → the statistics' row of an inbox item.
type ItemFactsTable<'t> = Table<'t, (i64, &'static str), ItemFactRow<'static>>;
/// `decision_facts`: (decided ms, id, node, n) → (kind, text, created ms).
type DecisionFactsTable<'t> = Table<'t, DecisionFactKey<'static>, (u8, &'static str, i64)>;
/// `queue`: (route, lane, deadline ms, seq) → item id.
type QueueTable<'t> = Table<'t, (&'static str, u8, i64, u64), &'static str>;
/// `chunks`: (item id, attachment, index) → bytes.
type ChunksTable<'t> = Table<'t, (&'static str, u32, u32), &'static [u8]>;
/// `uploads`: (child, item id) → (bytes stored, last touched ms, bytes announced).
type UploadsTable<'t> = Table<'t, (&'static str, &'static str), (u64, i64, u64)>;
/// `consumer_acks`: (node id, name, lane, seq) → ().
type ConsumerAcksTable<'t> = Table<'t, (&'static str, &'static str, u8, u64), ()>;

/// The table in `slot`, opened in `txn` on first use: opening every table
/// in every transaction costs each commit (one item at a time pays it per
/// item), and most batches touch few.
fn opened<'s, 't, K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &'t WriteTransaction,
    slot: &'s mut Option<Table<'t, K, V>>,
    definition: redb::TableDefinition<'_, K, V>,
) -> Result<&'s mut Table<'t, K, V>, Error> {
    if slot.is_none() {
        *slot = Some(txn.open_table(definition)?);
    }
    slot.as_mut().ok_or(Error::Closed)
}

/// The tables of one write transaction, the batch's commit time and what
/// the batch changed.
pub(super) struct Txn<'t> {
    /// The transaction, for the tables opened only when a write needs them.
    txn: &'t WriteTransaction,
    items: Table<'t, &'static str, &'static [u8]>,
    queue: Option<QueueTable<'t>>,
    deadlines: Option<Table<'t, (i64, u64), &'static str>>,
    overdue: Option<Table<'t, (i64, u64), &'static str>>,
    inbox: Table<'t, (u8, u64), &'static str>,
    down: Option<Table<'t, (&'static str, &'static str), i64>>,
    decisions: Option<Table<'t, (&'static str, u32), &'static [u8]>>,
    answers: Option<Table<'t, (i64, &'static str), ()>>,
    held: Option<Table<'t, (&'static str, &'static str), &'static [u8]>>,
    held_up: Option<Table<'t, (&'static str, &'static str, &'static str), i64>>,
    history: Option<Table<'t, u64, (u8, &'static [u8])>>,
    history_acks: Option<Table<'t, (&'static str, &'static str), u64>>,
    down_decisions: Option<Table<'t, (&'static str, &'static str, u32), i64>>,
    chunks: Option<ChunksTable<'t>>,
    uploads: Option<UploadsTable<'t>>,
    consumers: Option<ConsumersTable<'t>>,
    consumer_acks: Option<ConsumerAcksTable<'t>>,
    meta: Table<'t, &'static str, u64>,
    log: Table<'t, u64, &'static [u8]>,
    checkpoints: Option<Table<'t, u64, &'static [u8]>>,
    sol_answers: Option<Table<'t, (&'static str, &'static str, &'static str), i64>>,
    item_facts: Option<ItemFactsTable<'t>>,
    decision_facts: Option<DecisionFactsTable<'t>>,
    /// Unix ms the batch is stamped with.
    pub(super) now: i64,
    pub(super) fx: Effects,
    /// Where the log's frame holds the report of the write being applied,
    /// if it does: a new item's row then points there instead of holding
    /// it (set by the writer for each write of a logged batch).
    pub(super) body: Option<BodyRef>,
    /// Rows pointing into each segment of the log, gained or lost by this
    /// batch, written to `segments` by [`Txn::count_bodies`].
    bodies: Vec<(u64, i64)>,
}

impl<'t> Txn<'t> {
    pub(super) fn open(txn: &'t WriteTransaction, now: i64) -> Result<Self, Error> {
        Ok(Self {
            txn,
            items: txn.open_table(ITEMS)?,
            queue: None,
            deadlines: None,
            overdue: None,
            inbox: txn.open_table(INBOX)?,
            down: None,
            decisions: None,
            answers: None,
            held: None,
            held_up: None,
            history: None,
            history_acks: None,
            down_decisions: None,
            chunks: None,
            uploads: None,
            consumers: None,
            consumer_acks: None,
            meta: txn.open_table(META)?,
            log: txn.open_table(AUDIT)?,
            checkpoints: None,
            sol_answers: None,
            item_facts: None,
            decision_facts: None,
            now,
            fx: Effects::default(),
            body: None,
            bodies: Vec::new(),
        })
    }

    // Tables most batches never touch are opened on first use (see
    // `opened`).

    fn sol_answers(
        &mut self,
    ) -> Result<&mut Table<'t, (&'static str, &'static str, &'static str), i64>, Error> {
        opened(self.txn, &mut self.sol_answers, SOL_ANSWERS)
    }

    fn queue(&mut self) -> Result<&mut QueueTable<'t>, Error> {
        opened(self.txn, &mut self.queue, QUEUE)
    }

    fn deadlines(&mut self) -> Result<&mut Table<'t, (i64, u64), &'static str>, Error> {
        opened(self.txn, &mut self.deadlines, DEADLINES)
    }

    fn chunk_table(&mut self) -> Result<&mut ChunksTable<'t>, Error> {
        opened(self.txn, &mut self.chunks, CHUNKS)
    }

    fn uploads(&mut self) -> Result<&mut UploadsTable<'t>, Error> {
        opened(self.txn, &mut self.uploads, UPLOADS)
    }

    fn item_facts(&mut self) -> Result<&mut ItemFactsTable<'t>, Error> {
        opened(self.txn, &mut self.item_facts, ITEM_FACTS)
    }

    fn decision_facts(&mut self) -> Result<&mut DecisionFactsTable<'t>, Error> {
        opened(self.txn, &mut self.decision_facts, DECISION_FACTS)
    }

    fn overdue(&mut self) -> Result<&mut Table<'t, (i64, u64), &'static str>, Error> {
        opened(self.txn, &mut self.overdue, OVERDUE)
    }

    fn down(&mut self) -> Result<&mut Table<'t, (&'static str, &'static str), i64>, Error> {
        opened(self.txn, &mut self.down, DOWN)
    }

    fn decisions(&mut self) -> Result<&mut Table<'t, (&'static str, u32), &'static [u8]>, Error> {
        opened(self.txn, &mut self.decisions, DECISIONS)
    }

    fn answers(&mut self) -> Result<&mut Table<'t, (i64, &'static str), ()>, Error> {
        opened(self.txn, &mut self.answers, ANSWERS)
    }

    fn held(
        &mut self,
    ) -> Result<&mut Table<'t, (&'static str, &'static str), &'static [u8]>, Error> {
        opened(self.txn, &mut self.held, HELD)
    }

    fn held_up(
        &mut self,
    ) -> Result<&mut Table<'t, (&'static str, &'static str, &'static str), i64>, Error> {
        opened(self.txn, &mut self.held_up, HELD_UP)
    }

    fn history(&mut self) -> Result<&mut Table<'t, u64, (u8, &'static [u8])>, Error> {
        opened(self.txn, &mut self.history, HISTORY)
    }

    fn history_acks(&mut self) -> Result<&mut Table<'t, (&'static str, &'static str), u64>, Error> {
        opened(self.txn, &mut self.history_acks, HISTORY_ACKS)
    }

    fn down_decisions(
        &mut self,
    ) -> Result<&mut Table<'t, (&'static str, &'static str, u32), i64>, Error> {
        opened(self.txn, &mut self.down_decisions, DOWN_DECISIONS)
    }

    fn consumers(&mut self) -> Result<&mut ConsumersTable<'t>, Error> {
        opened(self.txn, &mut self.consumers, CONSUMERS)
    }

    fn consumer_acks(&mut self) -> Result<&mut ConsumerAcksTable<'t>, Error> {
        opened(self.txn, &mut self.consumer_acks, CONSUMER_ACKS)
    }

    fn checkpoints(&mut self) -> Result<&mut Table<'t, u64, &'static [u8]>, Error> {
        opened(self.txn, &mut self.checkpoints, AUDIT_CHECKPOINTS)
    }

    /// Records that this state includes the write-ahead log's batches up
    /// to `seq`.
    pub(super) fn set_wal_applied(&mut self, seq: u64) -> Result<(), Error> {
        self.meta.insert(meta::WAL_APPLIED, seq)?;
        Ok(())
    }

    /// Records where the write-ahead log is read back from: (segment,
    /// offset), as of this commit with fsync.
    pub(super) fn set_wal_start(&mut self, (segment, offset): (u64, u64)) -> Result<(), Error> {
        self.meta.insert(meta::WAL_SEGMENT, segment)?;
        self.meta.insert(meta::WAL_START, offset)?;
        Ok(())
    }

    /// Notes one row more (or fewer) pointing into `segment` of the log.
    fn count_body(&mut self, segment: u64, delta: i64) {
        match self.bodies.iter_mut().find(|(s, _)| *s == segment) {
            Some((_, d)) => *d += delta,
            None => self.bodies.push((segment, delta)),
        }
    }

    /// Writes the batch's changes to the rows pointing into each segment
    /// (once per batch: a busy one holds many items).
    pub(super) fn count_bodies(&mut self) -> Result<(), Error> {
        let changes = std::mem::take(&mut self.bodies);
        if changes.iter().all(|(_, d)| *d == 0) {
            return Ok(());
        }
        let mut table = self.txn.open_table(SEGMENTS)?;
        for (segment, delta) in changes {
            let had = table.get(segment)?.map_or(0, |v| v.value());
            let now = had.saturating_add_signed(delta);
            if now == 0 {
                table.remove(segment)?;
                self.fx.segment_freed = true;
            } else {
                table.insert(segment, now)?;
            }
        }
        Ok(())
    }

    /// Writes what the batch did to the custody log, linked onto `chain`,
    /// in this same transaction.
    pub(super) fn log(&mut self, chain: &mut Chain) -> Result<(), Error> {
        for entry in std::mem::take(&mut self.fx.audit) {
            let (record, bytes) = chain.append(entry, self.now);
            self.log.insert(record.seq, bytes.as_slice())?;
        }
        Ok(())
    }

    /// Keeps a signed checkpoint of the log's head at `seq`.
    pub(super) fn checkpoint(&mut self, seq: u64, signed: &[u8]) -> Result<(), Error> {
        self.checkpoints()?.insert(seq, signed)?;
        Ok(())
    }

    /// Deletes the custody log's records up to the newest checkpoint made
    /// before `keep_after_ms`, keeping that checkpoint (it anchors the
    /// first record kept) and every later one, and logs the prune. Returns
    /// the seq pruned through; `None` when no checkpoint is old enough.
    pub(super) fn prune_audit(&mut self, keep_after_ms: i64) -> Result<Option<u64>, Error> {
        let mut made = Vec::new();
        for row in self.checkpoints()?.iter()? {
            let (_, bytes) = row?;
            let signed: crate::audit::SignedCheckpoint =
                prost::Message::decode(bytes.value()).map_err(Error::Corrupt)?;
            // Our own store: a checkpoint that does not parse is left alone
            // (`audit verify` reports it), and never used as a cut.
            made.extend(crate::audit::peek(&signed));
        }
        let Some(cut) = crate::audit::prune_point(&made, keep_after_ms) else {
            return Ok(None);
        };
        let first = self.log.first()?.map(|(seq, _)| seq.value());
        if first.is_none_or(|first| first > cut) {
            return Ok(None);
        }
        self.log.retain_in(..=cut, |_, _| false)?;
        self.checkpoints()?.retain_in(..cut, |_, _| false)?;
        self.note(Entry::new(AuditKind::Pruned, "").with_detail(cut.to_string()));
        Ok(Some(cut))
    }

    /// Logs an event that is not a change to the tables.
    pub(super) fn note(&mut self, entry: Entry) {
        self.fx.audit.push(entry);
    }

    fn record(&self, id: &str) -> Result<Option<ItemRecord>, Error> {
        self.items.get(id)?.map(|v| decode(v.value())).transpose()
    }

    fn save(&mut self, id: &str, rec: &ItemRecord) -> Result<(), Error> {
        self.items.insert(id, encode(rec).as_slice())?;
        self.fx.changed.push(id.to_string());
        Ok(())
    }

    fn next(&mut self, key: &str) -> Result<u64, Error> {
        let n = self.meta.get(key)?.map_or(0, |v| v.value()) + 1;
        self.meta.insert(key, n)?;
        Ok(n)
    }

    fn enqueue(&mut self, id: &str, rec: &ItemRecord, route: &str) -> Result<(), Error> {
        self.queue()?
            .insert((route, rec.lane(), rec.deadline_ms, rec.seq), id)?;
        Ok(())
    }

    fn dequeue(&mut self, rec: &ItemRecord, route: &str) -> Result<(), Error> {
        self.queue()?
            .remove((route, rec.lane(), rec.deadline_ms, rec.seq))?;
        Ok(())
    }

    /// A new item: into the queue of its routes or into the inbox. A
    /// follow-up (`record.link`) is noted on the report it follows up, if
    /// that is here; a correction or withdrawal made at the origin before
    /// the original left holds the original back (`may_hold_back`: it is
    /// not on the wire now).
    pub(super) fn put(
        &mut self,
        id: &str,
        record: &ItemRecord,
        dest: &Destination,
        may_hold_back: bool,
    ) -> Result<PutOutcome, Error> {
        let outcome = self.put_item(id, record, dest)?;
        if matches!(outcome, PutOutcome::Stored(_)) && record.link != 0 {
            self.follow_up(id, record, may_hold_back)?;
        }
        Ok(outcome)
    }

    /// Notes follow-up `id` on the report it links to, if that is here.
    fn follow_up(
        &mut self,
        id: &str,
        record: &ItemRecord,
        may_hold_back: bool,
    ) -> Result<(), Error> {
        use crate::proto::LinkKind;
        let target_id = record.links_to.as_str();
        let Some(mut target) = self.record(target_id)? else {
            return Ok(());
        };
        let kind = LinkKind::try_from(record.link).unwrap_or(LinkKind::None);
        let never_left = may_hold_back
            && target.from == FROM_OPERATOR
            && target.state() == Some(RecordState::Queued)
            && target.route_receipts.is_empty();
        match kind {
            LinkKind::None => return Ok(()),
            LinkKind::Supplements => {
                target.supplements.push(id.to_string());
                self.stop_awaiting_answer(&mut target, target_id)?;
            }
            LinkKind::Reviewed => target.reviewed_by = id.to_string(),
            LinkKind::Corrects | LinkKind::Withdraws => {
                if kind == LinkKind::Corrects {
                    target.corrected_by = id.to_string();
                } else {
                    target.withdrawn_by = id.to_string();
                    self.stop_awaiting_answer(&mut target, target_id)?;
                }
                if never_left {
                    // Off every queue; its routes stay listed, so that a
                    // receipt for a copy already on its way is still taken.
                    for route in target.pending_routes.clone() {
                        self.dequeue(&target, &route)?;
                    }
                    self.deadlines()?.remove((target.deadline_ms, target.seq))?;
                    target.state = if kind == LinkKind::Corrects {
                        RecordState::Superseded
                    } else {
                        RecordState::Withdrawn
                    } as i32;
                }
            }
        }
        self.save(target_id, &target)?;
        Ok(())
    }

    /// The item no longer waits for an answer from its origin.
    fn stop_awaiting_answer(&mut self, rec: &mut ItemRecord, id: &str) -> Result<(), Error> {
        if rec.answer_by_ms != 0 {
            self.answers()?.remove((rec.answer_by_ms, id))?;
            rec.answer_by_ms = 0;
        }
        Ok(())
    }

    /// The answer the office asked for on `id`, due at `due_ms`, did not
    /// come in time: marked (once). Returns whether this call marked it.
    pub(super) fn answer_overdue(&mut self, id: &str, due_ms: i64) -> Result<bool, Error> {
        self.answers()?.remove((due_ms, id))?;
        let Some(mut rec) = self.record(id)? else {
            return Ok(false);
        };
        if rec.answer_by_ms != due_ms || rec.answer_overdue_ms != 0 {
            return Ok(false);
        }
        rec.answer_overdue_ms = self.now;
        self.save(id, &rec)?;
        self.note(Entry::new(AuditKind::Overdue, id).with_detail("answer"));
        Ok(true)
    }

    fn put_item(
        &mut self,
        id: &str,
        record: &ItemRecord,
        dest: &Destination,
    ) -> Result<PutOutcome, Error> {
        // The frame's place for the report, or (applied again from the
        // log) the place the record was given when it was written.
        let at = self.body.take().or(record.body);
        Ok(match self.record(id)? {
            Some(old) if old.sha256 == record.sha256 => PutOutcome::Duplicate(old),
            Some(old) => PutOutcome::Conflict(old),
            None => {
                // Its attachments are whole now: no longer a partial upload.
                self.uploads()?.remove((record.from.as_str(), id))?;
                let mut rec = record.clone();
                rec.stored_ms = self.now;
                match dest {
                    Destination::Queue(routes) => {
                        rec.seq = self.next(meta::QUEUE_SEQ)?;
                        rec.state = RecordState::Queued as i32;
                        rec.pending_routes.clone_from(routes);
                        for route in routes {
                            self.enqueue(id, &rec, route)?;
                        }
                        self.deadlines()?.insert((rec.deadline_ms, rec.seq), id)?;
                        self.fx.queued = true;
                    }
                    Destination::Inbox => {
                        let lane = rec.lane();
                        rec.seq = self.next(meta::INBOX_SEQ[usize::from(lane)])?;
                        rec.state = RecordState::Delivered as i32;
                        self.inbox.insert((lane, rec.seq), id)?;
                        self.fx.inboxed = true;
                        // It arrived: no longer held anywhere below.
                        self.held()?
                            .retain_in((id, "")..=(id, "\u{10ffff}"), |_, _| false)?;
                        // Arrived after its deadline: late, and listed so.
                        if rec.deadline_ms != 0 && rec.stored_ms > rec.deadline_ms {
                            rec.overdue_ms = self.now;
                            let n = self.next(meta::OVERDUE_TOTAL)?;
                            let now = self.now;
                            self.overdue()?.insert((now, n), id)?;
                        }
                    }
                }
                match at {
                    Some(at) if !rec.signed.is_empty() => {
                        // The row points at the report instead of holding
                        // it; the answer still carries it.
                        rec.body = Some(at);
                        let signed = std::mem::take(&mut rec.signed);
                        self.save(id, &rec)?;
                        rec.signed = signed;
                        self.count_body(at.segment, 1);
                    }
                    _ => {
                        rec.body = None;
                        self.save(id, &rec)?;
                    }
                }
                if !rec.answers.is_empty() {
                    self.sol_answers()?.insert(
                        (rec.answers.as_str(), rec.origin.as_str(), id),
                        rec.stored_ms,
                    )?;
                }
                if matches!(dest, Destination::Inbox) {
                    put_item_fact(self.item_facts()?, id, &rec)?;
                }
                let class = crate::class::Class::from_lane(rec.lane()).map_or("?", |c| c.name());
                self.note(
                    Entry::new(AuditKind::Accepted, id)
                        .with_peer(&rec.from)
                        .with_detail(class),
                );
                PutOutcome::Stored(rec)
            }
        })
    }

    /// `route`'s (verified) receipt for an item queued on it.
    pub(super) fn receipt(
        &mut self,
        id: &str,
        route: &str,
        receipt: &[u8],
        delivery: bool,
    ) -> Result<ReceiptOutcome, Error> {
        let Some(mut rec) = self.record(id)? else {
            return Ok(ReceiptOutcome::NotPending);
        };
        let Some(at) = rec.pending_routes.iter().position(|r| r == route) else {
            return Ok(ReceiptOutcome::NotPending);
        };
        rec.pending_routes.remove(at);
        self.dequeue(&rec, route)?;
        rec.route_receipts.push(RouteReceiptRecord {
            route: route.to_string(),
            receipt: receipt.to_vec(),
        });
        // A held-back original whose copy was already on its way: it left.
        let unsettled = matches!(
            rec.state(),
            Some(RecordState::Queued | RecordState::Withdrawn | RecordState::Superseded)
        ) && rec.receipt.is_empty();
        let outcome = if unsettled {
            rec.state = RecordState::Receipted as i32;
            rec.receipt = receipt.to_vec();
            rec.receipted_ms = self.now;
            // Custody upstream is progress, not arrival: the deadline stays
            // watched until the final hub's delivery receipt is here.
            if delivery {
                self.deadlines()?.remove((rec.deadline_ms, rec.seq))?;
            }
            // An emergency keeps going on every route, for proof on each;
            // anything else is done once one route has it.
            if rec.lane() != 0 {
                for other in std::mem::take(&mut rec.pending_routes) {
                    self.dequeue(&rec, &other)?;
                }
            }
            ReceiptOutcome::Settled
        } else {
            ReceiptOutcome::Proof
        };
        self.save(id, &rec)?;
        let what = if outcome == ReceiptOutcome::Settled {
            "settled"
        } else {
            "proof"
        };
        self.note(
            Entry::new(AuditKind::Receipted, id)
                .with_peer(route)
                .with_detail(what),
        );
        Ok(outcome)
    }

    /// Takes an item off `route` after a refusal a retry cannot cure.
    pub(super) fn refuse(&mut self, id: &str, route: &str, why: &str) -> Result<bool, Error> {
        let Some(mut rec) = self.record(id)? else {
            return Ok(false);
        };
        let Some(at) = rec.pending_routes.iter().position(|r| r == route) else {
            return Ok(false);
        };
        rec.pending_routes.remove(at);
        self.dequeue(&rec, route)?;
        if !rec.refusal.is_empty() {
            rec.refusal.push_str("; ");
        }
        rec.refusal.push_str(&format!("{route}: {why}"));
        if rec.state() == Some(RecordState::Queued) && rec.pending_routes.is_empty() {
            rec.state = RecordState::Refused as i32;
            self.deadlines()?.remove((rec.deadline_ms, rec.seq))?;
        }
        self.save(id, &rec)?;
        self.note(
            Entry::new(AuditKind::Refused, id)
                .with_peer(route)
                .with_detail(why),
        );
        Ok(true)
    }

    /// The first `limit` items queued on `route`, in schedule order.
    fn queued_on(&mut self, route: &str, limit: usize) -> Result<Vec<String>, Error> {
        let range = (route, 0u8, i64::MIN, 0u64)..=(route, u8::MAX, i64::MAX, u64::MAX);
        Ok(self
            .queue()?
            .range(range)?
            .take(limit)
            .map(|e| e.map(|(_, id)| id.value().to_string()))
            .collect::<Result<_, _>>()?)
    }

    /// Takes up to `limit` items off `route`, which the configuration no
    /// longer has (SIGHUP): each still waiting for a first receipt goes on
    /// `to` instead (those of its class start on), unless a route there
    /// already has it; answers how many were taken off.
    pub(super) fn reroute(
        &mut self,
        route: &str,
        to: &[(u8, Vec<String>)],
        limit: usize,
    ) -> Result<usize, Error> {
        let ids = self.queued_on(route, limit)?;
        for id in &ids {
            let Some(mut rec) = self.record(id)? else {
                continue;
            };
            self.dequeue(&rec, route)?;
            rec.pending_routes.retain(|r| r != route);
            let mut added = Vec::new();
            if rec.state() == Some(RecordState::Queued) {
                let lane = rec.lane();
                let targets = to
                    .iter()
                    .find(|(l, _)| *l == lane)
                    .map_or(&[][..], |(_, r)| r);
                for r in targets {
                    let known = rec.pending_routes.contains(r)
                        || rec.route_receipts.iter().any(|x| &x.route == r);
                    if !known {
                        self.enqueue(id, &rec, r)?;
                        rec.pending_routes.push(r.clone());
                        added.push(r.clone());
                        self.fx.queued = true;
                    }
                }
            }
            self.save(id, &rec)?;
            self.note(
                Entry::new(AuditKind::Escalated, id.as_str())
                    .with_peer(added.join(","))
                    .with_detail(format!("rerouted: route {route} is no longer configured")),
            );
        }
        if ids.len() < limit {
            // Held notices still to go up the route go nowhere now.
            self.held_up()?.retain_in(
                (route, "", "")..=(route, "\u{10ffff}", "\u{10ffff}"),
                |_, _| false,
            )?;
        }
        Ok(ids.len())
    }

    /// Takes up to `limit` items off `route` after a refusal of the whole
    /// route (the upstream refuses this node); returns their ids.
    pub(super) fn refuse_route(
        &mut self,
        route: &str,
        why: &str,
        limit: usize,
    ) -> Result<Vec<String>, Error> {
        let ids = self.queued_on(route, limit)?;
        for id in &ids {
            self.refuse(id, route, why)?;
        }
        Ok(ids)
    }

    /// The final hub's (verified) delivery receipt for an item; queued to go
    /// down to the child the item came from.
    pub(super) fn delivery(&mut self, id: &str, receipt: &[u8]) -> Result<bool, Error> {
        let Some(mut rec) = self.record(id)? else {
            return Ok(false);
        };
        if !rec.delivery.is_empty() {
            return Ok(true);
        }
        rec.delivery = receipt.to_vec();
        // Arrived: nothing left to watch.
        self.deadlines()?.remove((rec.deadline_ms, rec.seq))?;
        if !rec.from.is_empty() && rec.from != FROM_OPERATOR {
            let now = self.now;
            self.down()?.insert((rec.from.as_str(), id), now)?;
            self.fx.down = true;
        }
        self.save(id, &rec)?;
        self.note(Entry::new(AuditKind::Delivered, id));
        Ok(true)
    }

    /// Keeps a verified decision on an item, after every decision its node
    /// made on the item before it; queued to go down to the child the item
    /// came from.
    pub(super) fn decide(&mut self, id: &str, d: &Decision) -> Result<DecisionOutcome, Error> {
        let Some(mut rec) = self.record(id)? else {
            return Ok(DecisionOutcome::UnknownItem);
        };
        let mut count = 0u32;
        let mut last_of_node: Option<Vec<u8>> = None;
        let mut before = 0u32;
        for row in self.decisions()?.range((id, 0)..=(id, u32::MAX))? {
            let (_, bytes) = row?;
            count += 1;
            let signed: crate::proto::SignedDisposition =
                prost::Message::decode(bytes.value()).map_err(Error::Corrupt)?;
            let Some(body) = crate::disposition::peek(&signed) else {
                continue;
            };
            if body.node != d.node {
                continue;
            }
            if body.seq == d.seq {
                return Ok(if bytes.value() == d.signed.as_slice() {
                    DecisionOutcome::Duplicate
                } else {
                    DecisionOutcome::Conflict
                });
            }
            before += 1;
            last_of_node = Some(crate::disposition::digest(&signed).to_vec());
        }
        let expected = before + 1;
        if d.seq != expected || d.previous != last_of_node.unwrap_or_default() {
            return Ok(DecisionOutcome::OutOfOrder { expected });
        }
        let n = count + 1;
        self.decisions()?.insert((id, n), d.signed.as_slice())?;
        self.record_history(HistoryKind::Decision, &d.signed)?;
        put_decision_fact(self.decision_facts()?, id, d, rec.created_ms)?;
        if let Some(receipt) = &d.delivery
            && rec.delivery.is_empty()
        {
            self.delivery(id, receipt)?;
            rec = self.record(id)?.unwrap_or(rec);
        }
        if !rec.from.is_empty() && rec.from != FROM_OPERATOR {
            let now = self.now;
            self.down_decisions()?
                .insert((rec.from.as_str(), id, n), now)?;
            self.fx.down = true;
        }
        rec.decisions = n;
        rec.decided = d.kind;
        match crate::proto::DispositionKind::try_from(d.kind) {
            Ok(crate::proto::DispositionKind::Closed) => {
                rec.closed_ms = d.at_ms;
                self.stop_awaiting_answer(&mut rec, id)?;
            }
            Ok(crate::proto::DispositionKind::Returned) => {
                self.stop_awaiting_answer(&mut rec, id)?;
                rec.answer_by_ms = d.answer_by_ms;
                rec.answer_overdue_ms = 0;
                self.answers()?.insert((d.answer_by_ms, id), ())?;
                self.fx.answers = true;
            }
            _ => {}
        }
        self.save(id, &rec)?;
        self.note(
            Entry::new(AuditKind::Decided, id)
                .with_peer(&d.node)
                .with_detail(format!(
                    "{} #{}",
                    crate::disposition::kind_name(d.kind),
                    d.seq
                )),
        );
        Ok(DecisionOutcome::Stored(n))
    }

    /// Keeps version `version` of notice `id` (verified, encoded
    /// `SignedNotice` in `signed`, naming `previous` as the digest of the
    /// version before): only the next version, linked to the one kept.
    pub(super) fn keep_notice(
        &mut self,
        id: &str,
        version: u32,
        previous: &[u8],
        signed: &[u8],
    ) -> Result<NoticeOutcome, Error> {
        let mut notices = self.txn.open_table(NOTICES)?;
        if let Some(kept) = notices.get((id, version))? {
            return Ok(if kept.value() == signed {
                NoticeOutcome::Duplicate
            } else {
                NoticeOutcome::Conflict
            });
        }
        let last = match notices.range((id, 0)..=(id, u32::MAX))?.next_back() {
            Some(row) => {
                let (k, v) = row?;
                Some((
                    k.value().1,
                    crate::digest::sha256(
                        &<crate::proto::SignedNotice as prost::Message>::decode(v.value())
                            .map_err(Error::Corrupt)?
                            .notice,
                    ),
                ))
            }
            None => None,
        };
        let expected = last.as_ref().map_or(1, |(v, _)| v + 1);
        let linked = match &last {
            Some((_, digest)) => previous == digest.as_slice(),
            None => previous.is_empty(),
        };
        if version != expected || !linked {
            return Ok(NoticeOutcome::OutOfOrder { expected });
        }
        notices.insert((id, version), signed)?;
        drop(notices);
        self.fx.notices = true;
        self.fx.down = true;
        self.note(Entry::new(AuditKind::Decided, id).with_detail(format!("notice v{version}")));
        Ok(NoticeOutcome::Stored)
    }

    /// Records that `child` has version `version` of each notice named.
    pub(super) fn ack_notices(&mut self, child: &str, refs: &[(String, u32)]) -> Result<(), Error> {
        let mut acks = self.txn.open_table(NOTICE_ACKS)?;
        for (id, version) in refs {
            let had = acks.get((child, id.as_str()))?.map_or(0, |v| v.value());
            if *version > had {
                acks.insert((child, id.as_str()), *version)?;
            }
        }
        self.fx.notices = true;
        Ok(())
    }

    /// Marks version `version` of solicitation `id` as dealt with at its
    /// deadline; returns whether this call marked it.
    pub(super) fn fire_notice(&mut self, id: &str, version: u32) -> Result<bool, Error> {
        let mut fired = self.txn.open_table(NOTICE_FIRED)?;
        Ok(fired.insert((id, version), ())?.is_none())
    }

    /// Rows of the fact tables alone (a benchmark's year of history).
    pub(super) fn import_facts(&mut self, facts: &super::record::Facts) -> Result<(), Error> {
        for f in &facts.items {
            let rec = ItemRecord {
                origin: f.origin.clone(),
                lane: u32::from(f.lane),
                title: f.title.clone(),
                created_ms: f.created_ms,
                stored_ms: f.arrived_ms,
                deadline_ms: f.deadline_ms,
                link: i32::from(f.link),
                answers: f.answers.clone(),
                ..Default::default()
            };
            put_item_fact(self.item_facts()?, &f.id, &rec)?;
        }
        for d in &facts.decisions {
            let decision = Decision {
                node: d.node.clone(),
                seq: d.seq,
                kind: i32::from(d.kind),
                text: d.text.clone(),
                at_ms: d.at_ms,
                ..Default::default()
            };
            put_decision_fact(
                self.decision_facts()?,
                &d.item_id,
                &decision,
                d.item_created_ms,
            )?;
        }
        Ok(())
    }

    /// Sets (or with both zero, clears) a county's target for a year.
    pub(super) fn set_target(
        &mut self,
        county: &str,
        year: i32,
        points: i64,
        adopted: i64,
    ) -> Result<(), Error> {
        let mut targets = self.txn.open_table(TARGETS)?;
        if points == 0 && adopted == 0 {
            targets.remove((county, year))?;
        } else {
            targets.insert((county, year), (points, adopted))?;
        }
        Ok(())
    }

    /// Forgets decisions `child` has acknowledged: (item, deciding node,
    /// its number there).
    pub(super) fn ack_down_decisions(
        &mut self,
        child: &str,
        refs: &[(String, String, u32)],
    ) -> Result<(), Error> {
        for (id, node, seq) in refs {
            let mut hit = None;
            for row in self
                .decisions()?
                .range((id.as_str(), 0)..=(id.as_str(), u32::MAX))?
            {
                let (key, bytes) = row?;
                let signed: crate::proto::SignedDisposition =
                    prost::Message::decode(bytes.value()).map_err(Error::Corrupt)?;
                if crate::disposition::peek(&signed)
                    .is_some_and(|b| &b.node == node && b.seq == *seq)
                {
                    hit = Some(key.value().1);
                    break;
                }
            }
            if let Some(n) = hit {
                self.down_decisions()?.remove((child, id.as_str(), n))?;
            }
        }
        self.fx.down = true;
        Ok(())
    }

    /// Keeps a verified held notice for item `id` by `holder`, and queues it
    /// to go up `routes`; not if the item is already in this inbox (it
    /// arrived). Returns whether it was kept.
    pub(super) fn hold(
        &mut self,
        id: &str,
        holder: &str,
        notice: &[u8],
        routes: &[String],
        max: u64,
    ) -> Result<HoldOutcome, Error> {
        if self
            .record(id)?
            .is_some_and(|r| r.state() == Some(RecordState::Delivered))
        {
            return Ok(HoldOutcome::Arrived);
        }
        let known = self.held()?.get((id, holder))?.is_some();
        if !known && self.held()?.len()? >= max {
            return Ok(HoldOutcome::Full);
        }
        self.held()?.insert((id, holder), notice)?;
        if !known {
            self.record_history(HistoryKind::Held, notice)?;
        }
        for route in routes {
            let now = self.now;
            self.held_up()?.insert((route.as_str(), id, holder), now)?;
        }
        if !routes.is_empty() {
            self.fx.held_up = true;
        }
        self.note(
            Entry::new(AuditKind::Overdue, id)
                .with_peer(holder)
                .with_detail("held"),
        );
        Ok(HoldOutcome::Kept)
    }

    /// Appends a decision or held notice to the history.
    fn record_history(&mut self, kind: HistoryKind, bytes: &[u8]) -> Result<(), Error> {
        let seq = self.next(meta::HISTORY_SEQ)?;
        self.history()?.insert(seq, (kind as u8, bytes))?;
        self.fx.history = true;
        Ok(())
    }

    /// Records that consumer (`node`, `name`) processed the history up to
    /// `upto` (never moving back, never past the end); returns where it is.
    pub(super) fn ack_history(&mut self, node: &str, name: &str, upto: u64) -> Result<u64, Error> {
        let end = self.meta.get(meta::HISTORY_SEQ)?.map_or(0, |v| v.value());
        let was = self
            .history_acks()?
            .get((node, name))?
            .map_or(0, |v| v.value());
        let now = was.max(upto.min(end));
        if now != was {
            self.history_acks()?.insert((node, name), now)?;
        }
        Ok(now)
    }

    /// Forgets held notices `route` has kept: (item, holder).
    pub(super) fn ack_held(&mut self, route: &str, refs: &[(String, String)]) -> Result<(), Error> {
        for (id, holder) in refs {
            self.held_up()?
                .remove((route, id.as_str(), holder.as_str()))?;
        }
        self.fx.held_up = true;
        Ok(())
    }

    /// Forgets delivery receipts `child` has acknowledged.
    pub(super) fn ack_down(&mut self, child: &str, ids: &[String]) -> Result<(), Error> {
        for id in ids {
            self.down()?.remove((child, id.as_str()))?;
        }
        self.fx.down = true;
        Ok(())
    }

    /// Queues an unsettled item on more routes; with `overdue`, marks it
    /// overdue (once).
    pub(super) fn escalate(
        &mut self,
        id: &str,
        routes: &[String],
        overdue: bool,
    ) -> Result<Escalation, Error> {
        let mut out = Escalation::default();
        let Some(mut rec) = self.record(id)? else {
            return Ok(out);
        };
        // In custody above, not yet delivered: past its deadline it is
        // overdue here too, and may take the other routes.
        let held_above = rec.state() == Some(RecordState::Receipted) && rec.delivery.is_empty();
        if rec.state() != Some(RecordState::Queued) && !(held_above && overdue) {
            return Ok(out);
        }
        for route in routes {
            let known = rec.pending_routes.contains(route)
                || rec.route_receipts.iter().any(|r| &r.route == route);
            if !known {
                self.enqueue(id, &rec, route)?;
                rec.pending_routes.push(route.clone());
                out.added.push(route.clone());
                self.fx.queued = true;
            }
        }
        if !out.added.is_empty() && rec.escalated_ms == 0 {
            rec.escalated_ms = self.now;
        }
        if overdue && rec.overdue_ms == 0 {
            rec.overdue_ms = self.now;
            self.deadlines()?.remove((rec.deadline_ms, rec.seq))?;
            let n = self.next(meta::OVERDUE_TOTAL)?;
            let now = self.now;
            self.overdue()?.insert((now, n), id)?;
            out.newly_overdue = true;
        }
        if !out.added.is_empty() || out.newly_overdue {
            self.save(id, &rec)?;
        }
        if out.newly_overdue {
            self.note(Entry::new(AuditKind::Overdue, id));
        }
        if !out.added.is_empty() {
            self.note(Entry::new(AuditKind::Escalated, id).with_peer(out.added.join(",")));
        }
        Ok(out)
    }

    /// Stores chunks `first`, `first + 1`, … of an attachment.
    pub(super) fn chunks(
        &mut self,
        id: &str,
        attachment: u32,
        first: u32,
        chunks: &[Vec<u8>],
    ) -> Result<(), Error> {
        for (i, data) in (first..).zip(chunks) {
            self.chunk_table()?
                .insert((id, attachment, i), data.as_slice())?;
        }
        Ok(())
    }

    /// Stores one chunk of `child`'s partial upload of item `id`, counting
    /// its bytes against the child.
    pub(super) fn upload_chunk(
        &mut self,
        child: &str,
        id: &str,
        attachment: u32,
        index: u32,
        data: &[u8],
    ) -> Result<(), Error> {
        self.chunk_table()?.insert((id, attachment, index), data)?;
        let now = self.now;
        let uploads = self.uploads()?;
        let (held, _, announced) = uploads.get((child, id))?.map_or((0, 0, 0), |v| v.value());
        let bytes = held.saturating_add(data.len() as u64);
        uploads.insert((child, id), (bytes, now, announced.max(bytes)))?;
        Ok(())
    }

    /// `child` announced an upload of `announced` bytes for item `id`: it
    /// counts against the child from now on.
    pub(super) fn begin_upload(
        &mut self,
        child: &str,
        id: &str,
        announced: u64,
    ) -> Result<(), Error> {
        let now = self.now;
        let uploads = self.uploads()?;
        let held = uploads.get((child, id))?.map_or(0, |v| v.value().0);
        uploads.insert((child, id), (held, now, announced.max(held)))?;
        Ok(())
    }

    /// Forgets `child`'s partial upload of `id` and its chunks, unless the
    /// item was stored meanwhile; returns the bytes given back.
    pub(super) fn reclaim_upload(&mut self, child: &str, id: &str) -> Result<u64, Error> {
        let Some(bytes) = self.uploads()?.remove((child, id))?.map(|v| v.value().0) else {
            return Ok(0);
        };
        if self.items.get(id)?.is_some() {
            return Ok(0);
        }
        self.drop_chunks(id)?;
        Ok(bytes)
    }

    /// Forgets every stored chunk of an item; returns their bytes.
    pub(super) fn drop_chunks(&mut self, id: &str) -> Result<u64, Error> {
        let chunks = self.chunk_table()?;
        let mut freed = 0u64;
        let mut keys = Vec::new();
        for row in chunks.range((id, 0, 0)..=(id, u32::MAX, u32::MAX))? {
            let (k, v) = row?;
            freed += v.value().len() as u64;
            keys.push((k.value().1, k.value().2));
        }
        for (a, i) in keys {
            chunks.remove((id, a, i))?;
        }
        Ok(freed)
    }

    /// Drops the body and attachments of `id` if `rule` still allows it
    /// (checked again here, inside the write), keeping its digest, receipts,
    /// decisions and what a person reads of it ([`ItemRecord::brief`]);
    /// the custody log records it. Answers the bytes dropped, `None` if the
    /// item was not pruned.
    pub(super) fn prune(
        &mut self,
        id: &str,
        rule: &Retention,
        why: &str,
    ) -> Result<Option<u64>, Error> {
        let Some(mut rec) = self.record(id)? else {
            return Ok(None);
        };
        if !rule.allows(&rec, self.now) {
            return Ok(None);
        }
        let brief = rec.brief();
        rec.origin = brief.origin;
        rec.priority = brief.priority;
        rec.title = brief.title;
        let mut freed = rec.signed.len() as u64 + self.drop_chunks(id)?;
        rec.signed = Vec::new();
        if let Some(at) = rec.body.take() {
            freed += u64::from(at.len);
            self.count_body(at.segment, -1);
        }
        rec.pruned_ms = self.now;
        rec.pruned_bytes = freed;
        self.save(id, &rec)?;
        self.note(
            Entry::new(AuditKind::Disposed, id)
                .with_detail(format!("{why}: {freed} bytes of report and attachments")),
        );
        Ok(Some(freed))
    }

    /// Puts `report`, read back from `at`, into `id`'s row, if the row
    /// still points there (see `compact`); the segment then counts one row
    /// fewer. Says whether it did.
    pub(super) fn take_body_into_row(
        &mut self,
        id: &str,
        at: &BodyRef,
        report: &[u8],
    ) -> Result<bool, Error> {
        let Some(mut rec) = self.record(id)? else {
            return Ok(false);
        };
        if rec.body.as_ref() != Some(at) || !rec.signed.is_empty() {
            return Ok(false);
        }
        rec.body = None;
        rec.signed = report.to_vec();
        self.save(id, &rec)?;
        self.count_body(at.segment, -1);
        Ok(true)
    }

    /// Registers the durable consumer `name` of `owner` (a certificate's
    /// node id), unless `owner` already has `max` of them.
    pub(super) fn open_consumer(
        &mut self,
        owner: &str,
        name: &str,
        max: usize,
    ) -> Result<ConsumerOpened, Error> {
        if self.consumers()?.get((owner, name))?.is_some() {
            return Ok(ConsumerOpened::Existing);
        }
        let mut held = 0usize;
        for row in self.consumers()?.range((owner, "")..)? {
            let (key, _) = row?;
            if key.value().0 != owner {
                break;
            }
            held += 1;
            if held >= max {
                return Ok(ConsumerOpened::TooMany);
            }
        }
        self.consumers()?
            .insert((owner, name), ConsumerPosition::default().row())?;
        Ok(ConsumerOpened::Created)
    }

    /// Records that the durable consumer `name` of `owner` has processed
    /// the inbox items `ids`; `None` if there is no such consumer.
    pub(super) fn ack_inbox(
        &mut self,
        owner: &str,
        name: &str,
        ids: &[String],
    ) -> Result<Option<Acked>, Error> {
        let Some(row) = self.consumers()?.get((owner, name))?.map(|v| v.value()) else {
            return Ok(None);
        };
        let mut at = ConsumerPosition::from_row(row);
        let mut unknown = Vec::new();
        for id in ids {
            let rec = self
                .record(id)?
                .filter(|r| r.state() == Some(RecordState::Delivered));
            let Some(rec) = rec else {
                unknown.push(id.clone());
                continue;
            };
            let lane = rec.lane();
            let floor = &mut at.floors[usize::from(lane)];
            if rec.seq <= *floor {
                continue;
            }
            if rec.seq == *floor + 1 {
                // The gap above the floor closes: move the floor over every
                // acknowledgement already kept right above it.
                *floor = rec.seq;
                while self
                    .consumer_acks()?
                    .remove((owner, name, lane, *floor + 1))?
                    .is_some()
                {
                    *floor += 1;
                    at.above = at.above.saturating_sub(1);
                }
            } else if self
                .consumer_acks()?
                .insert((owner, name, lane, rec.seq), ())?
                .is_none()
            {
                at.above += 1;
            }
        }
        self.consumers()?.insert((owner, name), at.row())?;
        let pending = at.pending(self.inbox_last()?);
        Ok(Some(Acked { pending, unknown }))
    }

    /// The sequence of each inbox lane's last item.
    fn inbox_last(&self) -> Result<[u64; 3], Error> {
        let mut last = [0; 3];
        for (l, key) in last.iter_mut().zip(meta::INBOX_SEQ) {
            *l = self.meta.get(key)?.map_or(0, |v| v.value());
        }
        Ok(last)
    }

    // === review before sending (把关) ===

    /// Keeps an item held for review (or an emergency's sign-off to come)
    /// under `id`; false if `id` is taken already, here or in `items`.
    pub(super) fn hold_review(&mut self, id: &str, rec: &[u8]) -> Result<bool, Error> {
        if self.record(id)?.is_some() && rec_is_draft(rec) {
            return Ok(false);
        }
        let mut reviews = self.txn.open_table(REVIEWS)?;
        if reviews.get(id)?.is_some() {
            return Ok(false);
        }
        reviews.insert(id, rec)?;
        self.fx.changed.push(id.to_string());
        Ok(true)
    }

    /// Replaces the review record of `id` if it still awaits review;
    /// returns whether it did.
    pub(super) fn update_review(&mut self, id: &str, rec: &[u8]) -> Result<bool, Error> {
        let mut reviews = self.txn.open_table(REVIEWS)?;
        if reviews.get(id)?.is_none() {
            return Ok(false);
        }
        reviews.insert(id, rec)?;
        Ok(true)
    }

    /// Moves `id` from awaiting review to returned (with `rec`, which says
    /// by whom and why); false if it no longer awaits review.
    pub(super) fn return_review(&mut self, id: &str, rec: &[u8]) -> Result<bool, Error> {
        if self.txn.open_table(REVIEWS)?.remove(id)?.is_none() {
            return Ok(false);
        }
        self.txn.open_table(REVIEWS_RETURNED)?.insert(id, rec)?;
        self.fx.changed.push(id.to_string());
        Ok(true)
    }

    /// Ends the review of `review_id` and stores the sealed item (the item
    /// itself, or an emergency's sign-off report) in the same transaction,
    /// so that an item is never both awaiting review and sent, nor sent
    /// twice (by a reviewer and the watch at the same moment). `None` if
    /// it no longer awaits review.
    pub(super) fn send_reviewed(
        &mut self,
        review_id: &str,
        id: &str,
        record: &ItemRecord,
        dest: &Destination,
        may_hold_back: bool,
    ) -> Result<Option<PutOutcome>, Error> {
        if self.txn.open_table(REVIEWS)?.remove(review_id)?.is_none() {
            return Ok(None);
        }
        self.fx.changed.push(review_id.to_string());
        self.put(id, record, dest, may_hold_back).map(Some)
    }
}

/// Whether an encoded review record is an item held before sending (not a
/// sign-off of an item already in `items`).
fn rec_is_draft(rec: &[u8]) -> bool {
    <super::ReviewRecord as prost::Message>::decode(rec).is_ok_and(|r| !r.sign_off)
}

/// The statistics' row for an item stored in the inbox.
fn put_item_fact(facts: &mut ItemFactsTable<'_>, id: &str, rec: &ItemRecord) -> Result<(), Error> {
    facts.insert(
        (rec.created_ms, id),
        (
            rec.origin.as_str(),
            rec.lane(),
            rec.title.as_str(),
            rec.stored_ms,
            rec.deadline_ms,
            u8::try_from(rec.link).unwrap_or(u8::MAX),
            rec.answers.as_str(),
        ),
    )?;
    Ok(())
}

/// The statistics' row for a decision kept.
fn put_decision_fact(
    facts: &mut DecisionFactsTable<'_>,
    id: &str,
    d: &Decision,
    item_created_ms: i64,
) -> Result<(), Error> {
    facts.insert(
        (d.at_ms, id, d.node.as_str(), d.seq),
        (
            u8::try_from(d.kind).unwrap_or(u8::MAX),
            d.text.as_str(),
            item_created_ms,
        ),
    )?;
    Ok(())
}

/// Fills the fact tables from what a store kept before they existed (its
/// inbox and decisions), once: the statistics count the signed history
/// itself, whenever it was stored.
pub(super) fn build_facts(db: &redb::Database) -> Result<(), Error> {
    use crate::proto::{Report, SignedDisposition, SignedReport};
    use prost::Message;
    let txn = db.begin_write()?;
    {
        let mut meta_t = txn.open_table(META)?;
        if meta_t.get(meta::FACTS_BUILT)?.is_some() {
            return Ok(());
        }
        meta_t.insert(meta::FACTS_BUILT, 1)?;
    }
    {
        let items = txn.open_table(ITEMS)?;
        let inbox = txn.open_table(INBOX)?;
        let mut item_facts = txn.open_table(ITEM_FACTS)?;
        let mut decision_facts = txn.open_table(DECISION_FACTS)?;
        for row in inbox.iter()? {
            let (_, id) = row?;
            let id = id.value();
            let Some(bytes) = items.get(id)? else {
                continue;
            };
            let mut rec = decode(bytes.value())?;
            if let Some(report) = (!rec.signed.is_empty())
                .then(|| SignedReport::decode(rec.signed.as_slice()).ok())
                .flatten()
                .and_then(|s| Report::decode(s.report.as_slice()).ok())
            {
                rec.origin = report.origin;
                rec.title = report.title;
                rec.answers = report.answers;
            }
            put_item_fact(&mut item_facts, id, &rec)?;
        }
        let decisions = txn.open_table(DECISIONS)?;
        for row in decisions.iter()? {
            let (key, bytes) = row?;
            let (id, _) = key.value();
            let Ok(signed) = SignedDisposition::decode(bytes.value()) else {
                continue;
            };
            let Some(body) = crate::disposition::peek(&signed) else {
                continue;
            };
            let created = match items.get(id)? {
                Some(b) => decode(b.value())?.created_ms,
                None => 0,
            };
            let d = Decision {
                node: body.node,
                seq: body.seq,
                kind: body.kind,
                text: body.text,
                at_ms: body.at_unix_ms,
                ..Default::default()
            };
            put_decision_fact(&mut decision_facts, id, &d, created)?;
        }
    }
    txn.commit()?;
    Ok(())
}
