//! The writer thread: the one place the store is written, and where the
//! durability contract is kept.
//!
//! It takes whatever writes have queued since its last commit (up to
//! [`MAX_BATCH`] writes or [`MAX_BATCH_BYTES`] of chunks) — urgent ones
//! first, with few routine ones beside them, so an emergency is committed
//! ahead of routine items already waiting — applies them in one redb
//! transaction, commits it with `Durability::Immediate` (fsync),
//! and only then answers each write and wakes the watchers. If the commit
//! fails, nothing of the batch is on disk and every write hears so; the
//! database is then reopened in place, so the next batch can commit. While
//! free space is below the floor, writes that add data are refused before
//! the batch is applied. The receipts a batch's writes want are handed out
//! as one [`Group`], so a busy node signs once per commit, not per item.

use std::sync::{Arc, Weak};

use redb::Database;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use super::txn::{Effects, Txn};
use super::{Error, Inner};
use crate::audit::Chain;
use crate::clock::Clock;
use crate::receipt::{Group, InGroup};

/// Most writes folded into one commit.
const MAX_BATCH: usize = 512;
/// Most routine writes in a commit that holds an urgent one: an emergency
/// is committed ahead of routine items already waiting, and its commit is
/// not made long by a large routine batch.
const ROUTINE_WITH_URGENT: usize = 16;
/// Writes taken off the channel and waiting here at most (the channel's
/// bound keeps its back-pressure).
const QUEUED: usize = 4096;
/// Most bytes of chunks folded into one commit, so attachments do not hold
/// up the small urgent writes queued behind them for long.
const MAX_BATCH_BYTES: usize = 4 << 20;

/// One kind of write: what it does inside the transaction and what it
/// answers once that transaction is on disk.
pub(super) trait Write: Send + 'static {
    /// The answer.
    type Out: Send + 'static;

    /// Roughly how many bytes the write adds.
    fn bytes(&self) -> usize {
        256
    }

    /// Whether the write adds data (an item, a chunk) rather than moving
    /// stored items on: such writes are refused when the disk is low.
    fn grows(&self) -> bool {
        false
    }

    /// The write's lane: 0 and 1 are urgent (emergency, bad news), 2
    /// routine. Items go in their class's lane; writes that add other data
    /// (chunks) are routine; the small writes that move stored items on
    /// (receipts, acknowledgements, decisions) go first.
    fn lane(&self) -> u8 {
        if self.grows() { 2 } else { 0 }
    }

    /// Applies the write within the batch's transaction.
    fn apply(&self, txn: &mut Txn<'_>) -> Result<Self::Out, Error>;

    /// The encoded receipt to sign for what the write did, once committed
    /// (with the other receipts of its commit, as one group).
    fn receipt(&self, _out: &Self::Out) -> Option<Vec<u8>> {
        None
    }

    /// Gives the answer its place in the commit's receipt group.
    fn seal(_out: &mut Self::Out, _receipt: InGroup) {}
}

/// A write on its way through the writer, with its caller's reply channel.
pub(super) trait Job: Send {
    fn bytes(&self) -> usize;
    fn grows(&self) -> bool;
    fn lane(&self) -> u8;
    fn apply(&mut self, txn: &mut Txn<'_>) -> Result<(), Error>;
    /// See [`Write::receipt`].
    fn receipt(&self) -> Option<Vec<u8>>;
    /// See [`Write::seal`].
    fn seal(&mut self, receipt: InGroup);
    /// Answers the caller: the write's outcome if the batch committed.
    fn answer(self: Box<Self>, committed: Result<(), Error>);
}

/// A [`Write`] waiting for its commit.
pub(super) struct Pending<W: Write> {
    pub(super) write: W,
    pub(super) out: Option<W::Out>,
    pub(super) reply: oneshot::Sender<Result<W::Out, Error>>,
}

impl<W: Write> Job for Pending<W> {
    fn bytes(&self) -> usize {
        self.write.bytes()
    }

    fn grows(&self) -> bool {
        self.write.grows()
    }

    fn lane(&self) -> u8 {
        self.write.lane().min(2)
    }

    fn apply(&mut self, txn: &mut Txn<'_>) -> Result<(), Error> {
        self.out = Some(self.write.apply(txn)?);
        Ok(())
    }

    fn receipt(&self) -> Option<Vec<u8>> {
        self.out.as_ref().and_then(|out| self.write.receipt(out))
    }

    fn seal(&mut self, receipt: InGroup) {
        if let Some(out) = self.out.as_mut() {
            W::seal(out, receipt);
        }
    }

    fn answer(self: Box<Self>, committed: Result<(), Error>) {
        let Self { out, reply, .. } = *self;
        let _ = reply.send(committed.and_then(|()| out.ok_or(Error::Closed)));
    }
}

/// Runs until every sender of `rx` is gone; `chain` is the custody log's
/// head, which every commit extends with what its batch did.
pub(super) fn run(
    mut rx: mpsc::Receiver<Box<dyn Job>>,
    inner: &Weak<Inner>,
    clock: Clock,
    mut chain: Chain,
) {
    let mut queued = Queued::default();
    loop {
        if queued.len == 0 {
            match rx.blocking_recv() {
                Some(job) => queued.push(job),
                None => return,
            }
        }
        while queued.len < QUEUED {
            match rx.try_recv() {
                Ok(job) => queued.push(job),
                Err(_) => break,
            }
        }
        let batch = queued.next_batch();
        let Some(inner) = inner.upgrade() else {
            for job in batch {
                job.answer(Err(Error::Closed));
            }
            return;
        };
        let mut batch = refuse_growth_when_low(&inner, batch);
        if batch.is_empty() {
            continue;
        }
        let started = std::time::Instant::now();
        // A reopen that failed before (the file not readable yet) is tried
        // again before the next batch.
        let db = inner
            .db
            .get()
            .or_else(|_| inner.db.reopen().and_then(|()| inner.db.get()));
        let committed = db.and_then(|db| commit(&db, &mut batch, clock.now_ms(), &mut chain));
        tracing::debug!(
            writes = batch.len(),
            commit_us = started.elapsed().as_micros() as u64,
            "store commit"
        );
        let answer = match committed {
            Ok(effects) => {
                inner.wake(effects);
                group_receipts(&mut batch);
                Ok(())
            }
            Err(e) => {
                error!(error = %e, writes = batch.len(), "store commit failed; nothing of the batch is stored");
                if matches!(e, Error::Full | Error::Db(_)) {
                    match inner.db.reopen() {
                        Ok(()) => info!("store reopened after the failed commit"),
                        Err(e) => {
                            warn!(error = %e, "store not reopened yet; the next write tries again")
                        }
                    }
                }
                Err(e)
            }
        };
        // Let go of the store before answering: a caller that closes its
        // last handle on the answer must find the writer holding none, or
        // it would not wait for the file to close.
        drop(inner);
        for job in batch {
            job.answer(answer.clone());
        }
    }
}

/// Writes taken off the channel, by lane.
#[derive(Default)]
struct Queued {
    lanes: [std::collections::VecDeque<Box<dyn Job>>; 3],
    len: usize,
}

impl Queued {
    fn push(&mut self, job: Box<dyn Job>) {
        self.lanes[usize::from(job.lane())].push_back(job);
        self.len += 1;
    }

    /// The next commit's writes: urgent lanes first, in order of arrival
    /// within a lane; few routine ones beside an urgent one.
    fn next_batch(&mut self) -> Vec<Box<dyn Job>> {
        let urgent = !self.lanes[0].is_empty() || !self.lanes[1].is_empty();
        let mut batch = Vec::new();
        let mut bytes = 0;
        for (lane, queue) in self.lanes.iter_mut().enumerate() {
            let most = if lane == 2 && urgent {
                ROUTINE_WITH_URGENT
            } else {
                MAX_BATCH
            };
            let mut taken = 0;
            while taken < most && batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
                let Some(job) = queue.pop_front() else { break };
                bytes += job.bytes();
                batch.push(job);
                taken += 1;
            }
        }
        self.len -= batch.len();
        batch
    }
}

/// Puts the receipts the batch's writes want into one group, to be signed
/// once (by the first caller that asks for its receipt).
fn group_receipts(batch: &mut [Box<dyn Job>]) {
    let (members, receipts): (Vec<usize>, Vec<Vec<u8>>) = batch
        .iter()
        .enumerate()
        .filter_map(|(i, job)| job.receipt().map(|r| (i, r)))
        .unzip();
    if receipts.is_empty() {
        return;
    }
    let group = Arc::new(Group::new(receipts));
    for (index, i) in members.into_iter().enumerate() {
        batch[i].seal(InGroup {
            group: group.clone(),
            index,
        });
    }
}

/// Answers the writes that add data with [`Error::Full`] while less than
/// the floor is free; returns the rest.
fn refuse_growth_when_low(inner: &Inner, batch: Vec<Box<dyn Job>>) -> Vec<Box<dyn Job>> {
    if inner.min_free_bytes == 0 || !batch.iter().any(|j| j.grows()) {
        return batch;
    }
    let low = super::free_bytes(&inner.dir).is_some_and(|free| free < inner.min_free_bytes);
    if !low {
        return batch;
    }
    let (refused, rest): (Vec<_>, Vec<_>) = batch.into_iter().partition(|j| j.grows());
    warn!(
        refused = refused.len(),
        floor = inner.min_free_bytes,
        "disk space below the floor: new items refused, stored ones kept and moved on"
    );
    for job in refused {
        job.answer(Err(Error::Full));
    }
    rest
}

/// Applies a batch in one transaction, with the custody log's records of
/// it, and commits it (fsync). If it fails, `chain` is as it was.
fn commit(
    db: &Database,
    batch: &mut [Box<dyn Job>],
    now: i64,
    chain: &mut Chain,
) -> Result<Effects, Error> {
    let before = *chain;
    let result = (|| {
        let txn = db.begin_write()?;
        let effects = {
            let mut t = Txn::open(&txn, now)?;
            for job in batch.iter_mut() {
                job.apply(&mut t)?;
            }
            t.log(chain)?;
            t.fx
        };
        txn.commit()?;
        Ok(effects)
    })();
    if result.is_err() {
        *chain = before;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write that only has a lane and an order of arrival (told as its
    /// size).
    struct Fake {
        lane: u8,
        n: usize,
    }

    impl Job for Fake {
        fn bytes(&self) -> usize {
            self.n
        }
        fn grows(&self) -> bool {
            true
        }
        fn lane(&self) -> u8 {
            self.lane
        }
        fn apply(&mut self, _: &mut Txn<'_>) -> Result<(), Error> {
            Ok(())
        }
        fn receipt(&self) -> Option<Vec<u8>> {
            None
        }
        fn seal(&mut self, _: InGroup) {}
        fn answer(self: Box<Self>, _: Result<(), Error>) {}
    }

    fn order(batch: &[Box<dyn Job>]) -> Vec<(u8, usize)> {
        batch.iter().map(|j| (j.lane(), j.bytes())).collect()
    }

    #[test]
    fn urgent_writes_are_committed_ahead_of_routine_ones_already_waiting() {
        let mut q = Queued::default();
        let mut n = 0;
        let mut push = |q: &mut Queued, lane| {
            q.push(Box::new(Fake { lane, n }));
            n += 1;
        };
        for _ in 0..600 {
            push(&mut q, 2);
        }
        push(&mut q, 1);
        push(&mut q, 0);
        let first = q.next_batch();
        let lanes: Vec<u8> = order(&first).into_iter().map(|(l, _)| l).collect();
        assert_eq!(&lanes[..2], &[0, 1], "emergency, then bad news");
        assert_eq!(
            lanes.len(),
            2 + ROUTINE_WITH_URGENT,
            "few routine beside them"
        );
        let second = q.next_batch();
        assert_eq!(
            second.len(),
            MAX_BATCH,
            "then routine batches as large as ever"
        );
        assert_eq!(q.len, 600 - ROUTINE_WITH_URGENT - MAX_BATCH);
    }

    #[test]
    fn within_a_lane_writes_keep_their_order() {
        let mut q = Queued::default();
        for n in 0..10 {
            q.push(Box::new(Fake { lane: 2, n }));
        }
        q.push(Box::new(Fake { lane: 0, n: 99 }));
        let seen: Vec<(u8, usize)> = order(&q.next_batch());
        let mut expected = vec![(0, 99)];
        expected.extend((0..10).map(|n| (2, n)));
        assert_eq!(seen, expected);
    }
}
