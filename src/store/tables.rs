//! The tables of the custody store and what their keys mean.
//!
//! - `items`: item id → [`ItemRecord`](super::ItemRecord) (the signed bytes
//!   and their state);
//! - `queue`: (route, lane, deadline ms, sequence) → id, the items waiting
//!   for a receipt from each upstream route; iterating one route's range in
//!   key order *is* that route's schedule: emergency lane first, earliest
//!   deadline first inside a lane;
//! - `deadlines`: (deadline ms, sequence) → id, unsettled items not yet
//!   overdue, which the deadline watch reads from the front;
//! - `overdue`: (overdue ms, sequence) → id, every item that missed its deadline;
//! - `inbox`: (lane, sequence) → id, what reached this node as a hub; each
//!   lane numbers its items 1, 2, 3… so a consumer's cursor is one number
//!   per lane;
//! - `down`: (child, id) → time, delivery receipts still to be pushed down
//!   to the child that handed the item over, until it acknowledges them;
//! - `decisions`: (id, n) → encoded `SignedDisposition`, the office
//!   decisions on an item known here, in the order they were kept;
//! - `down_decisions`: (child, id, n) → time, decisions still to be pushed
//!   down to the child that handed the item over, until it acknowledges;
//! - `answers`: (answer due ms, id) → (), items returned for more
//!   information whose answer is awaited, which the follow-up watch reads
//!   from the front;
//! - `held`: (id, holder) → encoded `SignedHeldNotice`, items known to be
//!   held past their deadline below (or here), until they arrive;
//! - `held_up`: (route, id, holder) → time, held notices still to be sent
//!   up each route, until the upstream acknowledges them;
//! - `history`: seq → (kind, encoded decision or held notice), every
//!   decision and held notice this node kept, in the order kept, for the
//!   systems that follow the office's history;
//! - `history_acks`: (consumer's node id, name) → the seq it has processed;
//! - `chunks`: (id, attachment, index) → bytes, attachments in chunks, as
//!   submitted here or received so far;
//! - `uploads`: (child, id) → (bytes stored, last touched ms, bytes
//!   announced), partial uploads of
//!   attachments from children, not complete yet: what counts against each
//!   child's quota, and what is reclaimed when abandoned;
//! - `consumers`: (certificate's node id, name) → (floor of each lane,
//!   acks above the floors), the durable consumers of the inbox: every
//!   inbox item of a lane up to its floor is acknowledged, and `acks
//!   above` counts the rows of `consumer_acks`, so what a consumer has not
//!   acknowledged is known without scanning;
//! - `consumer_acks`: (node id, name, lane, sequence) → (), acknowledged
//!   inbox items above their lane's floor; an acknowledgement that fills
//!   the gap above a floor moves the floor up and deletes the rows it
//!   passes, so the table holds only acknowledgements out of order;
//! - `audit`: seq → encoded [`AuditRecord`](crate::audit::AuditRecord),
//!   the hash-chained custody log, written in the same transaction as the
//!   change it records;
//! - `audit_checkpoints`: seq → encoded signed checkpoint of the log's head;
//! - `notices`: (id, version) → encoded `SignedNotice`, every version of
//!   every solicitation and bulletin kept here (published here or come
//!   down from above);
//! - `notice_acks`: (child, id) → the version the child has acknowledged:
//!   a notice is pushed down to every child until it has the latest;
//! - `notice_fired`: (id, version) → (), solicitations whose deadline the
//!   watch has dealt with (alarms, reminders), so a restart does not
//!   raise them again;
//! - `sol_answers`: (solicitation id, origin, item id) → stored ms, the
//!   reports answering each solicitation, as they were stored here;
//! - `item_facts`: (created ms, id) → (origin, lane, title, arrived ms,
//!   deadline ms, link kind, solicitation answered), one row per item in
//!   a hub's inbox: what the statistics count, without decoding reports;
//! - `decision_facts`: (decided ms, id, deciding node, n) → (kind, text,
//!   the item's created ms), one row per decision kept, likewise;
//! - `targets`: (county, year) → (points, adopted items), yearly targets
//!   set by command (they override the configuration's);
//! - `meta`: counters (sequences, the overdue total), and where the
//!   write-ahead log is read back from;
//! - `segments`: segment → rows of `items` whose report lies in that
//!   segment of the log (see `store::bodies`); a segment without a row is
//!   deleted;
//! - `reviews`: id → encoded [`ReviewRecord`](super::ReviewRecord), items
//!   written here and waiting for the office leader's review (把关): not
//!   signed yet, so not in `items`; and emergencies that left at once and
//!   wait for their sign-off. The review watch reads the whole table (it
//!   holds what a few people have to look at, not the queue);
//! - `reviews_returned`: id → encoded `ReviewRecord`, items the reviewer
//!   sent back to their author: kept, never sent.

use redb::TableDefinition;

pub(super) const ITEMS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("items");
pub(super) const QUEUE: TableDefinition<'_, (&str, u8, i64, u64), &str> =
    TableDefinition::new("queue");
pub(super) const DEADLINES: TableDefinition<'_, (i64, u64), &str> =
    TableDefinition::new("deadlines");
pub(super) const OVERDUE: TableDefinition<'_, (i64, u64), &str> = TableDefinition::new("overdue");
pub(super) const INBOX: TableDefinition<'_, (u8, u64), &str> = TableDefinition::new("inbox");
pub(super) const DOWN: TableDefinition<'_, (&str, &str), i64> = TableDefinition::new("down");
pub(super) const DECISIONS: TableDefinition<'_, (&str, u32), &[u8]> =
    TableDefinition::new("decisions");
pub(super) const DOWN_DECISIONS: TableDefinition<'_, (&str, &str, u32), i64> =
    TableDefinition::new("down_decisions");
pub(super) const ANSWERS: TableDefinition<'_, (i64, &str), ()> = TableDefinition::new("answers");
pub(super) const HELD: TableDefinition<'_, (&str, &str), &[u8]> = TableDefinition::new("held");
pub(super) const HELD_UP: TableDefinition<'_, (&str, &str, &str), i64> =
    TableDefinition::new("held_up");
pub(super) const HISTORY: TableDefinition<'_, u64, (u8, &[u8])> = TableDefinition::new("history");
pub(super) const HISTORY_ACKS: TableDefinition<'_, (&str, &str), u64> =
    TableDefinition::new("history_acks");
pub(super) const CHUNKS: TableDefinition<'_, (&str, u32, u32), &[u8]> =
    TableDefinition::new("chunks");
pub(super) const UPLOADS: TableDefinition<'_, (&str, &str), (u64, i64, u64)> =
    TableDefinition::new("uploads");
pub(super) const CONSUMERS: TableDefinition<'_, (&str, &str), (u64, u64, u64, u64)> =
    TableDefinition::new("consumers");
pub(super) const CONSUMER_ACKS: TableDefinition<'_, (&str, &str, u8, u64), ()> =
    TableDefinition::new("consumer_acks");
pub(super) const NOTICES: TableDefinition<'_, (&str, u32), &[u8]> = TableDefinition::new("notices");
pub(super) const NOTICE_ACKS: TableDefinition<'_, (&str, &str), u32> =
    TableDefinition::new("notice_acks");
pub(super) const NOTICE_FIRED: TableDefinition<'_, (&str, u32), ()> =
    TableDefinition::new("notice_fired");
pub(super) const SOL_ANSWERS: TableDefinition<'_, (&str, &str, &str), i64> =
    TableDefinition::new("sol_answers");
/// (origin, lane, title, arrived ms, deadline ms, link kind, answers).
pub(super) type ItemFactRow<'a> = (&'a str, u8, &'a str, i64, i64, u8, &'a str);
pub(super) const ITEM_FACTS: TableDefinition<'_, (i64, &str), ItemFactRow<'_>> =
    TableDefinition::new("item_facts");
/// (decided ms, item id, deciding node, n).
pub(super) type DecisionFactKey<'a> = (i64, &'a str, &'a str, u32);
pub(super) const DECISION_FACTS: TableDefinition<'_, DecisionFactKey<'_>, (u8, &str, i64)> =
    TableDefinition::new("decision_facts");
pub(super) const TARGETS: TableDefinition<'_, (&str, i32), (i64, i64)> =
    TableDefinition::new("targets");
pub(super) const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
pub(super) const SEGMENTS: TableDefinition<'_, u64, u64> = TableDefinition::new("segments");
pub(super) const AUDIT: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("audit");
pub(super) const AUDIT_CHECKPOINTS: TableDefinition<'_, u64, &[u8]> =
    TableDefinition::new("audit_checkpoints");
pub(super) const REVIEWS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("reviews");
pub(super) const REVIEWS_RETURNED: TableDefinition<'_, &str, &[u8]> =
    TableDefinition::new("reviews_returned");

/// `meta` keys.
pub(super) mod meta {
    /// Sequence of items queued here.
    pub(in crate::store) const QUEUE_SEQ: &str = "queue_seq";
    /// Sequence of each inbox lane.
    pub(in crate::store) const INBOX_SEQ: [&str; 3] = ["inbox_seq_0", "inbox_seq_1", "inbox_seq_2"];
    /// Sequence of the history (decisions and held notices).
    pub(in crate::store) const HISTORY_SEQ: &str = "history_seq";
    /// Set once the fact tables were filled from the inbox and decisions
    /// kept before they existed.
    pub(in crate::store) const FACTS_BUILT: &str = "facts_built";
    /// Items that ever missed their deadline here.
    pub(in crate::store) const OVERDUE_TOTAL: &str = "overdue_total";
    /// The last batch of the write-ahead log this state includes.
    pub(in crate::store) const WAL_APPLIED: &str = "wal_applied";
    /// The log's segment the last full commit left it appending to (0 if
    /// never set: a store of an earlier version, with one log file).
    pub(in crate::store) const WAL_SEGMENT: &str = "wal_segment";
    /// The offset in that segment where the batches after the last full
    /// commit start.
    pub(in crate::store) const WAL_START: &str = "wal_start";
}

/// Creates every table, so readers never meet a missing one.
pub(super) fn create_all(db: &redb::Database) -> Result<(), super::Error> {
    let txn = db.begin_write()?;
    txn.open_table(ITEMS)?;
    txn.open_table(QUEUE)?;
    txn.open_table(DEADLINES)?;
    txn.open_table(OVERDUE)?;
    txn.open_table(INBOX)?;
    txn.open_table(DOWN)?;
    txn.open_table(DECISIONS)?;
    txn.open_table(ANSWERS)?;
    txn.open_table(HELD)?;
    txn.open_table(HELD_UP)?;
    txn.open_table(HISTORY)?;
    txn.open_table(HISTORY_ACKS)?;
    txn.open_table(DOWN_DECISIONS)?;
    txn.open_table(CHUNKS)?;
    txn.open_table(UPLOADS)?;
    txn.open_table(CONSUMERS)?;
    txn.open_table(CONSUMER_ACKS)?;
    txn.open_table(NOTICES)?;
    txn.open_table(NOTICE_ACKS)?;
    txn.open_table(NOTICE_FIRED)?;
    txn.open_table(SOL_ANSWERS)?;
    txn.open_table(ITEM_FACTS)?;
    txn.open_table(DECISION_FACTS)?;
    txn.open_table(TARGETS)?;
    txn.open_table(META)?;
    txn.open_table(SEGMENTS)?;
    txn.open_table(AUDIT)?;
    txn.open_table(AUDIT_CHECKPOINTS)?;
    txn.open_table(REVIEWS)?;
    txn.open_table(REVIEWS_RETURNED)?;
    txn.commit()?;
    Ok(())
}
