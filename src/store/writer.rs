//! The writer thread: the one place the store is written, and where the
//! durability contract is kept.
//!
//! It takes whatever writes have queued since its last commit (up to
//! [`MAX_BATCH`] writes or [`MAX_BATCH_BYTES`] of chunks), applies them in
//! one redb transaction, commits it with `Durability::Immediate` (fsync),
//! and only then answers each write and wakes the watchers. If the commit
//! fails, nothing of the batch is on disk and every write hears so; the
//! database is then reopened in place, so the next batch can commit. While
//! free space is below the floor, writes that add data are refused before
//! the batch is applied.

use std::sync::Weak;

use redb::Database;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use super::txn::{Effects, Txn};
use super::{Error, Inner};
use crate::audit::Chain;
use crate::clock::Clock;

/// Most writes folded into one commit.
const MAX_BATCH: usize = 512;
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

    /// Applies the write within the batch's transaction.
    fn apply(&self, txn: &mut Txn<'_>) -> Result<Self::Out, Error>;
}

/// A write on its way through the writer, with its caller's reply channel.
pub(super) trait Job: Send {
    fn bytes(&self) -> usize;
    fn grows(&self) -> bool;
    fn apply(&mut self, txn: &mut Txn<'_>) -> Result<(), Error>;
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

    fn apply(&mut self, txn: &mut Txn<'_>) -> Result<(), Error> {
        self.out = Some(self.write.apply(txn)?);
        Ok(())
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
    while let Some(first) = rx.blocking_recv() {
        let mut bytes = first.bytes();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(job) => {
                    bytes += job.bytes();
                    batch.push(job);
                }
                Err(_) => break,
            }
        }
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
