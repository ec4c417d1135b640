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
//! - `chunks`: (id, attachment, index) → bytes, attachments in chunks, as
//!   submitted here or received so far;
//! - `meta`: counters.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{mpsc, oneshot, watch};

use crate::envelope::now_ms;

const ITEMS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("items");
const QUEUE: TableDefinition<'_, (&str, u8, i64, u64), &str> = TableDefinition::new("queue");
const DEADLINES: TableDefinition<'_, (i64, u64), &str> = TableDefinition::new("deadlines");
const OVERDUE: TableDefinition<'_, (i64, u64), &str> = TableDefinition::new("overdue");
const INBOX: TableDefinition<'_, (u8, u64), &str> = TableDefinition::new("inbox");
const DOWN: TableDefinition<'_, (&str, &str), i64> = TableDefinition::new("down");
const CHUNKS: TableDefinition<'_, (&str, u32, u32), &[u8]> = TableDefinition::new("chunks");
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");

/// redb's page cache.
const CACHE_BYTES: usize = 32 << 20;

/// Most writes folded into one commit.
const MAX_BATCH: usize = 512;
/// Most bytes of chunks folded into one commit.
const MAX_BATCH_BYTES: usize = 4 << 20;

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
}

/// Who handed an item over when it was submitted on this node.
pub const FROM_OPERATOR: &str = "operator";

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Into the forwarding queue of these routes (this node has upstreams).
    Queue(Vec<String>),
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

/// What an escalation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Escalation {
    /// Routes the item was newly queued on.
    pub added: Vec<String>,
    /// Whether this call marked the item overdue.
    pub newly_overdue: bool,
}

/// One write, as the writer thread applies it.
// Short-lived messages on a channel; boxing the record would cost an
// allocation per write for no gain.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Write {
    Put {
        id: String,
        record: ItemRecord,
        dest: Destination,
    },
    Receipt {
        id: String,
        route: String,
        receipt: Vec<u8>,
        delivery: bool,
    },
    Delivery {
        id: String,
        receipt: Vec<u8>,
    },
    AckDown {
        child: String,
        ids: Vec<String>,
    },
    Chunks {
        id: String,
        attachment: u32,
        first: u32,
        chunks: Vec<Vec<u8>>,
    },
    DropChunks {
        id: String,
    },
    Refuse {
        id: String,
        route: String,
        why: String,
    },
    Escalate {
        id: String,
        routes: Vec<String>,
        overdue: bool,
    },
}

impl Write {
    /// Roughly how many bytes the write adds.
    fn bytes(&self) -> usize {
        match self {
            Self::Put { record, .. } => record.signed.len(),
            Self::Chunks { chunks, .. } => chunks.iter().map(Vec::len).sum(),
            _ => 256,
        }
    }
}

/// What one write did, answered after the commit.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Outcome {
    Put(PutOutcome),
    Receipt(ReceiptOutcome),
    Delivery(bool),
    AckDown,
    Chunks,
    Refuse(bool),
    Escalate(Escalation),
}

type Reply = oneshot::Sender<Result<Outcome, Error>>;

struct Inner {
    db: Arc<Database>,
    ops: mpsc::Sender<(Write, Reply)>,
    queue_version: watch::Sender<u64>,
    inbox_version: watch::Sender<u64>,
    down_version: watch::Sender<u64>,
    /// Waiters for a change to one item, woken after the commit.
    waiters: std::sync::Mutex<std::collections::HashMap<String, Vec<oneshot::Sender<()>>>>,
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
        // A bounded page cache: the queue lives on disk, and a node with a
        // million items waiting must not hold them all in memory.
        let db = Arc::new(
            Database::builder()
                .set_cache_size(CACHE_BYTES)
                .create(path)?,
        );
        {
            let txn = db.begin_write()?;
            txn.open_table(ITEMS)?;
            txn.open_table(QUEUE)?;
            txn.open_table(DEADLINES)?;
            txn.open_table(OVERDUE)?;
            txn.open_table(INBOX)?;
            txn.open_table(DOWN)?;
            txn.open_table(CHUNKS)?;
            txn.open_table(META)?;
            txn.commit()?;
        }
        let (ops, rx) = mpsc::channel(4096);
        let (queue_version, _) = watch::channel(0);
        let (inbox_version, _) = watch::channel(0);
        let (down_version, _) = watch::channel(0);
        let inner = Arc::new(Inner {
            db,
            ops,
            queue_version,
            inbox_version,
            down_version,
            waiters: std::sync::Mutex::default(),
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

    async fn submit(&self, write: Write) -> Result<Outcome, Error> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .ops
            .send((write, tx))
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
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
        match self.submit(Write::Put { id, record, dest }).await? {
            Outcome::Put(o) => Ok(o),
            other => Err(Error::Db(format!("unexpected outcome {other:?}"))),
        }
    }

    /// Records `route`'s receipt for an item queued on it. The first receipt
    /// settles the item; a non-emergency item then leaves every route.
    /// A delivery receipt (from the final hub itself) is also kept as the
    /// item's delivery proof and queued to go down to the child it came from.
    pub async fn record_receipt(
        &self,
        id: String,
        route: String,
        receipt: Vec<u8>,
        delivery: bool,
    ) -> Result<ReceiptOutcome, Error> {
        match self
            .submit(Write::Receipt {
                id,
                route,
                receipt,
                delivery,
            })
            .await?
        {
            Outcome::Receipt(o) => Ok(o),
            other => Err(Error::Db(format!("unexpected outcome {other:?}"))),
        }
    }

    /// Keeps a delivery receipt that travelled down for an item this node
    /// forwarded, and queues it for the child the item came from. Returns
    /// whether the item is known here.
    pub async fn record_delivery(&self, id: String, receipt: Vec<u8>) -> Result<bool, Error> {
        match self.submit(Write::Delivery { id, receipt }).await? {
            Outcome::Delivery(b) => Ok(b),
            other => Err(Error::Db(format!("unexpected outcome {other:?}"))),
        }
    }

    /// Stores chunks `first`, `first + 1`, … of an attachment durably.
    pub async fn put_chunks(
        &self,
        id: String,
        attachment: u32,
        first: u32,
        chunks: Vec<Vec<u8>>,
    ) -> Result<(), Error> {
        self.submit(Write::Chunks {
            id,
            attachment,
            first,
            chunks,
        })
        .await
        .map(|_| ())
    }

    /// Forgets every stored chunk of an item (a transfer that did not verify).
    pub async fn drop_chunks(&self, id: String) -> Result<(), Error> {
        self.submit(Write::DropChunks { id }).await.map(|_| ())
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
        self.read(move |db| {
            let txn = db.begin_read()?;
            let chunks = txn.open_table(CHUNKS)?;
            let n = chunks
                .range((id.as_str(), attachment, 0)..=(id.as_str(), attachment, u32::MAX))?
                .count();
            Ok(u32::try_from(n).unwrap_or(u32::MAX))
        })
        .await
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
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
            let mut len = 0u64;
            for entry in
                chunks.range((id.as_str(), attachment, 0)..=(id.as_str(), attachment, u32::MAX))?
            {
                let (_, v) = entry?;
                ctx.update(v.value());
                len += v.value().len() as u64;
            }
            let mut out = [0u8; 32];
            out.copy_from_slice(ctx.finish().as_ref());
            Ok((out, len))
        })
        .await
    }

    /// Forgets delivery receipts `child` has acknowledged.
    pub async fn ack_down(&self, child: String, ids: Vec<String>) -> Result<(), Error> {
        self.submit(Write::AckDown { child, ids }).await.map(|_| ())
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

    /// Watches the delivery receipts waiting to go down: changes when one is added.
    pub fn down_watch(&self) -> watch::Receiver<u64> {
        self.inner.down_version.subscribe()
    }

    /// Takes an item off `route` after a permanent refusal; when no route is
    /// left and none receipted it, the item is marked refused.
    pub async fn record_refusal(
        &self,
        id: String,
        route: String,
        why: String,
    ) -> Result<bool, Error> {
        match self.submit(Write::Refuse { id, route, why }).await? {
            Outcome::Refuse(b) => Ok(b),
            other => Err(Error::Db(format!("unexpected outcome {other:?}"))),
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
        match self
            .submit(Write::Escalate {
                id,
                routes,
                overdue,
            })
            .await?
        {
            Outcome::Escalate(e) => Ok(e),
            other => Err(Error::Db(format!("unexpected outcome {other:?}"))),
        }
    }

    /// Watches the queue: the value changes whenever items are added.
    pub fn queue_watch(&self) -> watch::Receiver<u64> {
        self.inner.queue_version.subscribe()
    }

    /// Watches the inbox: the value changes whenever items arrive.
    pub fn inbox_watch(&self) -> watch::Receiver<u64> {
        self.inner.inbox_version.subscribe()
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

    /// The next `limit` items queued on `route` in schedule order, skipping
    /// `skip` (those already in flight).
    pub async fn next_queued(
        &self,
        route: String,
        limit: usize,
        skip: HashSet<String>,
    ) -> Result<Vec<(String, ItemRecord)>, Error> {
        self.read(move |db| {
            let txn = db.begin_read()?;
            let queue = txn.open_table(QUEUE)?;
            let items = txn.open_table(ITEMS)?;
            let mut out = Vec::with_capacity(limit);
            let range = (route.as_str(), 0u8, i64::MIN, 0u64)
                ..=(route.as_str(), u8::MAX, i64::MAX, u64::MAX);
            for entry in queue.range(range)? {
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
    pub async fn due_from(
        &self,
        from: (i64, u64),
        until_ms: i64,
        limit: usize,
    ) -> Result<Vec<(String, ItemRecord)>, Error> {
        self.read(move |db| {
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
        .await
    }

    /// The earliest deadline among unsettled items not yet overdue.
    pub async fn next_deadline(&self) -> Result<Option<i64>, Error> {
        self.read(|db| {
            let txn = db.begin_read()?;
            let deadlines = txn.open_table(DEADLINES)?;
            Ok(deadlines.first()?.map(|(k, _)| k.value().0))
        })
        .await
    }

    /// Items, newest first (or, with `overdue_only`, every item that missed
    /// its deadline, most recently overdue first), at most `limit`.
    pub async fn list(
        &self,
        overdue_only: bool,
        limit: usize,
    ) -> Result<Vec<(String, ItemRecord)>, Error> {
        self.read(move |db| {
            let txn = db.begin_read()?;
            let items = txn.open_table(ITEMS)?;
            let mut out = Vec::new();
            if overdue_only {
                let overdue = txn.open_table(OVERDUE)?;
                for entry in overdue.iter()?.rev().take(limit) {
                    let (_, id) = entry?;
                    if let Some(v) = items.get(id.value())? {
                        out.push((id.value().to_string(), decode(v.value())?));
                    }
                }
            } else {
                for entry in items.iter()?.rev().take(limit) {
                    let (id, v) = entry?;
                    out.push((id.value().to_string(), decode(v.value())?));
                }
            }
            Ok(out)
        })
        .await
    }

    /// How many items ever missed their deadline here.
    pub async fn overdue_total(&self) -> Result<u64, Error> {
        self.read(|db| {
            let txn = db.begin_read()?;
            let meta = txn.open_table(META)?;
            Ok(meta.get("overdue_total")?.map_or(0, |v| v.value()))
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

#[derive(Default)]
struct Effects {
    events: Vec<StoreEvent>,
    queued: bool,
    inboxed: bool,
    down: bool,
}

fn writer_loop(
    db: &Database,
    mut rx: mpsc::Receiver<(Write, Reply)>,
    inner: &std::sync::Weak<Inner>,
) {
    while let Some(first) = rx.blocking_recv() {
        let mut bytes = first.0.bytes();
        let mut batch = vec![first];
        // A commit of a few MiB at most, so attachments do not hold up the
        // small urgent writes queued behind them for long.
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(op) => {
                    bytes += op.0.bytes();
                    batch.push(op);
                }
                Err(_) => break,
            }
        }
        let (writes, replies): (Vec<Write>, Vec<Reply>) = batch.into_iter().unzip();
        let mut effects = Effects::default();
        let started = std::time::Instant::now();
        let result = apply(db, &writes, &mut effects);
        tracing::debug!(
            writes = writes.len(),
            commit_us = started.elapsed().as_micros() as u64,
            "store commit"
        );
        match result {
            Ok(outcomes) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
                if let Some(inner) = inner.upgrade() {
                    if effects.queued {
                        inner.queue_version.send_modify(|v| *v += 1);
                    }
                    if effects.inboxed {
                        inner.inbox_version.send_modify(|v| *v += 1);
                    }
                    if effects.down {
                        inner.down_version.send_modify(|v| *v += 1);
                    }
                    let mut waiters = inner.waiters.lock().unwrap_or_else(|e| e.into_inner());
                    for e in effects.events {
                        for w in waiters.remove(&e.id).unwrap_or_default() {
                            let _ = w.send(());
                        }
                    }
                }
            }
            Err(e) => {
                // Nothing of the batch was committed: every waiter hears so.
                tracing::error!(error = %e, writes = replies.len(), "store commit failed");
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// The tables one write transaction works on.
struct Tables<'t> {
    items: redb::Table<'t, &'static str, &'static [u8]>,
    queue: redb::Table<'t, (&'static str, u8, i64, u64), &'static str>,
    deadlines: redb::Table<'t, (i64, u64), &'static str>,
    overdue: redb::Table<'t, (i64, u64), &'static str>,
    inbox: redb::Table<'t, (u8, u64), &'static str>,
    down: redb::Table<'t, (&'static str, &'static str), i64>,
    chunks: redb::Table<'t, (&'static str, u32, u32), &'static [u8]>,
    meta: redb::Table<'t, &'static str, u64>,
}

impl Tables<'_> {
    fn record(&self, id: &str) -> Result<Option<ItemRecord>, Error> {
        self.items.get(id)?.map(|v| decode(v.value())).transpose()
    }

    fn save(&mut self, id: &str, rec: &ItemRecord, fx: &mut Effects) -> Result<(), Error> {
        self.items.insert(id, encode(rec).as_slice())?;
        fx.events.push(StoreEvent {
            id: id.to_string(),
            state: rec.state().unwrap_or(RecordState::Queued),
        });
        Ok(())
    }

    fn lane(rec: &ItemRecord) -> u8 {
        u8::try_from(rec.lane).unwrap_or(2).min(2)
    }

    fn enqueue(&mut self, id: &str, rec: &ItemRecord, route: &str) -> Result<(), Error> {
        self.queue
            .insert((route, Self::lane(rec), rec.deadline_ms, rec.seq), id)?;
        Ok(())
    }

    fn dequeue(&mut self, rec: &ItemRecord, route: &str) -> Result<(), Error> {
        self.queue
            .remove((route, Self::lane(rec), rec.deadline_ms, rec.seq))?;
        Ok(())
    }

    fn put(
        &mut self,
        id: &str,
        record: &ItemRecord,
        dest: &Destination,
        now: i64,
        fx: &mut Effects,
    ) -> Result<PutOutcome, Error> {
        Ok(match self.record(id)? {
            Some(old) if old.sha256 == record.sha256 => PutOutcome::Duplicate(old),
            Some(old) => PutOutcome::Conflict(old),
            None => {
                let mut rec = record.clone();
                rec.stored_ms = now;
                let lane = Self::lane(&rec);
                match dest {
                    Destination::Queue(routes) => {
                        rec.seq = next(&mut self.meta, "queue_seq")?;
                        rec.state = RecordState::Queued as i32;
                        rec.pending_routes.clone_from(routes);
                        for route in routes {
                            self.enqueue(id, &rec, route)?;
                        }
                        self.deadlines.insert((rec.deadline_ms, rec.seq), id)?;
                        fx.queued = true;
                    }
                    Destination::Inbox => {
                        let key = ["inbox_seq_0", "inbox_seq_1", "inbox_seq_2"][usize::from(lane)];
                        rec.seq = next(&mut self.meta, key)?;
                        rec.state = RecordState::Delivered as i32;
                        self.inbox.insert((lane, rec.seq), id)?;
                        fx.inboxed = true;
                    }
                }
                self.save(id, &rec, fx)?;
                PutOutcome::Stored(rec)
            }
        })
    }

    fn receipt(
        &mut self,
        id: &str,
        route: &str,
        receipt: &[u8],
        now: i64,
        fx: &mut Effects,
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
        let outcome = if rec.state() == Some(RecordState::Queued) {
            rec.state = RecordState::Receipted as i32;
            rec.receipt = receipt.to_vec();
            rec.receipted_ms = now;
            self.deadlines.remove((rec.deadline_ms, rec.seq))?;
            // An emergency keeps going on every route, for proof on each;
            // anything else is done once one route has it.
            if Self::lane(&rec) != 0 {
                for other in std::mem::take(&mut rec.pending_routes) {
                    self.dequeue(&rec, &other)?;
                }
            }
            ReceiptOutcome::Settled
        } else {
            ReceiptOutcome::Proof
        };
        self.save(id, &rec, fx)?;
        Ok(outcome)
    }

    fn refuse(
        &mut self,
        id: &str,
        route: &str,
        why: &str,
        fx: &mut Effects,
    ) -> Result<bool, Error> {
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
            self.deadlines.remove((rec.deadline_ms, rec.seq))?;
        }
        self.save(id, &rec, fx)?;
        Ok(true)
    }

    fn delivery(
        &mut self,
        id: &str,
        receipt: &[u8],
        now: i64,
        fx: &mut Effects,
    ) -> Result<bool, Error> {
        let Some(mut rec) = self.record(id)? else {
            return Ok(false);
        };
        if !rec.delivery.is_empty() {
            return Ok(true);
        }
        rec.delivery = receipt.to_vec();
        if !rec.from.is_empty() && rec.from != FROM_OPERATOR {
            self.down.insert((rec.from.as_str(), id), now)?;
            fx.down = true;
        }
        self.save(id, &rec, fx)?;
        Ok(true)
    }

    fn escalate(
        &mut self,
        id: &str,
        routes: &[String],
        overdue: bool,
        now: i64,
        fx: &mut Effects,
    ) -> Result<Escalation, Error> {
        let mut out = Escalation::default();
        let Some(mut rec) = self.record(id)? else {
            return Ok(out);
        };
        if rec.state() != Some(RecordState::Queued) {
            return Ok(out);
        }
        for route in routes {
            let known = rec.pending_routes.contains(route)
                || rec.route_receipts.iter().any(|r| &r.route == route);
            if !known {
                self.enqueue(id, &rec, route)?;
                rec.pending_routes.push(route.clone());
                out.added.push(route.clone());
                fx.queued = true;
            }
        }
        if !out.added.is_empty() && rec.escalated_ms == 0 {
            rec.escalated_ms = now;
        }
        if overdue && rec.overdue_ms == 0 {
            rec.overdue_ms = now;
            self.deadlines.remove((rec.deadline_ms, rec.seq))?;
            self.overdue.insert((now, rec.seq), id)?;
            next(&mut self.meta, "overdue_total")?;
            out.newly_overdue = true;
        }
        if !out.added.is_empty() || out.newly_overdue {
            self.save(id, &rec, fx)?;
        }
        Ok(out)
    }
}

fn apply(db: &Database, writes: &[Write], fx: &mut Effects) -> Result<Vec<Outcome>, Error> {
    let txn = db.begin_write()?;
    let mut outcomes = Vec::with_capacity(writes.len());
    {
        let mut t = Tables {
            items: txn.open_table(ITEMS)?,
            queue: txn.open_table(QUEUE)?,
            deadlines: txn.open_table(DEADLINES)?,
            overdue: txn.open_table(OVERDUE)?,
            inbox: txn.open_table(INBOX)?,
            down: txn.open_table(DOWN)?,
            chunks: txn.open_table(CHUNKS)?,
            meta: txn.open_table(META)?,
        };
        let now = now_ms();
        for w in writes {
            outcomes.push(match w {
                Write::Put { id, record, dest } => Outcome::Put(t.put(id, record, dest, now, fx)?),
                Write::Receipt {
                    id,
                    route,
                    receipt,
                    delivery,
                } => {
                    let outcome = t.receipt(id, route, receipt, now, fx)?;
                    if *delivery && outcome != ReceiptOutcome::NotPending {
                        t.delivery(id, receipt, now, fx)?;
                    }
                    Outcome::Receipt(outcome)
                }
                Write::Delivery { id, receipt } => {
                    Outcome::Delivery(t.delivery(id, receipt, now, fx)?)
                }
                Write::AckDown { child, ids } => {
                    for id in ids {
                        t.down.remove((child.as_str(), id.as_str()))?;
                    }
                    fx.down = true;
                    Outcome::AckDown
                }
                Write::Chunks {
                    id,
                    attachment,
                    first,
                    chunks,
                } => {
                    for (i, data) in (*first..).zip(chunks) {
                        t.chunks
                            .insert((id.as_str(), *attachment, i), data.as_slice())?;
                    }
                    Outcome::Chunks
                }
                Write::DropChunks { id } => {
                    let keys: Vec<(u32, u32)> = t
                        .chunks
                        .range((id.as_str(), 0, 0)..=(id.as_str(), u32::MAX, u32::MAX))?
                        .map(|e| e.map(|(k, _)| (k.value().1, k.value().2)))
                        .collect::<Result<_, _>>()?;
                    for (a, i) in keys {
                        t.chunks.remove((id.as_str(), a, i))?;
                    }
                    Outcome::Chunks
                }
                Write::Refuse { id, route, why } => Outcome::Refuse(t.refuse(id, route, why, fx)?),
                Write::Escalate {
                    id,
                    routes,
                    overdue,
                } => Outcome::Escalate(t.escalate(id, routes, *overdue, now, fx)?),
            });
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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(lane: u32, from: &str) -> ItemRecord {
        ItemRecord {
            signed: b"signed".to_vec(),
            lane,
            deadline_ms: now_ms() + 60_000,
            sha256: vec![7; 32],
            from: from.into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn routes_settle_on_the_first_receipt_and_emergencies_keep_going() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let routes = vec!["a".to_string(), "b".to_string()];
        store
            .put(
                "r1".into(),
                record(2, FROM_OPERATOR),
                Destination::Queue(routes.clone()),
            )
            .await
            .unwrap();
        store
            .put(
                "e1".into(),
                record(0, FROM_OPERATOR),
                Destination::Queue(routes),
            )
            .await
            .unwrap();
        assert_eq!(
            store
                .next_queued("b".into(), 10, HashSet::new())
                .await
                .unwrap()
                .len(),
            2
        );

        let first = store
            .record_receipt("r1".into(), "a".into(), b"ra".to_vec(), false)
            .await
            .unwrap();
        assert_eq!(first, ReceiptOutcome::Settled);
        let ids: Vec<String> = store
            .next_queued("b".into(), 10, HashSet::new())
            .await
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(
            ids,
            vec!["e1".to_string()],
            "routine leaves every route once settled"
        );

        assert_eq!(
            store
                .record_receipt("e1".into(), "a".into(), b"ea".to_vec(), false)
                .await
                .unwrap(),
            ReceiptOutcome::Settled
        );
        assert_eq!(
            store
                .record_receipt("e1".into(), "b".into(), b"eb".to_vec(), false)
                .await
                .unwrap(),
            ReceiptOutcome::Proof
        );
        assert_eq!(
            store
                .record_receipt("e1".into(), "b".into(), b"eb".to_vec(), false)
                .await
                .unwrap(),
            ReceiptOutcome::NotPending
        );
        let e1 = store.get("e1".into()).await.unwrap().unwrap();
        assert_eq!(e1.route_receipts.len(), 2, "every route's receipt is kept");
        assert_eq!(
            store.next_deadline().await.unwrap(),
            None,
            "nothing left to watch"
        );
    }

    #[tokio::test]
    async fn delivery_receipts_go_down_until_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        store
            .put(
                "x".into(),
                record(1, "county-a"),
                Destination::Queue(vec!["hub".into()]),
            )
            .await
            .unwrap();
        store
            .record_receipt("x".into(), "hub".into(), b"delivery".to_vec(), true)
            .await
            .unwrap();
        let down = store.down_for("county-a".into(), 10).await.unwrap();
        assert_eq!(down, vec![("x".to_string(), b"delivery".to_vec())]);
        assert!(
            store
                .down_for("county-b".into(), 10)
                .await
                .unwrap()
                .is_empty()
        );
        store
            .ack_down("county-a".into(), vec!["x".into()])
            .await
            .unwrap();
        assert!(
            store
                .down_for("county-a".into(), 10)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn escalation_marks_overdue_once_and_adds_routes_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let mut rec = record(1, FROM_OPERATOR);
        rec.deadline_ms = now_ms() - 1;
        store
            .put("late".into(), rec, Destination::Queue(vec!["a".into()]))
            .await
            .unwrap();
        assert_eq!(store.due(now_ms(), 10).await.unwrap().len(), 1);
        let e = store
            .escalate("late".into(), vec!["alt".into()], true)
            .await
            .unwrap();
        assert_eq!(
            e,
            Escalation {
                added: vec!["alt".into()],
                newly_overdue: true
            }
        );
        let again = store
            .escalate("late".into(), vec!["alt".into()], true)
            .await
            .unwrap();
        assert_eq!(again, Escalation::default());
        assert!(store.due(now_ms(), 10).await.unwrap().is_empty());
        assert_eq!(store.overdue_total().await.unwrap(), 1);
        assert_eq!(store.list(true, 10).await.unwrap().len(), 1);
    }
}
