//! The custody store: every accepted item, on disk before anyone is told so.
//!
//! # The durability contract
//! A write is answered only after the transaction holding it is on disk:
//! committed by redb with `Durability::Immediate` (fsync), or appended to
//! the write-ahead log and `fdatasync`ed before redb commits it (see
//! below). One writer thread commits whatever has queued up since its last
//! commit in one transaction (group commit), then answers every waiter: the
//! promise "on disk before acknowledged" holds per item at the cost of one
//! sync per batch. The one exception is a write alone on a quiet store,
//! from a caller with nothing else under way ([`Store::alone`]): it is
//! committed the same way on the caller's own thread, which saves it two
//! thread wake-ups. Either way one commit is made at a time. Signing and
//! verifying happen before a write is submitted, never inside the commit;
//! the receipts a batch's writes want are grouped for one signature after
//! it.
//!
//! # The write-ahead log
//! A batch of nothing but the hot path's writes — new items and the
//! receipts and records that follow them, what a busy hub or county commits
//! most — is made durable by one sequential append and `fdatasync` of a log
//! beside the database, not by a redb commit with fsync (which writes a
//! header and pages scattered over the file); redb commits it without
//! fsync, and commits with fsync every other batch and regularly. At open,
//! batches logged after the last durable commit are applied again. The
//! promise is the same: nothing is answered before it is on disk. See
//! `wal`. The log also keeps the reports of the items it made durable,
//! which their rows point at rather than hold: see `bodies`.
//!
//! # A full disk
//! New items and attachment chunks are refused ([`Error::Full`]) while the
//! free space under the store is below a floor, so the disk does not fill
//! in the middle of a commit; receipts, acknowledgements and escalations —
//! small, and what moves stored items on — still go through, and reads
//! always do. Should a commit fail anyway (the disk filled from outside),
//! nothing of it is on disk, and the writer reopens the database in place
//! (redb refuses every use of a database after a failed write): the node
//! carries on, without a restart, once space is freed.
//!
//! # Layout
//! - [`record`]: what is kept per item, and what writes answer;
//! - [`tables`]: the tables and what their keys mean (the queue's key order
//!   *is* the schedule);
//! - `write`: the write API, one message to the writer per call;
//! - `writer`: the writer thread (and the commit a caller alone makes),
//!   where the contract above is kept;
//! - `wal`: the write-ahead log's files and records;
//! - `bodies`: reports kept in the log's segments rather than in redb;
//! - `compact`: moving the last reports out of segments pruning has
//!   mostly emptied, so their files go;
//! - `txn`: what each write does to the tables;
//! - `office`: reads for solicitations, bulletins, answers and the
//!   statistics' fact tables;
//! - `read`: the read API (schedule, deadlines, inbox, durable consumers'
//!   backlogs, chunks, receipts to push down);
//! - `review`: items held for review before sending (把关), and their
//!   reads and writes;
//! - `retention`: pruning the bodies of delivered items, and what the
//!   store holds, table by table.
//!
//! The store knows nothing of the network: its errors are its own, and the
//! node says what they mean to a peer.

mod bodies;
mod compact;
mod gauges;
mod office;
mod priority;
pub(crate) use priority::NICE as URGENT_NICE;
mod read;
pub mod record;
mod retention;
mod review;
pub mod tables;
mod txn;
mod wal;
mod write;
mod writeout;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use redb::Database;
use tokio::sync::{mpsc, oneshot, watch};

pub use compact::{Compacted, Sparse};
pub use gauges::StoreGauges;
pub use read::{Found, Queued};
pub use record::Brief;
pub use record::{
    Acked, Backlog, ConsumerOpened, ConsumerPosition, Decision, DecisionFact, DecisionOutcome,
    Destination, Escalation, FROM_OPERATOR, Facts, HistoryKind, HoldOutcome, ItemFact, ItemRecord,
    NoticeOutcome, PutOutcome, ReceiptOutcome, RecordState, Retention, RouteReceiptRecord,
    UploadUsage,
};
pub use retention::{Candidates, StoreStats, TableSize};
pub use review::ReviewRecord;

use crate::clock::Clock;
use txn::Effects;
use writer::{Job, Pending, Write};

/// redb's page cache: the queue lives on disk, and a node with a million
/// items waiting must not hold them all in memory.
///
/// Half of it is redb's write buffer, which holds the pages of the commits
/// the log made durable until the next full commit writes them all out, one
/// `pwrite` per page, before its `fdatasync`; an urgent item that comes
/// meanwhile waits for it. At 32 MiB a busy hub's full commit wrote 16 MiB
/// so and took 50–80 ms; at 8 MiB, 4 MiB and 16–20 ms (the pages beyond
/// the buffer go to the file between full commits, where the flusher
/// thread writes them behind the log). Measured at 64 streams, in
/// alternating pairs: the hub's slowest emergency during the load lower in
/// 9 of 9, its one-at-a-time p50 lower in 3 of 3, throughput and CPU per
/// item within the noise for 1 KiB reports; with 256 KiB ones, 35–40 MiB
/// less peak RSS and about 7 % fewer items/s (four pairs).
const CACHE_BYTES: usize = 8 << 20;

/// The store log's segment size unless configured (see `bodies`): one
/// full commit's worth of log (see `wal`).
pub const LOG_SEGMENT_BYTES: u64 = wal::CHECKPOINT_BYTES;

/// How a store is opened.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// New items and chunks are refused while less than this is free on
    /// the store's file system.
    pub min_free_bytes: u64,
    /// Bytes of log after which it goes on in a new segment.
    pub log_segment_bytes: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            min_free_bytes: 0,
            log_segment_bytes: LOG_SEGMENT_BYTES,
        }
    }
}

/// Writes waiting for the writer thread at most.
const WRITE_QUEUE: usize = 4096;

/// Errors from the store.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The disk is full: nothing new is accepted, nothing stored is lost.
    #[error(
        "store is full (no space left on device); new items are refused, stored items are kept"
    )]
    Full,
    /// The writer thread has stopped (the node is shutting down).
    #[error("store is closed")]
    Closed,
    /// redb reported an error.
    #[error("store: {0}")]
    Db(Arc<redb::Error>),
    /// A stored record does not decode.
    #[error("store: corrupt item record: {0}")]
    Corrupt(prost::DecodeError),
    /// The store's directory could not be created.
    #[error("store: cannot create {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: Arc<std::io::Error>,
    },
    /// The writer thread could not be started.
    #[error("store: cannot start the writer thread: {0}")]
    Thread(Arc<std::io::Error>),
    /// A read task did not finish.
    #[error("store: read task failed: {0}")]
    ReadTask(Arc<tokio::task::JoinError>),
    /// The database is being reopened after a failed write; try again.
    #[error("store: reopening after a failed write; try again shortly")]
    Reopening,
    /// A report's bytes kept in the log could not be read back whole.
    #[error("store: report bytes at offset {offset} of {path}: {why}")]
    Body {
        /// The log segment.
        path: PathBuf,
        /// Where the bytes were to be.
        offset: u64,
        /// Why they were not read.
        why: String,
    },
    /// A report's segment of the log was not there when the report was
    /// read: the row read pointed into it before its last reports moved
    /// into their rows or were pruned, and the file went meanwhile. Reads
    /// that put reports back try once more, from a newer snapshot (see
    /// `Store::lookup_reports`); this reaches a caller only if the file is
    /// missing for good.
    #[error("store: the log segment {path}, which a report was to be read from, is not there")]
    BodyGone {
        /// The log segment.
        path: PathBuf,
    },
    /// The write-ahead log could not be written or read.
    #[error("store: write-ahead log {path}: {source}")]
    Log {
        /// The log file.
        path: PathBuf,
        /// Why.
        source: Arc<std::io::Error>,
    },
}

impl From<redb::Error> for Error {
    fn from(e: redb::Error) -> Self {
        if let redb::Error::Io(io) = &e
            && io.kind() == std::io::ErrorKind::StorageFull
        {
            return Self::Full;
        }
        Self::Db(Arc::new(e))
    }
}

macro_rules! db_err {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Self::from(redb::Error::from(e))
            }
        }
    )*};
}
db_err!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// The database file, reopened in place when a failed commit left redb
/// unwilling to go on with it.
struct Db {
    path: PathBuf,
    current: std::sync::RwLock<Option<Arc<Database>>>,
}

/// How long a reopen waits for readers to let go of the old database.
const REOPEN_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

impl Db {
    fn open(path: &Path) -> Result<Database, Error> {
        Ok(Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)?)
    }

    /// The database, unless it is being reopened.
    fn get(&self) -> Result<Arc<Database>, Error> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(Error::Reopening)
    }

    /// Closes the database until the next [`Db::reopen`]: reads say
    /// [`Error::Reopening`] meanwhile.
    fn close(&self) {
        self.current
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }

    /// Closes the database and opens it again (redb repairs what a failed
    /// commit left); waits for readers still holding the old one.
    fn reopen(&self) -> Result<(), Error> {
        let old = self
            .current
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(mut old) = old {
            let waited = std::time::Instant::now();
            loop {
                match Arc::try_unwrap(old) {
                    Ok(db) => {
                        drop(db);
                        break;
                    }
                    Err(still) if waited.elapsed() < REOPEN_PATIENCE => {
                        old = still;
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    Err(still) => {
                        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(still);
                        return Err(Error::Reopening);
                    }
                }
            }
        }
        let db = Self::open(&self.path)?;
        tables::create_all(&db)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(db));
        Ok(())
    }
}

/// Free bytes on the file system holding `dir`, if it can be told.
fn free_bytes(dir: &Path) -> Option<u64> {
    let vfs = rustix::fs::statvfs(dir).ok()?;
    Some(vfs.f_bavail.saturating_mul(vfs.f_frsize))
}

struct Inner {
    db: Db,
    /// Reports kept in the log's segments.
    bodies: Arc<bodies::Bodies>,
    /// Where the store lives, for the free-space floor.
    dir: PathBuf,
    /// New data is refused while less than this is free.
    min_free_bytes: u64,
    ops: mpsc::Sender<Box<dyn Job>>,
    /// What commits need from one to the next; held by whoever commits.
    core: Mutex<writer::Core>,
    /// The writer thread, while it waits to make a larger commit.
    gathering: writer::Gathering,
    /// Writes the store's caller last said it has under way (see
    /// [`Store::under_way`]).
    under_way: std::sync::atomic::AtomicUsize,
    /// Writes handed to the store and not answered yet.
    pending: writer::Load,
    queue_version: watch::Sender<u64>,
    inbox_version: watch::Sender<u64>,
    down_version: watch::Sender<u64>,
    answers_version: watch::Sender<u64>,
    held_version: watch::Sender<u64>,
    history_version: watch::Sender<u64>,
    notices_version: watch::Sender<u64>,
    closed: watch::Receiver<bool>,
    /// Set by commits made durable by the log: the database file may have
    /// pages not yet on disk, which the flusher writes out ahead of the
    /// next full commit (so that commit does not stall the writer). Only
    /// the pages redb's write buffer (half its cache) could not hold reach
    /// the file before a full commit: the rest that commit writes itself.
    unflushed: std::sync::atomic::AtomicBool,
    /// Waiters for a change to one item, woken after the commit.
    waiters: Mutex<HashMap<String, Vec<oneshot::Sender<()>>>>,
    /// Where commits are counted, once the node has metrics.
    metrics: std::sync::OnceLock<Arc<crate::metrics::Metrics>>,
    /// The writer thread's priority, raised while pressing writes wait.
    priority: Arc<priority::Priority>,
    /// [`Store`] handles open (see [`Handle`]).
    handles: std::sync::atomic::AtomicUsize,
}

impl Inner {
    /// Tells watchers what a committed batch changed.
    fn wake(&self, effects: Effects) {
        if effects.queued {
            self.queue_version.send_modify(|v| *v += 1);
        }
        if effects.inboxed {
            self.inbox_version.send_modify(|v| *v += 1);
        }
        if effects.down {
            self.down_version.send_modify(|v| *v += 1);
        }
        if effects.answers {
            self.answers_version.send_modify(|v| *v += 1);
        }
        if effects.held_up {
            self.held_version.send_modify(|v| *v += 1);
        }
        if effects.notices {
            self.notices_version.send_modify(|v| *v += 1);
        }
        if effects.history {
            self.history_version.send_modify(|v| *v += 1);
        }
        let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        for id in effects.changed {
            for w in waiters.remove(&id).unwrap_or_default() {
                let _ = w.send(());
            }
        }
    }
}

/// A counted reference to the store, as [`Store`] holds it: the store's
/// own threads hold theirs uncounted, for a moment, so that
/// [`Store::close`] can tell the last handle by this count.
struct Handle(Arc<Inner>);

impl Handle {
    fn new(inner: Arc<Inner>) -> Self {
        inner
            .handles
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Self(inner)
    }
}

impl Clone for Handle {
    fn clone(&self) -> Self {
        Self::new(self.0.clone())
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.0
            .handles
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl std::ops::Deref for Handle {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// One write counted in [`Inner::pending`] and not handed on: counted down
/// when dropped.
struct Counted<'a>(&'a writer::Load);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.done(1);
    }
}

/// A handle on the custody store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Handle,
    /// Writes made through this handle are the only ones their caller has
    /// under way (see [`Store::alone`]).
    alone: bool,
    /// Writes made through this handle are pressing (see
    /// [`Store::pressing`]).
    pressing: bool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Inner {
    /// Whether less than the free-space floor is free where the store is
    /// (never, with no floor, or where free space cannot be told): new
    /// data is refused then.
    fn below_floor(&self) -> bool {
        self.min_free_bytes != 0
            && free_bytes(&self.dir).is_some_and(|free| free < self.min_free_bytes)
    }
}

impl Store {
    /// Opens (or creates) the store at `path`, stamping writes by the
    /// system clock, and starts its writer thread.
    pub fn open(path: &Path) -> Result<Self, Error> {
        Self::open_with_clock(path, Clock::System)
    }

    /// Like [`Store::open`], stamping writes (commit times, overdue times)
    /// by `clock`.
    pub fn open_with_clock(path: &Path, clock: Clock) -> Result<Self, Error> {
        Self::open_with(path, clock, Options::default())
    }

    /// Like [`Store::open_with_clock`], with `options`.
    pub fn open_with(path: &Path, clock: Clock, options: Options) -> Result<Self, Error> {
        let Options {
            min_free_bytes,
            log_segment_bytes,
        } = options;
        if let Some(parent) = path.parent() {
            create_data_dir(parent).map_err(|e| Error::Dir {
                path: parent.to_path_buf(),
                source: Arc::new(e),
            })?;
        }
        let db = Db::open(path)?;
        tables::create_all(&db)?;
        let wal = writer::replay_log(&db, path, log_segment_bytes)?;
        txn::build_facts(&db)?;
        let chain = read::audit_chain(&db)?;
        let db = Db {
            path: path.to_path_buf(),
            current: std::sync::RwLock::new(Some(Arc::new(db))),
        };
        let (ops, rx) = mpsc::channel(WRITE_QUEUE);
        let (closed_tx, closed) = watch::channel(false);
        let inner = Arc::new(Inner {
            db,
            bodies: Arc::new(bodies::Bodies::new(path)),
            dir: path
                .parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
            min_free_bytes,
            ops,
            core: Mutex::new(writer::Core {
                wal,
                chain,
                clock,
                #[cfg(test)]
                joined: 0,
            }),
            gathering: writer::Gathering::default(),
            under_way: std::sync::atomic::AtomicUsize::new(0),
            pending: writer::Load::default(),
            queue_version: watch::channel(0).0,
            inbox_version: watch::channel(0).0,
            down_version: watch::channel(0).0,
            answers_version: watch::channel(0).0,
            held_version: watch::channel(0).0,
            history_version: watch::channel(0).0,
            notices_version: watch::channel(0).0,
            closed,
            unflushed: std::sync::atomic::AtomicBool::new(false),
            waiters: Mutex::default(),
            metrics: std::sync::OnceLock::new(),
            priority: Arc::default(),
            handles: std::sync::atomic::AtomicUsize::new(0),
        });
        // Segments left by a crash between a commit and their deletion.
        let segment = inner
            .core
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .wal
            .segment();
        writer::drop_unused_segments(&inner, segment);
        flusher(path, Arc::downgrade(&inner))?;
        let writer = Arc::downgrade(&inner);
        let priority = inner.priority.clone();
        // A clock that follows tokio's timer can be read only in the
        // runtime's context, so the writer thread enters it.
        let runtime = matches!(clock, Clock::Tokio { .. })
            .then(tokio::runtime::Handle::try_current)
            .and_then(Result::ok);
        std::thread::Builder::new()
            .name("zhibao-store-writer".into())
            .spawn(move || {
                let _context = runtime.as_ref().map(tokio::runtime::Handle::enter);
                // Dropped last, after the writes still queued. Not taken
                // through `writer`, which would keep the store open while
                // this thread starts.
                let _running = priority.writer_started();
                writer::run(rx, &writer);
                let _ = closed_tx.send(true);
            })
            .map_err(|e| Error::Thread(Arc::new(e)))?;
        Ok(Self {
            inner: Handle::new(inner),
            alone: false,
            pressing: false,
        })
    }

    /// The store's files: the database, then its log's segments (which
    /// hold the reports), in order.
    pub fn files(&self) -> Vec<PathBuf> {
        let db = &self.inner.db.path;
        let segments = bodies::segments_on_disk(db).unwrap_or_default();
        std::iter::once(db.clone())
            .chain(segments.into_iter().map(|n| bodies::segment_path(db, n)))
            .collect()
    }

    /// A flag that turns `true` once the last handle is gone and the
    /// database file is closed, so the same file can be opened again.
    pub fn closed(&self) -> watch::Receiver<bool> {
        self.inner.closed.clone()
    }

    /// Drops this handle and, if it was the last, waits until the writer
    /// has closed the database file (after the store's own threads have
    /// let go of it, which they hold only for a moment).
    pub async fn close(self) {
        let mut closed = self.closed();
        let last = self
            .inner
            .handles
            .load(std::sync::atomic::Ordering::Acquire)
            == 1;
        drop(self);
        if last {
            let _ = closed.wait_for(|c| *c).await;
        }
    }

    /// This handle, for a caller whose next write is the only one it has
    /// under way (one request in its own task, say, not one of many futures
    /// polled together). Such a write may be committed on the caller's own
    /// thread while the store is quiet, rather than handed to the writer
    /// thread and back (see `writer::commit_alone`); the caller's task does
    /// nothing else meanwhile, which is why it must have nothing else to do.
    pub fn alone(&self) -> Self {
        Self {
            alone: true,
            ..self.clone()
        }
    }

    /// Tells the store how many writes its caller has under way now (items
    /// received and not yet answered, say). With many, the writer waits a
    /// little for more of them before a commit, so that they share it (see
    /// `writer::Queued::gather`); urgent writes never wait for that.
    pub fn under_way(&self, n: usize) {
        self.inner
            .under_way
            .store(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether new items would be taken now: at least the floor of free
    /// space is free (or no floor is set). The writer asks again for each
    /// batch; this is for a caller about to do something on the strength
    /// of an item being stored (send it up before its commit ends, say).
    pub fn has_room(&self) -> bool {
        !self.inner.below_floor()
    }

    /// A handle whose writes are pressing: an urgent item waits on each
    /// (its receipt, say), so while one is queued or being committed the
    /// writer thread runs at a higher priority (see `priority`). Writes of
    /// urgent items are pressing through any handle.
    pub fn pressing(&self) -> Self {
        Self {
            pressing: true,
            ..self.clone()
        }
    }

    /// Hands `write` to the writer; answers after its commit.
    async fn write<W: Write>(&self, write: W) -> Result<W::Out, Error> {
        let (reply, rx) = oneshot::channel();
        let job = Box::new(Pending {
            write,
            out: None,
            reply,
            pressed: None,
        });
        let pressing = self.pressing || writer::urgent_item(job.as_ref());
        let calm = self.inner.pending.arrive() && self.alone;
        // Counted until the writer thread has the write (it then counts it
        // down once answered), or if this caller stops waiting before.
        let counted = Counted(&self.inner.pending);
        if let Some(mut job) = writer::commit_alone(&self.inner, job, calm) {
            if pressing {
                job.hold(self.inner.priority.press());
            }
            self.inner.ops.send(job).await.map_err(|_| Error::Closed)?;
            if pressing {
                self.inner.gathering.wake();
            }
        }
        std::mem::forget(counted);
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Watches the queue: the value changes whenever items are added.
    pub fn queue_watch(&self) -> watch::Receiver<u64> {
        self.inner.queue_version.subscribe()
    }

    /// Watches the inbox: the value changes whenever items arrive.
    pub fn inbox_watch(&self) -> watch::Receiver<u64> {
        self.inner.inbox_version.subscribe()
    }

    /// Watches the delivery receipts waiting to go down: changes when one is
    /// added or acknowledged.
    pub fn down_watch(&self) -> watch::Receiver<u64> {
        self.inner.down_version.subscribe()
    }

    /// Watches the answers awaited from origins: changes when an answer
    /// deadline is set.
    pub fn answers_watch(&self) -> watch::Receiver<u64> {
        self.inner.answers_version.subscribe()
    }

    /// Watches the history: changes when a decision or held notice is kept.
    pub fn history_watch(&self) -> watch::Receiver<u64> {
        self.inner.history_version.subscribe()
    }

    /// Watches solicitations and bulletins: changes when a version is kept
    /// (and when a child acknowledges one).
    pub fn notices_watch(&self) -> watch::Receiver<u64> {
        self.inner.notices_version.subscribe()
    }

    /// Changes when held notices to send up are added or acknowledged.
    pub fn held_watch(&self) -> watch::Receiver<u64> {
        self.inner.held_version.subscribe()
    }

    /// A receiver that completes at the next committed change to item `id`.
    /// Register before reading the item, so no change is missed in between.
    pub fn changed(&self, id: &str) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let mut waiters = self.inner.waiters.lock().unwrap_or_else(|e| e.into_inner());
        if waiters.len() >= 10_000 {
            // Callers that gave up leave closed senders behind; sweep them.
            waiters.retain(|_, list| {
                list.retain(|w| !w.is_closed());
                !list.is_empty()
            });
        }
        let list = waiters.entry(id.to_string()).or_default();
        // Drop waiters whose callers went away, so a polled id cannot pile up.
        list.retain(|w| !w.is_closed());
        list.push(tx);
        rx
    }
}

/// How often the flusher looks for pages to write out. Often, so that
/// each `fdatasync` of the database file has little to write: the log's
/// own `fdatasync`, which every receipt waits for, queues behind it on the
/// disk. Every 100 ms (until 2026-11-29) the hub's items stalled, all
/// streams at once, for 2–4 ms after each (a hub's p99 at 16 streams × 1:
/// 2.49 ms, against 1.98 every 10 ms, lower in 4 pairs of 4; see "The
/// database file flushed in small steps" in docs/performance.md).
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(10);

/// Starts the thread that writes out the database file's pages behind the
/// commits the log made durable (see [`Inner::unflushed`]); it ends with
/// the store. Its `fdatasync`s promise nothing: the log and the full
/// commits keep the durability contract.
fn flusher(path: &Path, inner: std::sync::Weak<Inner>) -> Result<(), Error> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) => {
            // Durability does not depend on it: full commits only stall
            // the writer longer without it.
            tracing::warn!(path = %path.display(), error = %e, "store: database file not opened for flushing behind the log; full commits write all its pages");
            return Ok(());
        }
    };
    std::thread::Builder::new()
        .name("zhibao-store-flush".into())
        .spawn(move || {
            loop {
                std::thread::sleep(FLUSH_EVERY);
                let Some(inner) = inner.upgrade() else {
                    return;
                };
                if inner
                    .unflushed
                    .swap(false, std::sync::atomic::Ordering::Relaxed)
                {
                    drop(inner);
                    let _ = file.sync_data();
                }
            }
        })
        .map_err(|e| Error::Thread(Arc::new(e)))?;
    Ok(())
}

fn decode(bytes: &[u8]) -> Result<ItemRecord, Error> {
    prost::Message::decode(bytes).map_err(Error::Corrupt)
}

fn encode(record: &ItemRecord) -> Vec<u8> {
    prost::Message::encode_to_vec(record)
}

#[cfg(test)]
mod tests;

/// Creates `dir` and its missing parents for a node's data (the store, its
/// log, the archive, the operator socket): mode 0750, so that reports are
/// never readable by other users whatever the umask is (the group may
/// enter: the operator socket's access is its group). A directory that
/// exists is left as it is.
pub fn create_data_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir)
}
