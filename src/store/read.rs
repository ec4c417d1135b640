//! The store's read API: each read is one redb read transaction; readers
//! never wait for the writer. Point lookups and short bounded ranges run at
//! once on the caller's thread ([`Store::lookup`]); scans run on a blocking
//! thread ([`Store::read`]).

use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable};

use super::bodies::Bodies;
use super::record::{Backlog, ConsumerPosition, ItemRecord, UploadUsage};
use super::tables::{
    ANSWERS, AUDIT, AUDIT_CHECKPOINTS, CHUNKS, CONSUMER_ACKS, CONSUMERS, DEADLINES, DECISIONS,
    DOWN, DOWN_DECISIONS, HELD, HELD_UP, HISTORY, HISTORY_ACKS, INBOX, ITEMS, META, OVERDUE, QUEUE,
    UPLOADS, meta,
};
use super::{Error, Store, decode};
use crate::audit::{AuditRecord, Chain, SignedCheckpoint};
use crate::digest::Sha256;

/// An item [`Store::next_queued`] found.
#[derive(Debug)]
pub struct Queued {
    /// Its id.
    pub id: String,
    /// Its record, the report back in `signed` unless `damaged`.
    pub rec: ItemRecord,
    /// Why its report could not be read back whole, if it could not: it
    /// cannot be sent.
    pub damaged: Option<Error>,
}

/// An item [`Store::get_with_decisions`] found.
#[derive(Debug)]
pub struct Found {
    /// Its record, the report back in `signed` unless `damaged`.
    pub rec: ItemRecord,
    /// Every office decision on it, as stored (encoded
    /// `SignedDisposition`s), oldest first.
    pub decisions: Vec<Vec<u8>>,
    /// Why its report could not be read back whole, if it could not.
    pub damaged: Option<Error>,
}

impl Store {
    /// Runs a read transaction on a blocking thread.
    pub(super) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let db = self.inner.db.get()?;
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| Error::ReadTask(Arc::new(e)))?
    }

    /// Runs a small read — a point lookup, or a range its caller bounds to
    /// a few rows — at once, on the caller's thread. It costs a few
    /// microseconds of CPU on pages redb or the kernel holds in memory, less
    /// than the two thread hand-offs of [`read`](Self::read); nothing in it
    /// waits for the writer.
    pub(super) fn lookup<T>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, Error>,
    ) -> Result<T, Error> {
        f(&*self.inner.db.get()?)
    }

    /// [`lookup`](Self::lookup) for a read that puts reports back from
    /// the log: if a report's segment was deleted between the read's
    /// snapshot and its read of the file ([`Error::BodyGone`]: the report
    /// was just moved into its row, or pruned), `f` runs once more, from a
    /// snapshot taken after that, which no longer points there.
    pub(super) fn lookup_reports<T>(
        &self,
        f: impl Fn(&Database) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let db = self.inner.db.get()?;
        again_if_gone(|| f(&db))
    }

    /// [`read`](Self::read) for a read that puts reports back from the
    /// log, with [`lookup_reports`](Self::lookup_reports)'s second try.
    pub(super) async fn read_reports<T: Send + 'static>(
        &self,
        f: impl Fn(&Database) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        self.read(move |db| again_if_gone(|| f(db))).await
    }

    /// The record of `id`, if stored.
    pub async fn get(&self, id: String) -> Result<Option<ItemRecord>, Error> {
        let bodies = &self.inner.bodies;
        self.lookup_reports(move |db| {
            let txn = db.begin_read()?;
            let items = txn.open_table(ITEMS)?;
            Ok(match items.get(id.as_str())? {
                Some(v) => Some(bodies.decode(v.value())?),
                None => None,
            })
        })
    }

    /// The record of `id`, if stored, its report back unless it cannot be
    /// read back whole: then without it, and why ([`ItemRecord::unreadable`]).
    /// For a view of the item, which a damaged report must not hide.
    pub async fn get_or_damaged(
        &self,
        id: String,
    ) -> Result<Option<(ItemRecord, Option<Error>)>, Error> {
        let bodies = &self.inner.bodies;
        self.lookup_reports(move |db| whole_or_damaged(&db.begin_read()?, bodies, &id))
    }

    /// Logs that the report of `id` cannot be read back whole and what was
    /// `done` about it: an ALARM once per report and outcome in this
    /// process, a DEBUG line when it is met again.
    pub fn alarm_damaged(&self, id: &str, e: &Error, done: &'static str) {
        let _alarmed = self.inner.bodies.alarm_damaged(id, e, done);
    }

    /// The record of `id`, if stored, without its report: `signed` stays
    /// empty when the report is kept in the log (its `body` still says
    /// where). For what needs the item's state, class, digest, origin or
    /// title ([`ItemRecord::brief`]) and not its bytes: no file read, and
    /// a report damaged on the disk does not make it fail. (Not for a view
    /// of the item: [`ItemRecord::unreadable`] says nothing of such a
    /// record.)
    pub async fn record(&self, id: String) -> Result<Option<ItemRecord>, Error> {
        self.lookup(move |db| {
            let txn = db.begin_read()?;
            let items = txn.open_table(ITEMS)?;
            items
                .get(id.as_str())?
                .map(|v| decode(v.value()))
                .transpose()
        })
    }

    /// The next `limit` items queued on `route` in schedule order, skipping
    /// those `skip` names (already in flight). An item whose report cannot
    /// be read back whole is among them, saying so ([`Queued::damaged`]),
    /// so it holds up none behind it.
    pub async fn next_queued(
        &self,
        route: &str,
        limit: usize,
        skip: impl Fn(&str) -> bool,
    ) -> Result<Vec<Queued>, Error> {
        let bodies = &self.inner.bodies;
        self.lookup_reports(move |db| {
            let txn = db.begin_read()?;
            let queue = txn.open_table(QUEUE)?;
            let items = txn.open_table(ITEMS)?;
            let mut out = Vec::with_capacity(limit);
            let range = (route, 0u8, i64::MIN, 0u64)..=(route, u8::MAX, i64::MAX, u64::MAX);
            for entry in queue.range(range)? {
                if out.len() >= limit {
                    break;
                }
                let (_, id) = entry?;
                let id = id.value();
                if skip(id) {
                    continue;
                }
                if let Some(v) = items.get(id)? {
                    let mut rec = decode(v.value())?;
                    let damaged = bodies.fill_unless_damaged(&mut rec)?;
                    out.push(Queued {
                        id: id.to_string(),
                        rec,
                        damaged,
                    });
                }
            }
            Ok(out)
        })
    }

    /// Unsettled items whose deadline is at or before `until_ms` and that
    /// are not yet overdue, earliest first, at most `limit`.
    pub async fn due(
        &self,
        until_ms: i64,
        limit: usize,
    ) -> Result<Vec<(String, ItemRecord)>, Error> {
        self.due_from((i64::MIN, 0), until_ms, limit).await
    }

    /// Like [`Store::due`], starting at the (deadline, sequence) key `from`.
    ///
    /// The records come without their reports: what a deadline acts on
    /// (class, times, routes, and the origin and title the record keeps:
    /// [`ItemRecord::brief`]) is in the record, and one report damaged on
    /// the disk must not stop every deadline behind it.
    pub async fn due_from(
        &self,
        from: (i64, u64),
        until_ms: i64,
        limit: usize,
    ) -> Result<Vec<(String, ItemRecord)>, Error> {
        self.lookup(move |db| {
            let txn = db.begin_read()?;
            let deadlines = txn.open_table(DEADLINES)?;
            let items = txn.open_table(ITEMS)?;
            let mut out = Vec::new();
            if from.0 > until_ms {
                return Ok(Vec::new());
            }
            for entry in deadlines.range(from..=(until_ms, u64::MAX))? {
                if out.len() >= limit {
                    break;
                }
                let (_, id) = entry?;
                if let Some(v) = items.get(id.value())? {
                    out.push((id.value().to_string(), decode(v.value())?));
                }
            }
            Ok(out)
        })
    }

    /// The earliest deadline among unsettled items not yet overdue.
    pub async fn next_deadline(&self) -> Result<Option<i64>, Error> {
        self.lookup(|db| {
            let txn = db.begin_read()?;
            let deadlines = txn.open_table(DEADLINES)?;
            Ok(deadlines.first()?.map(|(k, _)| k.value().0))
        })
    }

    /// Items, newest first (or, with `overdue_only`, every item that missed
    /// its deadline, most recently overdue first), at most `limit`.
    pub async fn list(
        &self,
        overdue_only: bool,
        limit: usize,
    ) -> Result<Vec<(String, ItemRecord)>, Error> {
        self.list_matching(overdue_only, false, limit, |_, _| true)
            .await
    }

    /// Like [`Store::list`] (or, with `oldest_first` and not
    /// `overdue_only`, oldest first), only the items `keep` accepts;
    /// `limit` counts those. A record whose report cannot be read back
    /// whole is listed without it ([`ItemRecord::unreadable`]): one damaged
    /// report does not hide every other item from the office.
    pub async fn list_matching(
        &self,
        overdue_only: bool,
        oldest_first: bool,
        limit: usize,
        keep: impl Fn(&str, &ItemRecord) -> bool + Send + 'static,
    ) -> Result<Vec<(String, ItemRecord)>, Error> {
        let bodies = self.inner.bodies.clone();
        self.read_reports(move |db| {
            let txn = db.begin_read()?;
            let items = txn.open_table(ITEMS)?;
            let mut out = Vec::new();
            // Only the records kept get their reports back.
            let take = |out: &mut Vec<_>, id: &str, mut rec: ItemRecord| -> Result<(), Error> {
                if keep(id, &rec) {
                    // The listing says it is damaged; the ALARM is the
                    // reader's that first meets it (forwarder, inbox).
                    let _damaged = bodies.fill_unless_damaged(&mut rec)?;
                    out.push((id.to_string(), rec));
                }
                Ok(())
            };
            if overdue_only {
                let overdue = txn.open_table(OVERDUE)?;
                for entry in overdue.iter()?.rev() {
                    if out.len() >= limit {
                        break;
                    }
                    let (_, id) = entry?;
                    if let Some(v) = items.get(id.value())? {
                        take(&mut out, id.value(), decode(v.value())?)?;
                    }
                }
            } else {
                let all: Box<dyn Iterator<Item = _>> = if oldest_first {
                    Box::new(items.iter()?)
                } else {
                    Box::new(items.iter()?.rev())
                };
                for entry in all {
                    if out.len() >= limit {
                        break;
                    }
                    let (id, v) = entry?;
                    take(&mut out, id.value(), decode(v.value())?)?;
                }
            }
            Ok(out)
        })
        .await
    }

    /// How many items ever missed their deadline here.
    pub async fn overdue_total(&self) -> Result<u64, Error> {
        self.lookup(|db| {
            let txn = db.begin_read()?;
            let meta = txn.open_table(META)?;
            Ok(meta.get(meta::OVERDUE_TOTAL)?.map_or(0, |v| v.value()))
        })
    }

    /// Up to `limit` inbox items after `cursor` (one position per lane),
    /// most urgent lane first. Returns (lane, sequence, id, record); a
    /// record whose report is damaged is among them without it
    /// ([`ItemRecord::unreadable`]), so it stops none behind it.
    pub async fn inbox_after(
        &self,
        cursor: [u64; 3],
        limit: usize,
    ) -> Result<Vec<(u8, u64, String, ItemRecord)>, Error> {
        let bodies = self.inner.bodies.clone();
        self.read_reports(move |db| {
            let txn = db.begin_read()?;
            let inbox = txn.open_table(INBOX)?;
            let items = txn.open_table(ITEMS)?;
            let mut out = Vec::new();
            for lane in 0u8..3 {
                let from = cursor[usize::from(lane)].saturating_add(1);
                for entry in inbox.range((lane, from)..=(lane, u64::MAX))? {
                    if out.len() >= limit {
                        return Ok(out);
                    }
                    let (key, id) = entry?;
                    let (_, seq) = key.value();
                    let id = id.value().to_string();
                    if let Some(v) = items.get(id.as_str())? {
                        let mut rec = decode(v.value())?;
                        bodies.fill_or_skip(&id, &mut rec)?;
                        out.push((lane, seq, id, rec));
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    /// Up to `limit` inbox items the durable consumer `name` of `owner`
    /// has not acknowledged, after `after` (one position per lane) and
    /// after its floors, most urgent lane first; at most `budget` inbox
    /// rows are looked at, so items acknowledged far ahead cost one bounded
    /// read at a time.
    pub async fn consumer_backlog(
        &self,
        owner: String,
        name: String,
        after: [u64; 3],
        limit: usize,
        budget: usize,
    ) -> Result<Backlog, Error> {
        let bodies = self.inner.bodies.clone();
        self.read_reports(move |db| {
            let txn = db.begin_read()?;
            let inbox = txn.open_table(INBOX)?;
            let items = txn.open_table(ITEMS)?;
            let consumers = txn.open_table(CONSUMERS)?;
            let acks = txn.open_table(CONSUMER_ACKS)?;
            let (owner, name) = (owner.as_str(), name.as_str());
            let at = consumers
                .get((owner, name))?
                .map(|v| ConsumerPosition::from_row(v.value()))
                .unwrap_or_default();
            let mut out = Backlog {
                upto: after,
                ..Backlog::default()
            };
            let mut looked = 0usize;
            for lane in 0u8..3 {
                let l = usize::from(lane);
                let from = after[l].max(at.floors[l]).saturating_add(1);
                for entry in inbox.range((lane, from)..=(lane, u64::MAX))? {
                    if out.items.len() >= limit || looked >= budget {
                        return Ok(out);
                    }
                    looked += 1;
                    let (key, id) = entry?;
                    let seq = key.value().1;
                    out.upto[l] = seq;
                    if acks.get((owner, name, lane, seq))?.is_some() {
                        continue;
                    }
                    let id = id.value().to_string();
                    if let Some(v) = items.get(id.as_str())? {
                        let mut rec = decode(v.value())?;
                        bodies.fill_or_skip(&id, &mut rec)?;
                        out.items.push((lane, seq, id, rec));
                    }
                }
            }
            out.exhausted = true;
            Ok(out)
        })
        .await
    }

    /// Which of the inbox items `keys` (lane, sequence) the durable
    /// consumer `name` of `owner` has acknowledged.
    pub async fn consumer_acked(
        &self,
        owner: String,
        name: String,
        keys: Vec<(u8, u64)>,
    ) -> Result<Vec<(u8, u64)>, Error> {
        self.read(move |db| {
            let txn = db.begin_read()?;
            let consumers = txn.open_table(CONSUMERS)?;
            let acks = txn.open_table(CONSUMER_ACKS)?;
            let (owner, name) = (owner.as_str(), name.as_str());
            let at = consumers
                .get((owner, name))?
                .map(|v| ConsumerPosition::from_row(v.value()))
                .unwrap_or_default();
            let mut out = Vec::new();
            for (lane, seq) in keys {
                let floor = at.floors.get(usize::from(lane)).copied().unwrap_or(0);
                if seq <= floor || acks.get((owner, name, lane, seq))?.is_some() {
                    out.push((lane, seq));
                }
            }
            Ok(out)
        })
        .await
    }

    /// The durable consumers of `owner`, by name, and how many inbox items
    /// each has not acknowledged.
    pub async fn consumers_of(&self, owner: String) -> Result<Vec<(String, u64)>, Error> {
        self.read(move |db| {
            let txn = db.begin_read()?;
            let consumers = txn.open_table(CONSUMERS)?;
            let meta = txn.open_table(META)?;
            let mut last = [0; 3];
            for (l, key) in last.iter_mut().zip(meta::INBOX_SEQ) {
                *l = meta.get(key)?.map_or(0, |v| v.value());
            }
            let mut out = Vec::new();
            for row in consumers.range((owner.as_str(), "")..)? {
                let (key, value) = row?;
                let (o, name) = key.value();
                if o != owner {
                    break;
                }
                let at = ConsumerPosition::from_row(value.value());
                out.push((name.to_string(), at.pending(last)));
            }
            Ok(out)
        })
        .await
    }

    /// One stored chunk.
    pub async fn chunk(
        &self,
        id: String,
        attachment: u32,
        index: u32,
    ) -> Result<Option<Vec<u8>>, Error> {
        self.read(move |db| {
            let txn = db.begin_read()?;
            let chunks = txn.open_table(CHUNKS)?;
            Ok(chunks
                .get((id.as_str(), attachment, index))?
                .map(|v| v.value().to_vec()))
        })
        .await
    }

    /// How many chunks of an attachment are stored (they are stored in order).
    pub async fn chunks_stored(&self, id: String, attachment: u32) -> Result<u32, Error> {
        self.lookup(move |db| {
            let txn = db.begin_read()?;
            let chunks = txn.open_table(CHUNKS)?;
            let n = chunks
                .range((id.as_str(), attachment, 0)..=(id.as_str(), attachment, u32::MAX))?
                .count();
            Ok(u32::try_from(n).unwrap_or(u32::MAX))
        })
    }

    /// SHA-256 and length of an attachment's stored chunks, in order.
    pub async fn attachment_digest(
        &self,
        id: String,
        attachment: u32,
    ) -> Result<([u8; 32], u64), Error> {
        self.read(move |db| {
            let txn = db.begin_read()?;
            let chunks = txn.open_table(CHUNKS)?;
            let mut ctx = Sha256::default();
            let mut len = 0u64;
            for entry in
                chunks.range((id.as_str(), attachment, 0)..=(id.as_str(), attachment, u32::MAX))?
            {
                let (_, v) = entry?;
                ctx.update(v.value());
                len += v.value().len() as u64;
            }
            Ok((ctx.finish(), len))
        })
        .await
    }

    /// Delivery receipts waiting to go down to `child`: (id, receipt bytes).
    pub async fn down_for(
        &self,
        child: String,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, Error> {
        self.read(move |db| {
            let txn = db.begin_read()?;
            let down = txn.open_table(DOWN)?;
            let items = txn.open_table(ITEMS)?;
            let mut out = Vec::new();
            for entry in down.range((child.as_str(), "")..)? {
                if out.len() >= limit {
                    break;
                }
                let (key, _) = entry?;
                let (c, id) = key.value();
                if c != child {
                    break;
                }
                if let Some(v) = items.get(id)? {
                    out.push((id.to_string(), decode(v.value())?.delivery));
                }
            }
            Ok(out)
        })
        .await
    }

    /// The record of `id` and every office decision on it, read together
    /// (one snapshot: the record's summary of the decisions matches them).
    /// A report that cannot be read back whole does not hide the rest: the
    /// record comes without it, saying why ([`Found::damaged`]).
    pub async fn get_with_decisions(&self, id: String) -> Result<Option<Found>, Error> {
        let bodies = &self.inner.bodies;
        self.lookup_reports(move |db| {
            let txn = db.begin_read()?;
            let Some((rec, damaged)) = whole_or_damaged(&txn, bodies, &id)? else {
                return Ok(None);
            };
            let decisions = txn.open_table(DECISIONS)?;
            let decisions = decisions
                .range((id.as_str(), 0)..=(id.as_str(), u32::MAX))?
                .map(|e| Ok(e?.1.value().to_vec()))
                .collect::<Result<Vec<_>, Error>>()?;
            Ok(Some(Found {
                rec,
                decisions,
                damaged,
            }))
        })
    }

    /// Up to `limit` history entries after `after`: (seq, kind, bytes).
    pub async fn history_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, u8, Vec<u8>)>, Error> {
        self.read(move |db| {
            let txn = db.begin_read()?;
            let history = txn.open_table(HISTORY)?;
            let mut out = Vec::new();
            for entry in history.range(after.saturating_add(1)..)?.take(limit) {
                let (seq, v) = entry?;
                let (kind, bytes) = v.value();
                out.push((seq.value(), kind, bytes.to_vec()));
            }
            Ok(out)
        })
        .await
    }

    /// Where consumer (`node`, `name`) is in the history (0 = nowhere
    /// yet), and how many history consumers `node` has.
    pub async fn history_position(
        &self,
        node: String,
        name: String,
    ) -> Result<(u64, usize), Error> {
        self.read(move |db| {
            let txn = db.begin_read()?;
            let acks = txn.open_table(HISTORY_ACKS)?;
            let at = acks
                .get((node.as_str(), name.as_str()))?
                .map_or(0, |v| v.value());
            let mut count = 0;
            for entry in acks.range((node.as_str(), "")..)? {
                let (key, _) = entry?;
                if key.value().0 != node {
                    break;
                }
                count += 1;
            }
            Ok((at, count))
        })
        .await
    }

    /// Held notices still to go up `route`: (id, holder, encoded notice).
    pub async fn held_up_for(
        &self,
        route: String,
        limit: usize,
    ) -> Result<Vec<(String, String, Vec<u8>)>, Error> {
        self.read(move |db| {
            let txn = db.begin_read()?;
            let up = txn.open_table(HELD_UP)?;
            let held = txn.open_table(HELD)?;
            let mut out = Vec::new();
            for entry in up.range((route.as_str(), "", "")..)? {
                if out.len() >= limit {
                    break;
                }
                let (key, _) = entry?;
                let (r, id, holder) = key.value();
                if r != route {
                    break;
                }
                if let Some(v) = held.get((id, holder))? {
                    out.push((id.to_string(), holder.to_string(), v.value().to_vec()));
                }
            }
            Ok(out)
        })
        .await
    }

    /// Every held notice kept here (items held below, not arrived), encoded,
    /// at most `limit`.
    pub async fn held_notices(&self, limit: usize) -> Result<Vec<Vec<u8>>, Error> {
        self.read(move |db| {
            let txn = db.begin_read()?;
            let held = txn.open_table(HELD)?;
            held.iter()?
                .take(limit)
                .map(|e| Ok(e?.1.value().to_vec()))
                .collect()
        })
        .await
    }

    /// Answers awaited from origins that are due at or before `until_ms`,
    /// earliest first: (due ms, id), at most `limit`.
    pub async fn answers_due(
        &self,
        until_ms: i64,
        limit: usize,
    ) -> Result<Vec<(i64, String)>, Error> {
        self.read(move |db| {
            let txn = db.begin_read()?;
            let answers = txn.open_table(ANSWERS)?;
            let mut out = Vec::new();
            for entry in answers.range((i64::MIN, "")..)? {
                let (key, _) = entry?;
                let (due, id) = key.value();
                if due > until_ms || out.len() >= limit {
                    break;
                }
                out.push((due, id.to_string()));
            }
            Ok(out)
        })
        .await
    }

    /// When the earliest awaited answer is due, if any.
    pub async fn next_answer_due(&self) -> Result<Option<i64>, Error> {
        self.lookup(|db| {
            let txn = db.begin_read()?;
            let answers = txn.open_table(ANSWERS)?;
            Ok(answers.first()?.map(|(k, _)| k.value().0))
        })
    }

    /// Every office decision on item `id` kept here, encoded, in the order
    /// they were kept.
    pub async fn decisions(&self, id: String) -> Result<Vec<Vec<u8>>, Error> {
        self.lookup(move |db| {
            let txn = db.begin_read()?;
            let decisions = txn.open_table(DECISIONS)?;
            decisions
                .range((id.as_str(), 0)..=(id.as_str(), u32::MAX))?
                .map(|e| Ok(e?.1.value().to_vec()))
                .collect()
        })
    }

    /// Decisions waiting to go down to `child`: (id, encoded decision), in
    /// order per item.
    pub async fn down_decisions_for(
        &self,
        child: String,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, Error> {
        self.read(move |db| {
            let txn = db.begin_read()?;
            let down = txn.open_table(DOWN_DECISIONS)?;
            let decisions = txn.open_table(DECISIONS)?;
            let mut out = Vec::new();
            for entry in down.range((child.as_str(), "", 0)..)? {
                if out.len() >= limit {
                    break;
                }
                let (key, _) = entry?;
                let (c, id, n) = key.value();
                if c != child {
                    break;
                }
                if let Some(v) = decisions.get((id, n))? {
                    out.push((id.to_string(), v.value().to_vec()));
                }
            }
            Ok(out)
        })
        .await
    }

    /// A child's partial uploads: how many, their bytes on disk and
    /// announced, and what the one of item `id` announced, if it is one.
    pub async fn uploads_of(&self, child: String, id: String) -> Result<UploadUsage, Error> {
        self.read(move |db| {
            let txn = db.begin_read()?;
            let uploads = txn.open_table(UPLOADS)?;
            let mut usage = UploadUsage::default();
            for entry in uploads.range((child.as_str(), "")..)? {
                let (key, value) = entry?;
                let (c, item) = key.value();
                if c != child {
                    break;
                }
                let (stored, _, announced) = value.value();
                usage.count += 1;
                usage.bytes = usage.bytes.saturating_add(stored);
                usage.announced = usage.announced.saturating_add(announced);
                if item == id {
                    usage.this = Some(announced);
                }
            }
            Ok(usage)
        })
        .await
    }

    /// Partial uploads untouched since `before_ms`: (child, id), at most
    /// `limit`.
    pub async fn idle_uploads(
        &self,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<(String, String)>, Error> {
        self.read(move |db| {
            let txn = db.begin_read()?;
            let uploads = txn.open_table(UPLOADS)?;
            let mut out = Vec::new();
            for entry in uploads.iter()? {
                let (key, value) = entry?;
                if value.value().1 < before_ms {
                    let (child, id) = key.value();
                    out.push((child.to_string(), id.to_string()));
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    /// Up to `limit` records of the custody log from `from` on, encoded as
    /// stored (verification reads exactly what is on disk).
    pub async fn audit_records(&self, from: u64, limit: usize) -> Result<Vec<Vec<u8>>, Error> {
        self.read(move |db| {
            let txn = db.begin_read()?;
            let log = txn.open_table(AUDIT)?;
            let mut out = Vec::new();
            for entry in log.range(from..)?.take(limit) {
                out.push(entry?.1.value().to_vec());
            }
            Ok(out)
        })
        .await
    }

    /// Every signed checkpoint of the custody log, encoded, in seq order.
    pub async fn audit_checkpoints(&self) -> Result<Vec<Vec<u8>>, Error> {
        self.read(|db| {
            let txn = db.begin_read()?;
            let checkpoints = txn.open_table(AUDIT_CHECKPOINTS)?;
            checkpoints
                .iter()?
                .map(|e| Ok(e?.1.value().to_vec()))
                .collect()
        })
        .await
    }

    /// The custody log's head: the last record's seq and hash.
    pub async fn audit_head(&self) -> Result<Option<(u64, [u8; 32])>, Error> {
        self.lookup(|db| {
            let chain = audit_chain(db)?;
            Ok(chain.last_seq().map(|seq| (seq, chain.head())))
        })
    }
}

/// The last batch of the write-ahead log the stored state includes.
pub(super) fn wal_applied(db: &Database) -> Result<u64, Error> {
    let txn = db.begin_read()?;
    let meta = txn.open_table(super::tables::META)?;
    Ok(meta
        .get(super::tables::meta::WAL_APPLIED)?
        .map_or(0, |v| v.value()))
}

/// Where the write-ahead log is read back from: (segment, offset), as the
/// last full commit left it.
pub(super) fn wal_start(db: &Database) -> Result<(u64, u64), Error> {
    use super::tables::meta;
    let txn = db.begin_read()?;
    let table = txn.open_table(super::tables::META)?;
    let get = |key| -> Result<u64, Error> { Ok(table.get(key)?.map_or(0, |v| v.value())) };
    Ok((get(meta::WAL_SEGMENT)?, get(meta::WAL_START)?))
}

/// The segments of the log before `current` that no item's row points
/// into: their files can go.
pub(super) fn unused_segments(
    db: &Database,
    on_disk: &[u64],
    current: u64,
) -> Result<Vec<u64>, Error> {
    let txn = db.begin_read()?;
    let segments = txn.open_table(super::tables::SEGMENTS)?;
    let mut out = Vec::new();
    for &n in on_disk.iter().filter(|n| **n < current) {
        if segments.get(n)?.is_none_or(|rows| rows.value() == 0) {
            out.push(n);
        }
    }
    Ok(out)
}

/// Where the custody log goes on: after its last record, or after the
/// newest checkpoint of a log pruned to nothing, or from the start.
pub(super) fn audit_chain(db: &Database) -> Result<Chain, Error> {
    let txn = db.begin_read()?;
    let log = txn.open_table(AUDIT)?;
    if let Some((_, bytes)) = log.last()? {
        let record: AuditRecord = prost::Message::decode(bytes.value()).map_err(Error::Corrupt)?;
        return Ok(Chain::resume(&record));
    }
    let checkpoints = txn.open_table(AUDIT_CHECKPOINTS)?;
    if let Some((_, bytes)) = checkpoints.last()? {
        let signed: SignedCheckpoint =
            prost::Message::decode(bytes.value()).map_err(Error::Corrupt)?;
        if let Some(chain) = crate::audit::peek(&signed)
            .as_ref()
            .and_then(Chain::resume_at)
        {
            return Ok(chain);
        }
    }
    Ok(Chain::genesis())
}

/// Runs `f`, and once more if a report's segment was gone (see
/// [`Store::lookup_reports`]).
/// In `txn`, the record of `id`, its report back unless it cannot be read
/// back whole: then without it, and why.
fn whole_or_damaged(
    txn: &redb::ReadTransaction,
    bodies: &Bodies,
    id: &str,
) -> Result<Option<(ItemRecord, Option<Error>)>, Error> {
    let items = txn.open_table(ITEMS)?;
    let Some(v) = items.get(id)? else {
        return Ok(None);
    };
    let mut rec = decode(v.value())?;
    let damaged = bodies.fill_unless_damaged(&mut rec)?;
    Ok(Some((rec, damaged)))
}

fn again_if_gone<T>(f: impl Fn() -> Result<T, Error>) -> Result<T, Error> {
    match f() {
        Err(Error::BodyGone { path }) => {
            tracing::debug!(path = %path.display(), "store: a report's segment went while it was read; reading again");
            f()
        }
        done => done,
    }
}
