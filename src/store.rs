//! The custody store: every accepted item, on disk before anyone is told so.
//!
//! # The durability contract
//! A write is answered only after the redb transaction holding it has
//! committed with `Durability::Immediate` (fsync). One writer thread owns all
//! writes and commits whatever has queued up since its last commit in one
//! transaction (group commit), then answers every waiter: the promise "on
//! disk before acknowledged" holds per item at the cost of one fsync per
//! batch. Signing and verifying happen before a write is submitted, never
//! inside the commit.
//!
//! # Tables
//! - `items`: item id → [`ItemRecord`] (the signed bytes and their state);
//! - `queue`: (lane, deadline ms, sequence) → id, the items waiting for a
//!   receipt from upstream; iterating it in key order *is* the schedule:
//!   emergency lane first, earliest deadline first inside a lane;
//! - `inbox`: (lane, sequence) → id, what reached this node as a hub; each
//!   lane numbers its items 1, 2, 3… so a consumer's cursor is one number
//!   per lane;
//! - `meta`: counters.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::envelope::now_ms;

const ITEMS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("items");
const QUEUE: TableDefinition<'_, (u8, i64, u64), &str> = TableDefinition::new("queue");
const INBOX: TableDefinition<'_, (u8, u64), &str> = TableDefinition::new("inbox");
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");

/// Most writes folded into one commit.
const MAX_BATCH: usize = 512;

/// The lifecycle of an item in this store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum RecordState {
    /// Waiting for a receipt from upstream.
    Queued = 1,
    /// Upstream has signed a receipt for it.
    Receipted = 2,
    /// Upstream refused it for a reason a retry cannot fix.
    Refused = 3,
    /// Stored here as its final destination (a hub's inbox).
    Delivered = 4,
}

impl RecordState {
    fn from_i32(v: i32) -> Option<Self> {
        [
            Self::Queued,
            Self::Receipted,
            Self::Refused,
            Self::Delivered,
        ]
        .into_iter()
        .find(|s| *s as i32 == v)
    }
}

/// One stored item. Encoded with protobuf so fields can be added later.
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
    /// When the upstream receipt was stored, Unix ms.
    #[prost(int64, tag = "7")]
    pub receipted_ms: i64,
    /// The upstream's encoded `SignedReceipt`, once it came.
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
    /// Who handed the item to us: `operator` or a child's node id.
    #[prost(string, tag = "12")]
    pub from: String,
}

impl ItemRecord {
    /// The record's state, if it is one this version knows.
    pub fn state(&self) -> Option<RecordState> {
        RecordState::from_i32(self.state)
    }
}

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
    Db(String),
}

impl From<redb::Error> for Error {
    fn from(e: redb::Error) -> Self {
        if let redb::Error::Io(io) = &e
            && io.kind() == std::io::ErrorKind::StorageFull
        {
            return Self::Full;
        }
        Self::Db(e.to_string())
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

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        match e {
            Error::Full => Self::resource_exhausted(e.to_string()),
            Error::Closed => Self::unavailable(e.to_string()),
            Error::Db(_) => Self::internal(e.to_string()),
        }
    }
}

/// Where a new item goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// Into the forwarding queue (this node has an upstream).
    Queue,
    /// Into the inbox (this node is the hub).
    Inbox,
}

/// What became of a [`Store::put`].
#[derive(Debug, Clone)]
pub enum PutOutcome {
    /// Stored now; the record carries the commit time and sequence.
    Stored(ItemRecord),
    /// Already stored with the same bytes; the original record.
    Duplicate(ItemRecord),
    /// Already stored with *different* bytes under the same id.
    Conflict(ItemRecord),
}

/// A change worth telling watchers about.
#[derive(Debug, Clone)]
pub struct StoreEvent {
    /// The item concerned.
    pub id: String,
    /// Its new state.
    pub state: RecordState,
}

enum Op {
    Put {
        id: String,
        record: ItemRecord,
        dest: Destination,
        reply: oneshot::Sender<Result<PutOutcome, Error>>,
    },
    Receipt {
        id: String,
        receipt: Vec<u8>,
        reply: oneshot::Sender<Result<bool, Error>>,
    },
    Refuse {
        id: String,
        why: String,
        reply: oneshot::Sender<Result<bool, Error>>,
    },
}

struct Inner {
    db: Arc<Database>,
    ops: mpsc::Sender<Op>,
    queue_version: watch::Sender<u64>,
    inbox_version: watch::Sender<u64>,
    events: broadcast::Sender<StoreEvent>,
}

/// A handle on the custody store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the store at `path` and starts its writer thread.
    pub fn open(path: &Path) -> Result<Self, Error> {
        Self::open_watched(path).map(|(store, _)| store)
    }

    /// Like [`Store::open`], also returning a flag that turns `true` once the
    /// last handle is gone and the database file is closed.
    pub fn open_watched(path: &Path) -> Result<(Self, watch::Receiver<bool>), Error> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::Db(format!("{}: {e}", parent.display())))?;
        }
        let db = Arc::new(Database::create(path)?);
        {
            let txn = db.begin_write()?;
            txn.open_table(ITEMS)?;
            txn.open_table(QUEUE)?;
            txn.open_table(INBOX)?;
            txn.open_table(META)?;
            txn.commit()?;
        }
        let (ops, rx) = mpsc::channel(4096);
        let (queue_version, _) = watch::channel(0);
        let (inbox_version, _) = watch::channel(0);
        let (events, _) = broadcast::channel(4096);
        let inner = Arc::new(Inner {
            db,
            ops,
            queue_version,
            inbox_version,
            events,
        });
        let writer = Arc::downgrade(&inner);
        let db = inner.db.clone();
        let (closed_tx, closed_rx) = watch::channel(false);
        std::thread::Builder::new()
            .name("zhibao-store-writer".into())
            .spawn(move || {
                writer_loop(&db, rx, &writer);
                drop(db);
                let _ = closed_tx.send(true);
            })
            .map_err(|e| Error::Db(format!("cannot start writer thread: {e}")))?;
        Ok((Self { inner }, closed_rx))
    }

    async fn submit<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, Error>>) -> Op,
    ) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .ops
            .send(make(tx))
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Stores a new item durably, or reports that its id is already taken.
    ///
    /// `record.stored_ms` and `record.seq` are set by the store.
    pub async fn put(
        &self,
        id: String,
        record: ItemRecord,
        dest: Destination,
    ) -> Result<PutOutcome, Error> {
        self.submit(|reply| Op::Put {
            id,
            record,
            dest,
            reply,
        })
        .await
    }

    /// Records the upstream's receipt for a queued item and takes it off the
    /// queue. Returns `false` if the item is unknown or not queued.
    pub async fn record_receipt(&self, id: String, receipt: Vec<u8>) -> Result<bool, Error> {
        self.submit(|reply| Op::Receipt { id, receipt, reply })
            .await
    }

    /// Marks a queued item as refused by upstream and takes it off the queue.
    pub async fn record_refusal(&self, id: String, why: String) -> Result<bool, Error> {
        self.submit(|reply| Op::Refuse { id, why, reply }).await
    }

    /// Watches the queue: the value changes whenever items are added.
    pub fn queue_watch(&self) -> watch::Receiver<u64> {
        self.inner.queue_version.subscribe()
    }

    /// Watches the inbox: the value changes whenever items arrive.
    pub fn inbox_watch(&self) -> watch::Receiver<u64> {
        self.inner.inbox_version.subscribe()
    }

    /// Subscribes to item state changes.
    pub fn events(&self) -> broadcast::Receiver<StoreEvent> {
        self.inner.events.subscribe()
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let db = self.inner.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| Error::Db(format!("read task failed: {e}")))?
    }

    /// The record of `id`, if stored.
    pub async fn get(&self, id: String) -> Result<Option<ItemRecord>, Error> {
        self.read(move |db| {
            let txn = db.begin_read()?;
            let items = txn.open_table(ITEMS)?;
            Ok(match items.get(id.as_str())? {
                Some(v) => Some(decode(v.value())?),
                None => None,
            })
        })
        .await
    }

    /// The next `limit` queued items in schedule order, skipping `skip`
    /// (those already in flight).
    pub async fn next_queued(
        &self,
        limit: usize,
        skip: HashSet<String>,
    ) -> Result<Vec<(String, ItemRecord)>, Error> {
        self.read(move |db| {
            let txn = db.begin_read()?;
            let queue = txn.open_table(QUEUE)?;
            let items = txn.open_table(ITEMS)?;
            let mut out = Vec::with_capacity(limit);
            for entry in queue.iter()? {
                if out.len() >= limit {
                    break;
                }
                let (_, id) = entry?;
                let id = id.value();
                if skip.contains(id) {
                    continue;
                }
                if let Some(v) = items.get(id)? {
                    out.push((id.to_string(), decode(v.value())?));
                }
            }
            Ok(out)
        })
        .await
    }

    /// Number of items waiting in each lane of the queue.
    pub async fn queued_counts(&self) -> Result<[u64; 3], Error> {
        self.read(|db| {
            let txn = db.begin_read()?;
            let queue = txn.open_table(QUEUE)?;
            let mut counts = [0u64; 3];
            for (lane, count) in counts.iter_mut().enumerate() {
                let lane = u8::try_from(lane).unwrap_or(u8::MAX);
                *count = queue
                    .range((lane, i64::MIN, 0)..=(lane, i64::MAX, u64::MAX))?
                    .count() as u64;
            }
            Ok(counts)
        })
        .await
    }

    /// Up to `limit` inbox items after `cursor` (one position per lane),
    /// most urgent lane first. Returns (lane, sequence, id, record).
    pub async fn inbox_after(
        &self,
        cursor: [u64; 3],
        limit: usize,
    ) -> Result<Vec<(u8, u64, String, ItemRecord)>, Error> {
        self.read(move |db| {
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
                        out.push((lane, seq, id, decode(v.value())?));
                    }
                }
            }
            Ok(out)
        })
        .await
    }
}

fn decode(bytes: &[u8]) -> Result<ItemRecord, Error> {
    prost::Message::decode(bytes).map_err(|e| Error::Db(format!("corrupt item record: {e}")))
}

fn encode(record: &ItemRecord) -> Vec<u8> {
    prost::Message::encode_to_vec(record)
}

/// The reply channel of one op, kept apart so every waiter of a batch is
/// answered whatever the commit does.
enum Reply {
    Put(oneshot::Sender<Result<PutOutcome, Error>>),
    Bool(oneshot::Sender<Result<bool, Error>>),
}

/// What one op did inside a committed batch.
enum Outcome {
    Put(PutOutcome),
    Bool(bool),
}

/// One write without its reply channel.
enum Write {
    Put {
        id: String,
        record: ItemRecord,
        dest: Destination,
    },
    Receipt {
        id: String,
        receipt: Vec<u8>,
    },
    Refuse {
        id: String,
        why: String,
    },
}

fn split(op: Op) -> (Write, Reply) {
    match op {
        Op::Put {
            id,
            record,
            dest,
            reply,
        } => (Write::Put { id, record, dest }, Reply::Put(reply)),
        Op::Receipt { id, receipt, reply } => (Write::Receipt { id, receipt }, Reply::Bool(reply)),
        Op::Refuse { id, why, reply } => (Write::Refuse { id, why }, Reply::Bool(reply)),
    }
}

#[derive(Default)]
struct Effects {
    events: Vec<StoreEvent>,
    queued: bool,
    inboxed: bool,
}

fn writer_loop(db: &Database, mut rx: mpsc::Receiver<Op>, inner: &std::sync::Weak<Inner>) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let (writes, replies): (Vec<Write>, Vec<Reply>) = batch.into_iter().map(split).unzip();
        let mut effects = Effects::default();
        match apply(db, &writes, &mut effects) {
            Ok(outcomes) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    match (reply, outcome) {
                        (Reply::Put(tx), Outcome::Put(o)) => drop(tx.send(Ok(o))),
                        (Reply::Bool(tx), Outcome::Bool(b)) => drop(tx.send(Ok(b))),
                        // `apply` answers each write with its own kind.
                        _ => unreachable!("write and outcome kinds always match"),
                    }
                }
                if let Some(inner) = inner.upgrade() {
                    if effects.queued {
                        inner.queue_version.send_modify(|v| *v += 1);
                    }
                    if effects.inboxed {
                        inner.inbox_version.send_modify(|v| *v += 1);
                    }
                    for e in effects.events {
                        let _ = inner.events.send(e);
                    }
                }
            }
            Err(e) => {
                // Nothing of the batch was committed: every waiter hears so.
                tracing::error!(error = %e, writes = replies.len(), "store commit failed");
                for reply in replies {
                    match reply {
                        Reply::Put(tx) => drop(tx.send(Err(e.clone()))),
                        Reply::Bool(tx) => drop(tx.send(Err(e.clone()))),
                    }
                }
            }
        }
    }
}

fn apply(db: &Database, writes: &[Write], fx: &mut Effects) -> Result<Vec<Outcome>, Error> {
    let txn = db.begin_write()?;
    let mut outcomes = Vec::with_capacity(writes.len());
    {
        let mut items = txn.open_table(ITEMS)?;
        let mut queue = txn.open_table(QUEUE)?;
        let mut inbox = txn.open_table(INBOX)?;
        let mut meta = txn.open_table(META)?;
        let now = now_ms();
        for w in writes {
            let outcome = match w {
                Write::Put { id, record, dest } => {
                    let existing = items
                        .get(id.as_str())?
                        .map(|v| decode(v.value()))
                        .transpose()?;
                    Outcome::Put(match existing {
                        Some(old) if old.sha256 == record.sha256 => PutOutcome::Duplicate(old),
                        Some(old) => PutOutcome::Conflict(old),
                        None => {
                            let mut rec = record.clone();
                            rec.stored_ms = now;
                            let lane = u8::try_from(rec.lane).unwrap_or(2).min(2);
                            match dest {
                                Destination::Queue => {
                                    rec.seq = next(&mut meta, "queue_seq")?;
                                    rec.state = RecordState::Queued as i32;
                                    queue.insert((lane, rec.deadline_ms, rec.seq), id.as_str())?;
                                    fx.queued = true;
                                }
                                Destination::Inbox => {
                                    let key = ["inbox_seq_0", "inbox_seq_1", "inbox_seq_2"]
                                        [usize::from(lane)];
                                    rec.seq = next(&mut meta, key)?;
                                    rec.state = RecordState::Delivered as i32;
                                    inbox.insert((lane, rec.seq), id.as_str())?;
                                    fx.inboxed = true;
                                }
                            }
                            items.insert(id.as_str(), encode(&rec).as_slice())?;
                            fx.events.push(StoreEvent {
                                id: id.clone(),
                                state: rec.state().unwrap_or(RecordState::Queued),
                            });
                            PutOutcome::Stored(rec)
                        }
                    })
                }
                Write::Receipt { id, receipt } => {
                    Outcome::Bool(settle(&mut items, &mut queue, id, fx, |rec| {
                        rec.state = RecordState::Receipted as i32;
                        rec.receipt.clone_from(receipt);
                        rec.receipted_ms = now;
                    })?)
                }
                Write::Refuse { id, why } => {
                    Outcome::Bool(settle(&mut items, &mut queue, id, fx, |rec| {
                        rec.state = RecordState::Refused as i32;
                        rec.refusal.clone_from(why);
                    })?)
                }
            };
            outcomes.push(outcome);
        }
    }
    txn.commit()?;
    Ok(outcomes)
}

fn next(meta: &mut redb::Table<'_, &str, u64>, key: &str) -> Result<u64, Error> {
    let n = meta.get(key)?.map_or(0, |v| v.value()) + 1;
    meta.insert(key, n)?;
    Ok(n)
}

/// Takes a queued item off the queue and updates its record with `f`.
fn settle(
    items: &mut redb::Table<'_, &str, &[u8]>,
    queue: &mut redb::Table<'_, (u8, i64, u64), &str>,
    id: &str,
    fx: &mut Effects,
    f: impl FnOnce(&mut ItemRecord),
) -> Result<bool, Error> {
    let Some(mut rec) = items.get(id)?.map(|v| decode(v.value())).transpose()? else {
        return Ok(false);
    };
    if rec.state() != Some(RecordState::Queued) {
        return Ok(false);
    }
    let lane = u8::try_from(rec.lane).unwrap_or(2).min(2);
    queue.remove((lane, rec.deadline_ms, rec.seq))?;
    f(&mut rec);
    items.insert(id, encode(&rec).as_slice())?;
    fx.events.push(StoreEvent {
        id: id.to_string(),
        state: rec.state().unwrap_or(RecordState::Queued),
    });
    Ok(true)
}
