//! The writer thread: where the store is written, and where the
//! durability contract is kept.
//!
//! It takes whatever writes have queued since its last commit (up to
//! [`MAX_BATCH`] writes or [`MAX_BATCH_BYTES`] of chunks) — urgent ones
//! first, with no routine ones beside an urgent item, so an emergency is
//! committed ahead of routine items already waiting, in a commit no routine
//! write makes longer; a routine batch being applied when an urgent item
//! comes is cut short, and the urgent writes join what of it is applied,
//! so that they wait for one commit, not two — applies them in one redb
//! transaction, makes
//! it durable (by the write-ahead log, or by a redb commit with fsync: see
//! [`commit`]), and only then answers each write and wakes the watchers.
//! If the commit
//! fails, nothing of the batch is on disk and every write hears so; the
//! database is then reopened in place, so the next batch can commit. While
//! free space is below the floor, writes that add data are refused before
//! the batch is applied. The receipts a batch's writes want are handed out
//! as one [`Group`], so a busy node signs once per commit, not per item;
//! for a commit of an urgent item, or a quiet store's, it is signed while
//! the commit's log frame goes to the disk, so no answer waits for a
//! signature after the commit.
//!
//! A write alone on a quiet store is committed the same way on its
//! caller's thread instead (see [`commit_alone`]); whoever commits holds the
//! writer's [`Core`], so there is one commit at a time either way. Under
//! a load of many writes at once, the writer waits a moment for more of
//! them before each commit, so that fewer, larger commits carry them (see
//! [`Queued::gather`]); an urgent write never waits for that.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use redb::{Database, Durability};
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use super::txn::{Effects, Txn};
use super::wal::{self, Wal};
use super::{Error, Inner};
use crate::audit::Chain;
use crate::clock::Clock;
use crate::receipt::{Group, InGroup};
use crate::trust::Identity;

/// Most writes folded into one commit.
const MAX_BATCH: usize = 512;
/// Most routine writes in a commit that holds urgent ones: after a commit
/// of urgent items alone, or beside the small writes that move items on
/// (receipts, acknowledgements), which share the urgent lanes.
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

    /// Who signs the receipt [`Write::receipt`] gives, if the writer may
    /// sign its group.
    fn signer(&self) -> Option<&Identity> {
        None
    }

    /// The write as the write-ahead log keeps it, if it is one the log
    /// takes (the hot path's: see [`wal::Kind`]); a batch of nothing else
    /// is made durable by the log rather than by a redb commit with fsync.
    fn logged(&self) -> Option<wal::Logged> {
        None
    }

    /// Whether [`Write::logged`] gives the write. The default builds the
    /// log record to see; a write whose record copies a report's bytes
    /// says so here without building it.
    fn logs(&self) -> bool {
        self.logged().is_some()
    }
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
    /// See [`Write::signer`].
    fn signer(&self) -> Option<&Identity>;
    /// See [`Write::logged`].
    fn logged(&self) -> Option<wal::Logged>;
    /// See [`Write::logs`].
    fn logs(&self) -> bool;
    /// Answers the caller: the write's outcome if the batch committed.
    fn answer(self: Box<Self>, committed: Result<(), Error>);
    /// Keeps the writer's priority raised until the write is answered.
    fn hold(&mut self, pressed: super::priority::Pressed);
}

/// A [`Write`] waiting for its commit.
pub(super) struct Pending<W: Write> {
    pub(super) write: W,
    pub(super) out: Option<W::Out>,
    pub(super) reply: oneshot::Sender<Result<W::Out, Error>>,
    /// Its hold on the writer's priority, if it is pressing.
    pub(super) pressed: Option<super::priority::Pressed>,
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

    fn logged(&self) -> Option<wal::Logged> {
        self.write.logged()
    }

    fn logs(&self) -> bool {
        self.write.logs()
    }

    fn signer(&self) -> Option<&Identity> {
        self.write.signer()
    }

    fn answer(self: Box<Self>, committed: Result<(), Error>) {
        let Self {
            out,
            reply,
            pressed,
            ..
        } = *self;
        let _ = reply.send(committed.and_then(|()| out.ok_or(Error::Closed)));
        // Only once answered: a thread that lowers its priority may lose
        // its core at once, and the answer would wait for it to come back.
        drop(pressed);
    }

    fn hold(&mut self, pressed: super::priority::Pressed) {
        self.pressed = Some(pressed);
    }
}

/// What the writer keeps from one commit to the next: the write-ahead log
/// (replayed already), the custody log's head, which every commit extends
/// with what its batch did, and the clock that stamps commits. Whoever
/// commits holds it: the writer thread, or a caller committing alone.
pub(super) struct Core {
    pub(super) wal: Wal,
    pub(super) chain: Chain,
    pub(super) clock: Clock,
    /// Urgent writes that joined a batch cut short for them, for the
    /// tests to tell that they did.
    #[cfg(test)]
    pub(super) joined: usize,
}

/// Runs until every sender of `rx` is gone.
pub(super) fn run(mut rx: mpsc::Receiver<Box<dyn Job>>, inner: &Weak<Inner>) {
    let mut queued = Queued::default();
    loop {
        if queued.len == 0 {
            match rx.blocking_recv() {
                Some(job) => queued.push(job),
                None => return,
            }
        }
        queued.take_waiting(&mut rx);
        let strong = inner.upgrade();
        if let Some(inner) = &strong {
            let under_way = inner.under_way.load(Ordering::Relaxed);
            // Nothing came in a whole wait: the load the caller told of has
            // ended (its last items never reached the point where it says
            // so: a connection lost, say). Forgotten, unless told afresh
            // meanwhile, so that no later commit waits for it.
            if under_way >= GATHER_FROM && !queued.gather(&mut rx, &inner.gathering) {
                let _ = inner.under_way.compare_exchange(
                    under_way,
                    0,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
        }
        let batch = queued.next_batch();
        let Some(inner) = strong else {
            for job in batch {
                job.answer(Err(Error::Closed));
            }
            return;
        };
        let writes = batch.len();
        // Urgent items that come while a batch of routine writes is being
        // applied cut it short, and join it (see `commit`); while the disk
        // is short of its floor they only cut it, to be refused next.
        let mut joined = 0;
        let mut cut = || {
            queued.take_waiting(&mut rx);
            if queued.urgent_items == 0 {
                return None;
            }
            if inner.below_floor() {
                return Some(Vec::new());
            }
            let urgent = queued.urgent_lanes();
            joined += urgent.len();
            Some(urgent)
        };
        let Committed {
            mut batch,
            answer,
            rest,
        } = {
            let mut core = inner.core.lock().unwrap_or_else(|e| e.into_inner());
            commit_batch(&inner, &mut core, batch, &mut cut, false)
        };
        inner.pending.done(writes + joined - rest.len());
        queued.put_back(rest);
        // Let go of the store before answering: a caller that closes its
        // last handle on the answer then waits for the file to close, not
        // for this thread to come back to it.
        drop(inner);
        if joined > 0 {
            // Urgent writes that joined a routine batch are answered
            // first, not after its hundreds of routine ones.
            batch.sort_by_key(|job| job.lane());
        }
        for job in batch {
            job.answer(answer.clone());
        }
    }
}

/// Writes under way at the store's caller (see [`super::Store::under_way`])
/// from which the writer gathers writes before a commit (see
/// [`Queued::gather`]). Below it, the writes coming are too few to fill a
/// commit in the time: a hub taking 16 streams × 1 in flight, say, was no
/// faster gathering.
const GATHER_FROM: usize = 32;
/// Writes queued at which the writer stops gathering and commits.
const GATHER_MIN: usize = 32;
/// Longest the writer gathers before a commit: under a load of its
/// kind, a few items' verification.
const GATHER_WAIT: std::time::Duration = std::time::Duration::from_micros(100);

/// How long after two writes last overlapped every write still goes to the
/// writer thread, to be batched: about twenty single-write commits. A load
/// that makes writes overlap does so far more often than that, so it is
/// batched throughout; 50 ms measured no better (end to end, one county
/// with eight operators, two alternating pairs).
const CALM_AFTER: std::time::Duration = std::time::Duration::from_millis(5);

/// Writes handed to the store and not answered yet, and whether writes
/// have overlapped lately: a write is committed on its caller's thread only
/// when neither holds (see [`commit_alone`]).
#[derive(Debug)]
pub(super) struct Load {
    count: AtomicUsize,
    epoch: std::time::Instant,
    /// Microseconds after `epoch` until which the store counts as busy.
    busy_until: AtomicU64,
    /// Commits made on a caller's thread, for the tests to tell where a
    /// write was committed.
    #[cfg(test)]
    pub(super) inline: AtomicUsize,
}

impl Default for Load {
    fn default() -> Self {
        Self {
            count: AtomicUsize::new(0),
            epoch: std::time::Instant::now(),
            busy_until: AtomicU64::new(0),
            #[cfg(test)]
            inline: AtomicUsize::new(0),
        }
    }
}

impl Load {
    /// Counts a write in; says whether it may be committed on its
    /// caller's thread: none is pending, and none overlapped lately. The
    /// write is counted until [`Load::done`].
    pub(super) fn arrive(&self) -> bool {
        self.arrive_at(self.epoch.elapsed().as_micros() as u64)
    }

    /// [`Load::arrive`] at `now`, in microseconds after `epoch`.
    fn arrive_at(&self, now: u64) -> bool {
        let before = self.count.fetch_add(1, Ordering::AcqRel);
        if before > 0 {
            let until = now + CALM_AFTER.as_micros() as u64;
            self.busy_until.fetch_max(until, Ordering::Relaxed);
            return false;
        }
        now >= self.busy_until.load(Ordering::Relaxed)
    }

    /// Counts `n` writes out: answered, or never handed on.
    pub(super) fn done(&self, n: usize) {
        self.count.fetch_sub(n, Ordering::AcqRel);
    }
}

/// Commits `job` on the caller's thread, if it may (`calm`: see
/// [`Load::arrive`]) and no commit is under way; else gives it back, to
/// be sent to the writer thread. It is counted in `pending` already.
///
/// A write on its own then waits for no hand-off to the writer thread and
/// none back: each is a wake-up of a sleeping thread, tens of microseconds
/// on this kind of machine, twice per durable step (measured: the hub's
/// single-item p50 fell by about 0.1 ms). The commit is synchronous, so a
/// caller that stops waiting cannot stop it halfway. It blocks the caller's
/// thread for one small commit made durable by the log, and only on a
/// quiet store: once writes overlap, all of them go to the writer thread,
/// which batches them and orders them by class.
pub(super) fn commit_alone(inner: &Inner, job: Box<dyn Job>, calm: bool) -> Option<Box<dyn Job>> {
    if !calm {
        return Some(job);
    }
    let mut core = match inner.core.try_lock() {
        Ok(core) => core,
        Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
        Err(std::sync::TryLockError::WouldBlock) => return Some(job),
    };
    // A full commit (one due, or a write the log does not take) writes out
    // every page since the last: tens of milliseconds on a busy store, too
    // long to block a caller's thread; so is a reopen after one that failed
    // before. The writer thread makes them.
    if inner.db.get().is_err()
        || core.wal.checkpoint_due()
        || job.bytes() > wal::MAX_BATCH_BYTES
        || !job.logs()
    {
        return Some(job);
    }
    let Committed { batch, answer, .. } =
        commit_batch(inner, &mut core, vec![job], &mut || None, true);
    drop(core);
    #[cfg(test)]
    inner.pending.inline.fetch_add(1, Ordering::Relaxed);
    inner.pending.done(1);
    for job in batch {
        job.answer(answer.clone());
    }
    None
}

/// What [`commit_batch`] did with a batch.
struct Committed {
    /// The writes to answer (those not refused for want of space, nor cut
    /// off), and their answer.
    batch: Vec<Box<dyn Job>>,
    answer: Result<(), Error>,
    /// Writes cut off the batch for urgent ones (see [`commit`]): neither
    /// applied nor answered, they go back to the front of their queue.
    rest: Vec<Box<dyn Job>>,
}

/// Commits `batch` (see [`commit`]) and wakes the watchers.
/// `inline`: on the caller's thread (see [`commit_alone`]), for the debug
/// log and to keep a reopen from blocking the runtime.
fn commit_batch(
    inner: &Inner,
    core: &mut Core,
    batch: Vec<Box<dyn Job>>,
    cut: &mut Cut<'_>,
    inline: bool,
) -> Committed {
    let mut batch = refuse_growth_when_low(inner, batch);
    let mut rest = Vec::new();
    if batch.is_empty() {
        return Committed {
            batch,
            answer: Ok(()),
            rest,
        };
    }
    let started = std::time::Instant::now();
    // A reopen that failed before (the file not readable yet) is tried
    // again before the next batch.
    let db = inner.db.get().or_else(|_| {
        reopen(inner, &mut core.wal, &mut core.chain)?;
        inner.db.get()
    });
    // Near a full disk, batches are committed with fsync: should the
    // disk fill under a commit, nothing is then waiting in the log for
    // room to be applied again.
    let room = super::free_bytes(&inner.dir).is_some_and(|free| free >= wal::ROOM);
    let segment = core.wal.segment();
    let committed = db
        .map_err(|e| (e, false))
        .and_then(|db| commit(&db, &mut batch, &mut rest, cut, core, room, inline));
    inner.count_commit(batch.len(), started.elapsed());
    tracing::debug!(
        writes = batch.len(),
        commit_us = started.elapsed().as_micros() as u64,
        logged = matches!(committed, Ok((_, true))),
        inline,
        cut = rest.len(),
        "store commit"
    );
    let answer = match committed {
        Ok((effects, logged)) => {
            if logged {
                inner.unflushed.store(true, Ordering::Relaxed);
            } else if effects.segment_freed || core.wal.segment() != segment {
                drop_unused_segments(inner, core.wal.segment());
            }
            inner.wake(effects);
            Ok(())
        }
        Err((e, used)) => {
            error!(error = %e, writes = batch.len(), "store commit failed; nothing of the batch is stored");
            if used && matches!(e, Error::Full | Error::Db(_)) {
                // A reopen may wait seconds for readers to let go: on a
                // caller's thread, the runtime first moves its other tasks
                // elsewhere.
                let reopened = if inline && multi_threaded_runtime() {
                    tokio::task::block_in_place(|| reopen(inner, &mut core.wal, &mut core.chain))
                } else {
                    reopen(inner, &mut core.wal, &mut core.chain)
                };
                match reopened {
                    Ok(()) => info!("store reopened after the failed commit"),
                    Err(e) => {
                        warn!(error = %e, "store not reopened yet; the next write tries again")
                    }
                }
            }
            Err(e)
        }
    };
    Committed {
        batch,
        answer,
        rest,
    }
}

/// Deletes the log's segments before `current` that no item's row points
/// into any more (see [`bodies`](super::bodies)). Called right after a
/// commit with fsync, so the store's durable state no longer points into
/// them either; one that cannot be deleted now is tried again after the
/// next such commit that frees or starts a segment, or at the next open.
pub(super) fn drop_unused_segments(inner: &Inner, current: u64) {
    let unused = inner.db.get().and_then(|db| {
        let on_disk = super::bodies::segments_on_disk(&inner.db.path).map_err(|e| Error::Log {
            path: inner.dir.clone(),
            source: Arc::new(e),
        })?;
        super::read::unused_segments(&db, &on_disk, current)
    });
    match unused {
        Ok(unused) => {
            for n in unused {
                match inner.bodies.remove(n) {
                    Ok(()) => info!(
                        segment = n,
                        "store log: a segment no report lies in any more deleted"
                    ),
                    Err(e) => {
                        warn!(segment = n, error = %e, "store log: a segment no report lies in any more not deleted")
                    }
                }
            }
        }
        Err(e) => {
            warn!(error = %e, "store log: the segments no report lies in were not looked for")
        }
    }
}

/// Whether this thread runs a multi-threaded tokio runtime's tasks, where
/// [`tokio::task::block_in_place`] may be used.
fn multi_threaded_runtime() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}

/// Reopens the database after a failed commit (redb refuses every use of
/// it after one) at its last durable state, and applies the batches logged
/// since; the custody log's head is read back from what is then stored.
fn reopen(inner: &Inner, wal: &mut Wal, chain: &mut Chain) -> Result<(), Error> {
    // The log is opened again below: nothing may still be writing it.
    wal.stop_writing_out();
    inner.db.reopen()?;
    let db = inner.db.get()?;
    let replayed = replay(&db, &inner.db.path, wal.segment_bytes())
        .and_then(|w| Ok((w, super::read::audit_chain(&db)?)));
    let (replayed, head) = match replayed {
        Ok(done) => done,
        Err(e) => {
            // Not served without what the log holds: readers would miss
            // items already acknowledged. Tried again before the next batch.
            drop(db);
            inner.db.close();
            return Err(e);
        }
    };
    *wal = replayed;
    *chain = head;
    inner.wake(Effects {
        queued: true,
        inboxed: true,
        ..Effects::default()
    });
    Ok(())
}

/// Opens the write-ahead log of the database at `db_path` and applies the
/// batches it holds that `db` does not (see [`wal`]).
pub(super) fn replay_log(
    db: &Database,
    db_path: &std::path::Path,
    segment_bytes: u64,
) -> Result<Wal, Error> {
    replay(db, db_path, segment_bytes)
}

fn replay(db: &Database, db_path: &std::path::Path, segment_bytes: u64) -> Result<Wal, Error> {
    let (segment, start) = super::read::wal_start(db)?;
    let path = &super::bodies::segment_path(db_path, segment);
    let log_err = |e: std::io::Error| Error::Log {
        path: path.to_path_buf(),
        source: Arc::new(e),
    };
    let (mut wal, batches) = Wal::open(db_path, segment, start, segment_bytes).map_err(log_err)?;
    let applied = super::read::wal_applied(db)?;
    let mut chain = super::read::audit_chain(db)?;
    let mut last = applied;
    let txn = db.begin_write()?;
    for batch in batches {
        if batch.seq <= last {
            continue;
        }
        if batch.seq != last + 1 {
            warn!(path = %path.display(), expected = last + 1, found = batch.seq, "store log: a batch is missing; the rest is not applied");
            break;
        }
        let mut t = Txn::open(&txn, batch.now_ms)?;
        for write in &batch.writes {
            super::write::apply_logged(write, &mut t)?;
        }
        t.log(&mut chain)?;
        t.count_bodies()?;
        t.set_wal_applied(batch.seq)?;
        last = batch.seq;
    }
    Txn::open(&txn, 0)?.set_wal_start(wal.end())?;
    txn.commit()?;
    if last > applied {
        info!(path = %path.display(), batches = last - applied, "store log: batches written since the last full commit applied again");
    }
    wal.set_last_seq(last);
    wal.reset();
    Ok(wal)
}

/// The writer thread while it gathers writes for a larger commit (see
/// [`Queued::gather`]): a pressing write wakes it.
#[derive(Debug, Default)]
pub(super) struct Gathering(std::sync::Mutex<Option<std::thread::Thread>>);

impl Gathering {
    fn set(&self, thread: Option<std::thread::Thread>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = thread;
    }

    /// Wakes the writer if it is gathering; called once a pressing write is
    /// sent to it. If the writer has not parked yet, it finds the write
    /// before it does, or parks not at all (the wake is kept for it).
    pub(super) fn wake(&self) {
        if let Some(thread) = self.0.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            thread.unpark();
        }
    }
}

/// Writes taken off the channel, by lane.
#[derive(Default)]
struct Queued {
    lanes: [std::collections::VecDeque<Box<dyn Job>>; 3],
    len: usize,
    /// Urgent items (not the small writes that share their lanes) queued.
    urgent_items: usize,
    /// The last commit left routine writes waiting for an urgent item's
    /// sake: the next one takes some, whatever is queued.
    held_back: bool,
}

impl Queued {
    /// Takes the writes waiting in `rx`, up to [`QUEUED`] here.
    fn take_waiting(&mut self, rx: &mut mpsc::Receiver<Box<dyn Job>>) {
        while self.len < QUEUED {
            match rx.try_recv() {
                Ok(job) => self.push(job),
                Err(_) => break,
            }
        }
    }

    /// Waits up to [`GATHER_WAIT`] for more writes before the next commit,
    /// until [`GATHER_MIN`] are queued or an urgent one comes. Writes that
    /// come meanwhile do not wake this thread (each wake-up costs about as
    /// much CPU as a write's share of a commit); a pressing one does (see
    /// [`Gathering`]).
    ///
    /// Why: under a load that keeps both cores busy, every commit costs
    /// CPU whatever its size — redb's commit, the log's `fdatasync`, one
    /// receipt signature per commit group, the wake-ups around it — and
    /// the writer, committing whatever has come, made commits of four to
    /// sixteen writes. Gathered, they are twice as large, and the CPU per
    /// item fell by 7 % (see the README's performance section).
    ///
    /// Says whether any write came while it waited.
    fn gather(&mut self, rx: &mut mpsc::Receiver<Box<dyn Job>>, gathering: &Gathering) -> bool {
        let deadline = std::time::Instant::now() + GATHER_WAIT;
        let before = self.len;
        gathering.set(Some(std::thread::current()));
        loop {
            self.take_waiting(rx);
            if self.len >= GATHER_MIN || !self.lanes[0].is_empty() || !self.lanes[1].is_empty() {
                break;
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                break;
            }
            std::thread::park_timeout(deadline - now);
        }
        gathering.set(None);
        self.len > before
    }

    /// Puts writes cut off a batch back at the front of their lanes, in
    /// their order.
    fn put_back(&mut self, jobs: Vec<Box<dyn Job>>) {
        for job in jobs.into_iter().rev() {
            if urgent_item(job.as_ref()) {
                self.urgent_items += 1;
            }
            self.lanes[usize::from(job.lane())].push_front(job);
            self.len += 1;
        }
    }

    fn push(&mut self, job: Box<dyn Job>) {
        if urgent_item(job.as_ref()) {
            self.urgent_items += 1;
        }
        self.lanes[usize::from(job.lane())].push_back(job);
        self.len += 1;
    }

    /// The next commit's writes: urgent lanes first, in order of arrival
    /// within a lane, and few routine ones beside them.
    ///
    /// Beside an urgent item (an emergency, bad news), none: a routine
    /// write costs the writer about 65 µs on a busy hub here, so even 16 of
    /// them made an emergency's commit several times as long. They go in
    /// the next commit, which takes [`ROUTINE_WITH_URGENT`] of them even
    /// if more urgent items have come, so a flood of emergencies slows
    /// routine items down but never stops them.
    fn next_batch(&mut self) -> Vec<Box<dyn Job>> {
        let urgent = !self.lanes[0].is_empty() || !self.lanes[1].is_empty();
        let routine = if self.urgent_items > 0 && !self.held_back {
            0
        } else if urgent {
            ROUTINE_WITH_URGENT
        } else {
            MAX_BATCH
        };
        self.held_back = routine == 0 && !self.lanes[2].is_empty();
        self.take(routine)
    }

    /// The writes queued in the urgent lanes, to join a routine batch that
    /// urgent items have cut short (see [`commit`]): the routine writes
    /// already in it keep routine items moving, so none is held back for
    /// their sake.
    fn urgent_lanes(&mut self) -> Vec<Box<dyn Job>> {
        self.take(0)
    }

    /// Takes the urgent lanes' writes and up to `routine` routine ones,
    /// within a batch's bounds.
    fn take(&mut self, routine: usize) -> Vec<Box<dyn Job>> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        for (lane, queue) in self.lanes.iter_mut().enumerate() {
            let most = if lane == 2 { routine } else { MAX_BATCH };
            let mut taken = 0;
            while taken < most && batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
                let Some(job) = queue.pop_front() else { break };
                if urgent_item(job.as_ref()) {
                    self.urgent_items -= 1;
                }
                bytes += job.bytes();
                batch.push(job);
                taken += 1;
            }
        }
        self.len -= batch.len();
        batch
    }
}

/// Whether `job` is an urgent item (an emergency, bad news), not one of
/// the small writes that share the urgent lanes.
pub(super) fn urgent_item(job: &dyn Job) -> bool {
    job.lane() < 2 && job.grows()
}

/// Puts the receipts the batch's writes want into one group, signed once:
/// here if `sign`, as the first write that names a signer (see
/// [`Write::signer`]), else by the first caller that asks for its receipt.
fn group_receipts(batch: &mut [Box<dyn Job>], sign: bool) {
    let (members, receipts): (Vec<usize>, Vec<Vec<u8>>) = batch
        .iter()
        .enumerate()
        .filter_map(|(i, job)| job.receipt().map(|r| (i, r)))
        .unzip();
    if receipts.is_empty() {
        return;
    }
    let group = Arc::new(Group::new(receipts));
    if sign && let Some(signer) = batch.iter().find_map(|job| job.signer()) {
        group.sign(signer);
    }
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
    if !batch.iter().any(|j| j.grows()) || !inner.below_floor() {
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

/// Asked by [`commit`] after each write of a routine batch it applies:
/// `None` while no urgent item has come, else the urgent writes to join the
/// batch, cut short there (none: only cut short).
type Cut<'a> = dyn FnMut() -> Option<Vec<Box<dyn Job>>> + 'a;

/// Adds `urgent`, the urgent writes a batch was cut short for, to the
/// batch and to its log frame, if it has one (see [`commit`]); says
/// whether they joined. They do unless the batch is made durable by the
/// log and the log does not take one of them, or a frame would not take
/// them all ([`wal::MAX_BATCH_BYTES`]); they then go first in `rest`, for
/// the next commit.
fn join(
    wal: &Wal,
    frame: Option<&mut wal::Frame>,
    batch: &mut Vec<Box<dyn Job>>,
    rest: &mut Vec<Box<dyn Job>>,
    urgent: Vec<Box<dyn Job>>,
) -> bool {
    if urgent.is_empty() {
        return false;
    }
    if let Some(frame) = frame {
        let bytes: usize = batch.iter().chain(&urgent).map(|j| j.bytes()).sum();
        let logged: Option<Vec<wal::Logged>> = if bytes > wal::MAX_BATCH_BYTES {
            None
        } else {
            urgent.iter().map(|j| j.logged()).collect()
        };
        let Some(logged) = logged else {
            rest.splice(0..0, urgent);
            return false;
        };
        wal.extend(frame, logged);
    }
    batch.extend(urgent);
    true
}

/// Applies a batch in one transaction, with the custody log's records of
/// it, and makes it durable: by the write-ahead log if every write is one
/// it takes (and no full commit is due), else by a redb commit with fsync,
/// which also records where the log goes on; says which. If it fails, `chain` is as it
/// was.
///
/// A batch of routine writes alone is cut short when `cut` gives the
/// urgent writes that have come meanwhile (it is asked after each write
/// applied but the last): the rest is moved to `rest`, not applied and not
/// logged, to go in a later batch, and the urgent writes join what is
/// applied so far, in the same commit. An emergency then waits for one
/// routine write and one commit, not for a batch of hundreds (about 45 µs
/// each on a busy hub here), nor for the routine part's commit and then its
/// own: one `fdatasync`, and one wake-up of this thread after it, fewer at
/// each durable step. Urgent writes that cannot join (see [`join`]) go
/// first in `rest`.
///
/// The error says whether redb's transaction was committed in vain (the
/// database must then be reopened) or never committed (a failed log append:
/// the transaction was dropped, and the database is as it was).
fn commit(
    db: &Database,
    batch: &mut Vec<Box<dyn Job>>,
    rest: &mut Vec<Box<dyn Job>>,
    cut: &mut Cut<'_>,
    core: &mut Core,
    room: bool,
    inline: bool,
) -> Result<(Effects, bool), (Error, bool)> {
    let now = core.clock.now_ms();
    let Core { wal, chain, .. } = core;
    let before = *chain;
    let bytes: usize = batch.iter().map(|j| j.bytes()).sum();
    let logged: Option<Vec<wal::Logged>> =
        if !room || wal.checkpoint_due() || bytes > wal::MAX_BATCH_BYTES {
            None
        } else {
            batch.iter().map(|j| j.logged()).collect()
        };
    // A full commit records where the log goes on after it: in a new
    // segment if this one is full (opened first, so that the commit never
    // names a file that is not there).
    let next = match logged {
        Some(_) => None,
        None if wal.rotation_due() => wal
            .next_segment()
            .inspect_err(
                |e| warn!(error = %e, "store log: no new segment started; the full one goes on"),
            )
            .ok(),
        None => None,
    };
    let start = next.as_ref().map_or_else(|| wal.end(), Wal::end);
    // Whether redb's transaction may have been used in vain (see above).
    let mut used = false;
    let log_err = |e: std::io::Error, path: std::path::PathBuf| match e.kind() {
        std::io::ErrorKind::StorageFull => Error::Full,
        _ => Error::Log {
            path,
            source: Arc::new(e),
        },
    };
    let batch_len = batch.len();
    // Urgent writes that joined the batch after a cut.
    let mut joined = 0;
    let result = (|| {
        let seq = if logged.is_some() {
            wal.next_seq()
        } else {
            wal.last_seq()
        };
        // The log's copy of a batch is written first and goes out to the
        // disk while redb applies the batch, unless the batch may be cut
        // short (above: routine writes, more than one): its copy is written
        // once applied, so that it is never written twice, nor its
        // write-back undone. Either is waited for before the transaction
        // commits, so nothing is visible, or answered, before it is durable.
        // A cut never happens with an urgent item in the batch, and the
        // urgent writes that join it after one are laid out in its copy
        // before it is written.
        let urgent = batch.iter().any(|j| urgent_item(j.as_ref()));
        let cuttable = batch_len > 1 && !urgent;
        let mut frame = logged.map(|writes| {
            wal.frame(wal::Batch {
                seq,
                now_ms: now,
                writes,
                generation: Vec::new(),
            })
        });
        let mut written = None;
        if let Some(frame) = frame.as_ref().filter(|_| !cuttable) {
            written = Some(
                wal.write(frame)
                    .map_err(|e| log_err(e, wal.path().to_path_buf()))?,
            );
        }
        used = true;
        let applied = (|| {
            let mut txn = db.begin_write()?;
            if frame.is_some() {
                txn.set_durability(Durability::None)
                    .map_err(|e| Error::from(redb::Error::from(e)))?;
            }
            let effects = {
                let mut t = Txn::open(&txn, now)?;
                let mut i = 0;
                let mut cut_short = false;
                while i < batch.len() {
                    t.body = frame.as_ref().and_then(|f| f.body(i));
                    batch[i].apply(&mut t)?;
                    t.body = None;
                    i += 1;
                    if cuttable
                        && !cut_short
                        && i < batch_len
                        && let Some(urgent) = cut()
                    {
                        cut_short = true;
                        *rest = batch.split_off(i);
                        if let Some(frame) = frame.as_mut() {
                            frame.truncate(i);
                        }
                        let handed = urgent.len();
                        if join(wal, frame.as_mut(), batch, rest, urgent) {
                            joined = handed;
                        }
                    }
                }
                t.log(chain)?;
                t.count_bodies()?;
                t.set_wal_applied(seq)?;
                if frame.is_none() {
                    t.set_wal_start(start)?;
                }
                t.fx
            };
            Ok((txn, effects))
        })();
        let (txn, effects) = match applied {
            Ok(applied) => applied,
            Err(e) => {
                if let Some(written) = written {
                    wal.cancel(written);
                }
                return Err(e);
            }
        };
        if let Some(frame) = frame.as_ref().filter(|_| written.is_none()) {
            written = Some(
                wal.write(frame)
                    .map_err(|e| log_err(e, wal.path().to_path_buf()))?,
            );
        }
        // Where a caller waits for this commit alone (a quiet store) or an
        // urgent item is in it, the receipts are signed here while the
        // log's frame goes to the disk, not after the commit on a runtime
        // thread that may be busy; they are handed out only once it is
        // there. A busy store's routine commits leave the signature to
        // their callers, off this thread, which every commit waits for.
        group_receipts(batch, inline || urgent || joined > 0);
        match written {
            Some(written) => {
                used = false;
                wal.sync(written)
                    .map_err(|e| log_err(e, wal.path().to_path_buf()))?;
                // Durable now. Should this commit fail, the store is
                // reopened and the log applied again (see `reopen`).
                used = true;
                txn.commit()?;
                Ok((effects, true))
            }
            None => {
                txn.commit()?;
                wal.reset();
                if let Some(next) = next {
                    wal.rotate(next);
                }
                Ok((effects, false))
            }
        }
    })();
    if result.is_err() {
        *chain = before;
    }
    #[cfg(test)]
    if result.is_ok() {
        core.joined += joined;
    }
    result.map_err(|e| (e, used))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write that only has a lane, whether it is an item (else a small
    /// write that moves items on) and an order of arrival (told as its
    /// size).
    struct Fake {
        lane: u8,
        item: bool,
        n: usize,
        /// Taken by the log (as a custody-log record).
        logs: bool,
        /// Counts its applications.
        applied: Arc<AtomicUsize>,
    }

    impl Job for Fake {
        fn bytes(&self) -> usize {
            self.n
        }
        fn grows(&self) -> bool {
            self.item
        }
        fn lane(&self) -> u8 {
            self.lane
        }
        fn apply(&mut self, _: &mut Txn<'_>) -> Result<(), Error> {
            self.applied.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        fn receipt(&self) -> Option<Vec<u8>> {
            None
        }
        fn seal(&mut self, _: InGroup) {}
        fn signer(&self) -> Option<&Identity> {
            None
        }
        fn hold(&mut self, _: crate::store::priority::Pressed) {}
        fn logs(&self) -> bool {
            self.logs
        }
        fn logged(&self) -> Option<wal::Logged> {
            self.logs.then(|| {
                wal::Logged::of(wal::Kind::Note(wal::Note {
                    kind: 0,
                    item_id: "x".into(),
                    peer: String::new(),
                    detail: String::new(),
                }))
            })
        }
        fn answer(self: Box<Self>, _: Result<(), Error>) {}
    }

    fn item(lane: u8, n: usize) -> Box<dyn Job> {
        Box::new(Fake {
            lane,
            item: true,
            n,
            logs: false,
            applied: Arc::default(),
        })
    }

    fn order(batch: &[Box<dyn Job>]) -> Vec<(u8, usize)> {
        batch.iter().map(|j| (j.lane(), j.bytes())).collect()
    }

    #[test]
    fn urgent_items_are_committed_ahead_of_routine_ones_already_waiting() {
        let mut q = Queued::default();
        for n in 0..600 {
            q.push(item(2, n));
        }
        q.push(item(1, 600));
        q.push(item(0, 601));
        let first = order(&q.next_batch());
        assert_eq!(first, vec![(0, 601), (1, 600)], "alone, emergency first");
        let second = q.next_batch();
        assert_eq!(
            second.len(),
            MAX_BATCH,
            "then routine batches as large as ever"
        );
        assert_eq!(q.len, 600 - MAX_BATCH);
    }

    #[test]
    fn a_flood_of_urgent_items_slows_routine_ones_but_never_stops_them() {
        let mut q = Queued::default();
        let mut n = 0;
        for _ in 0..100 {
            q.push(item(2, n));
            n += 1;
        }
        let mut routine = 0;
        for _ in 0..10 {
            // Emergencies keep coming, faster than they are committed.
            for _ in 0..3 {
                q.push(item(0, n));
                n += 1;
            }
            routine += q.next_batch().iter().filter(|j| j.lane() == 2).count();
        }
        assert_eq!(
            routine,
            5 * ROUTINE_WITH_URGENT,
            "every other commit takes some"
        );
    }

    #[test]
    fn receipts_take_few_routine_items_beside_them() {
        let mut q = Queued::default();
        for n in 0..100 {
            q.push(item(2, n));
        }
        q.push(Box::new(Fake {
            lane: 0,
            item: false,
            n: 100,
            logs: false,
            applied: Arc::default(),
        }));
        let batch = order(&q.next_batch());
        assert_eq!(batch[0], (0, 100));
        assert_eq!(batch.len(), 1 + ROUTINE_WITH_URGENT);
    }

    #[test]
    fn writes_go_inline_only_on_a_store_that_has_been_quiet() {
        let load = Load::default();
        let calm = CALM_AFTER.as_micros() as u64;
        assert!(load.arrive_at(1_000), "nothing pending, nothing lately");
        assert!(!load.arrive_at(1_100), "one is pending");
        load.done(2);
        assert!(
            !load.arrive_at(1_200),
            "none pending, but two overlapped just now"
        );
        load.done(1);
        assert!(!load.arrive_at(1_100 + calm - 1));
        load.done(1);
        assert!(load.arrive_at(1_100 + calm), "quiet again");
        load.done(1);
        assert_eq!(load.count.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn writes_cut_off_a_batch_go_back_first_in_their_order() {
        let mut q = Queued::default();
        for n in 10..13 {
            q.push(item(2, n));
        }
        q.push(item(0, 99));
        q.put_back((3..6).map(|n| item(2, n)).collect());
        assert_eq!(q.len, 7);
        assert_eq!(
            order(&q.next_batch()),
            vec![(0, 99)],
            "the urgent item alone"
        );
        let expected: Vec<(u8, usize)> = [3, 4, 5, 10, 11, 12].map(|n| (2, n)).to_vec();
        assert_eq!(order(&q.next_batch()), expected);
    }

    #[test]
    fn a_routine_batch_is_cut_short_for_urgent_items_and_logged_as_applied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = super::super::Store::open(&path).unwrap();
        let applied = Arc::new(AtomicUsize::new(0));
        let mut batch: Vec<Box<dyn Job>> = (0..5)
            .map(|n| {
                Box::new(Fake {
                    lane: 2,
                    item: true,
                    n,
                    logs: true,
                    applied: applied.clone(),
                }) as Box<dyn Job>
            })
            .collect();
        let mut rest = Vec::new();
        // Urgent items have come once two writes are applied.
        let mut asked = 0;
        let mut cut = || {
            asked += 1;
            (asked == 2).then(Vec::new)
        };
        let db = store.inner.db.get().unwrap();
        let mut core = store.inner.core.lock().unwrap();
        let (segment, start) = super::super::read::wal_start(&db).unwrap();
        let (_, logged) =
            commit(&db, &mut batch, &mut rest, &mut cut, &mut core, true, false).unwrap();
        assert!(logged, "made durable by the log");
        assert_eq!((batch.len(), rest.len()), (2, 3));
        assert_eq!(applied.load(Ordering::Relaxed), 2, "the rest not applied");
        // Read back as a crash would: the log holds the two applied.
        let (_, back) =
            Wal::open(&store.inner.db.path, segment, start, wal::CHECKPOINT_BYTES).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].writes.len(), 2);

        // A batch with an urgent item in it is never cut.
        rest.clear();
        let mut batch: Vec<Box<dyn Job>> = vec![item(0, 1), item(2, 2), item(2, 3)];
        commit(
            &db,
            &mut batch,
            &mut rest,
            &mut || Some(Vec::new()),
            &mut core,
            true,
            false,
        )
        .unwrap();
        assert_eq!((batch.len(), rest.len()), (3, 0));
    }

    fn logged(lane: u8, n: usize, applied: &Arc<AtomicUsize>) -> Box<dyn Job> {
        Box::new(Fake {
            lane,
            item: true,
            n,
            logs: true,
            applied: applied.clone(),
        })
    }

    #[test]
    fn urgent_writes_join_the_routine_batch_cut_short_for_them_in_one_logged_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = super::super::Store::open(&path).unwrap();
        let db = store.inner.db.get().unwrap();
        let mut core = store.inner.core.lock().unwrap();
        let (segment, start) = super::super::read::wal_start(&db).unwrap();
        let applied = Arc::new(AtomicUsize::new(0));

        // Urgent writes come once two routine writes are applied: they are
        // applied next, in the same transaction and the same log frame.
        let mut batch: Vec<Box<dyn Job>> = (0..5).map(|n| logged(2, n, &applied)).collect();
        let mut rest = Vec::new();
        let mut asked = 0;
        let mut cut = || {
            asked += 1;
            (asked == 2).then(|| vec![logged(0, 100, &applied), logged(1, 101, &applied)])
        };
        let (_, by_log) =
            commit(&db, &mut batch, &mut rest, &mut cut, &mut core, true, false).unwrap();
        assert!(by_log, "made durable by the log");
        assert_eq!(asked, 2, "asked no more once cut");
        assert_eq!(order(&batch), [(2, 0), (2, 1), (0, 100), (1, 101)]);
        assert_eq!(
            order(&rest),
            [(2, 2), (2, 3), (2, 4)],
            "the rest not applied"
        );
        assert_eq!(applied.load(Ordering::Relaxed), 4);
        let (_, back) =
            Wal::open(&store.inner.db.path, segment, start, wal::CHECKPOINT_BYTES).unwrap();
        assert_eq!(back.len(), 1, "one frame");
        assert_eq!(back[0].writes.len(), 4);

        // An urgent write the log does not take cannot join a batch the log
        // makes durable: it goes first in what is left, for the next commit.
        let mut batch: Vec<Box<dyn Job>> = (0..3).map(|n| logged(2, n, &applied)).collect();
        let mut rest = Vec::new();
        let mut once = Some(vec![item(0, 100)]);
        let mut cut = || once.take();
        commit(&db, &mut batch, &mut rest, &mut cut, &mut core, true, false).unwrap();
        assert_eq!(order(&batch), [(2, 0)]);
        assert_eq!(order(&rest), [(0, 100), (2, 1), (2, 2)]);
    }

    #[test]
    fn within_a_lane_writes_keep_their_order() {
        let mut q = Queued::default();
        for n in 0..10 {
            q.push(item(2, n));
        }
        q.push(item(0, 99));
        q.push(item(0, 98));
        assert_eq!(order(&q.next_batch()), vec![(0, 99), (0, 98)]);
        let expected: Vec<(u8, usize)> = (0..10).map(|n| (2, n)).collect();
        assert_eq!(order(&q.next_batch()), expected);
    }
}
