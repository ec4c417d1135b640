//! Durable consumers of a hub's inbox, as message brokers have them: a
//! consumer subscribes under a name, acknowledges the items it has
//! processed, and the hub remembers where it stands.
//!
//! A consumer is the pair (its certificate's node id, its name), so two
//! systems cannot read each other's position, and one system may keep
//! several (64 at most, [`MAX_PER_PEER`]). What it has acknowledged is in
//! the store (`consumers`, `consumer_acks`): per lane a floor below which
//! everything is acknowledged, and the acknowledgements above it. So after
//! a reconnect or a hub restart it is sent every inbox item it has not
//! acknowledged, most urgent lane first, then new ones as they arrive.
//!
//! What one subscription sent and when is kept in memory, with the
//! subscription ([`Delivery`]): an item not acknowledged within
//! `limits.inbox_ack_wait_secs` is sent again on the same stream, and at
//! most `limits.inbox_max_unacked` items are out unacknowledged at once;
//! then nothing more is sent until acknowledgements come (back-pressure:
//! a consumer that stalls costs the hub a bounded set of keys, and an
//! emergency waits for a free slot like any item). A reconnect needs none
//! of it: everything unacknowledged is sent again anyway. How many times an
//! item was sent ([`InboxItem::deliveries`]) is counted here too, per
//! consumer across its subscriptions, until the hub stops.
//!
//! One subscription per consumer at a time: a new one under the same name
//! takes over and the older stream ends with `ABORTED`, so a consumer that
//! reconnects over a half-dead connection is served at once rather than
//! refused until keepalive notices.
//!
//! # Extending
//! Only inbox items are streamed to a consumer now. Dispositions and held
//! notices would be further sources of the same loop ([`Delivery::run`]),
//! each with its own acknowledged floor (a table keyed like
//! `consumer_acks`) and its own member in the streamed message; the
//! subscription would say which it wants (a further `SubscribeRequest`
//! field), so today's consumers see no change.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tracing::{error, info, warn};

use super::custody::Custody;
use super::error::Error;
use super::inbox::{self, ItemStream};
use crate::envelope;
use crate::proto::{ConsumerStatus, ConsumersResponse, InboxAck, InboxAckResponse, InboxItem};
use crate::store::{ConsumerOpened, ItemRecord, Store};
use crate::tls::PeerInfo;

/// Durable consumers one certificate may have.
pub(crate) const MAX_PER_PEER: usize = 64;

/// Longest consumer name, bytes.
pub(crate) const MAX_NAME_BYTES: usize = 64;

/// Item ids one acknowledgement may carry.
pub(crate) const MAX_ACK_IDS: usize = 1024;

/// Items read from the store at once: a new emergency waits at most this
/// many items behind older, lower-class ones.
const BATCH: usize = 16;

/// Inbox rows one read looks at, at most, when the consumer has
/// acknowledged far ahead of what it was sent.
const SCAN_BUDGET: usize = 4096;

/// A consumer: (certificate's node id, name).
type Key = (String, String);

/// (lane, sequence) of an inbox item.
type Pos = (u8, u64);

/// How long a consumer has to acknowledge, and how much may be out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    /// After this, an unacknowledged item is sent again.
    pub(crate) ack_wait: Duration,
    /// Items sent and not yet acknowledged, per consumer, at most.
    pub(crate) max_unacked: usize,
}

/// Checks a consumer name from the network.
pub(crate) fn check_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        // Shown cut short: the name is the caller's, of any length.
        Err(Error::BadConsumerName(name.chars().take(80).collect()))
    }
}

/// The durable consumers of one hub's inbox: the store keeps their
/// positions; this keeps which subscription serves each, now.
#[derive(Debug)]
pub(crate) struct Consumers {
    store: Store,
    custody: Arc<Custody>,
    bounds: Bounds,
    shutdown: CancellationToken,
    /// One entry per consumer subscribed since the hub started (bounded by
    /// the store's consumers: an entry is made only after it is opened).
    live: Mutex<HashMap<Key, Live>>,
    /// Numbers subscriptions, so a stream that ends after a takeover does
    /// not unregister its successor.
    next: AtomicU64,
}

/// What is known in memory of one consumer.
#[derive(Debug)]
struct Live {
    /// The open subscription, if any: its number, and how to end it.
    stream: Option<(u64, CancellationToken)>,
    /// Changes whenever acknowledgements of this consumer are stored.
    acks: watch::Sender<u64>,
    /// How many times each item was sent to it and not known to be
    /// acknowledged; at most twice `max_unacked` entries.
    deliveries: HashMap<Pos, u32>,
}

impl Consumers {
    pub(crate) fn new(
        store: Store,
        custody: Arc<Custody>,
        bounds: Bounds,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            store,
            custody,
            bounds,
            shutdown,
            live: Mutex::default(),
            next: AtomicU64::new(1),
        }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Live>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens the consumer `name` of `peer` (registering it if new) and
    /// streams it what it has not acknowledged; with `follow`, then new
    /// items. `cursor_set`: the request also carried a cursor.
    pub(crate) async fn subscribe(
        self: &Arc<Self>,
        peer: PeerInfo,
        name: String,
        cursor_set: bool,
        follow: bool,
    ) -> Result<ItemStream, Error> {
        let refuse = |e: Error| {
            warn!(peer = %peer.node_id, addr = %peer.addr, error = %e, "refused durable inbox subscription");
            e
        };
        check_name(&name).map_err(refuse)?;
        if cursor_set {
            return Err(refuse(Error::CursorWithConsumer));
        }
        let opened = self
            .store
            .open_consumer(peer.node_id.clone(), name.clone(), MAX_PER_PEER)
            .await?;
        if opened == ConsumerOpened::TooMany {
            return Err(refuse(Error::TooManyConsumers {
                peer: peer.node_id.clone(),
                limit: MAX_PER_PEER,
            }));
        }
        let key = (peer.node_id.clone(), name);
        let (number, takeover, acks) = self.attach(&key);
        info!(
            peer = %peer.node_id,
            addr = %peer.addr,
            consumer = %key.1,
            new = opened == ConsumerOpened::Created,
            "durable inbox consumer connected"
        );
        let (tx, rx) = mpsc::channel(BATCH);
        let delivery = Delivery {
            consumers: self.clone(),
            key,
            number,
            follow,
            tx,
            outstanding: BTreeMap::new(),
            scanned: [0; 3],
        };
        tokio::spawn(delivery.run(takeover, acks));
        Ok(Box::pin(ReceiverStream::new(rx)))
    }

    /// Records that the consumer `req.consumer` of `peer` has processed
    /// `req.item_ids`, durably, and tells its open subscription.
    pub(crate) async fn ack(
        &self,
        peer: &PeerInfo,
        req: InboxAck,
    ) -> Result<InboxAckResponse, Error> {
        let refuse = |e: Error| {
            warn!(peer = %peer.node_id, addr = %peer.addr, error = %e, "refused inbox acknowledgement");
            e
        };
        check_name(&req.consumer).map_err(refuse)?;
        if req.item_ids.len() > MAX_ACK_IDS {
            return Err(refuse(Error::TooManyAckIds {
                count: req.item_ids.len(),
                limit: MAX_ACK_IDS,
            }));
        }
        for id in &req.item_ids {
            envelope::check_id(id).map_err(|e| refuse(e.into()))?;
        }
        let key = (peer.node_id.clone(), req.consumer);
        let acked = self
            .store
            .ack_inbox(key.0.clone(), key.1.clone(), req.item_ids)
            .await?
            .ok_or_else(|| refuse(Error::NoConsumer(key.1.clone())))?;
        if let Some(live) = self.live().get(&key) {
            live.acks.send_modify(|v| *v = v.wrapping_add(1));
        }
        Ok(InboxAckResponse {
            pending: acked.pending,
            unknown: acked.unknown,
        })
    }

    /// The consumers of `peer`, with what each has not acknowledged.
    pub(crate) async fn list(&self, peer: &PeerInfo) -> Result<ConsumersResponse, Error> {
        let rows = self.store.consumers_of(peer.node_id.clone()).await?;
        let live = self.live();
        let consumers = rows
            .into_iter()
            .map(|(name, pending)| {
                let connected = live
                    .get(&(peer.node_id.clone(), name.clone()))
                    .is_some_and(|l| l.stream.is_some());
                ConsumerStatus {
                    name,
                    pending,
                    connected,
                }
            })
            .collect();
        Ok(ConsumersResponse { consumers })
    }

    /// Makes a new subscription the one serving `key`, ending the one
    /// before: its number, its takeover signal, and the signal of stored
    /// acknowledgements.
    fn attach(&self, key: &Key) -> (u64, CancellationToken, watch::Receiver<u64>) {
        let number = self.next.fetch_add(1, Ordering::Relaxed);
        let token = CancellationToken::new();
        let mut live = self.live();
        let entry = live.entry(key.clone()).or_insert_with(|| Live {
            stream: None,
            acks: watch::Sender::new(0),
            deliveries: HashMap::new(),
        });
        if let Some((_, older)) = entry.stream.replace((number, token.clone())) {
            older.cancel();
        }
        (number, token, entry.acks.subscribe())
    }

    /// Subscription `number` of `key` has ended.
    fn detach(&self, key: &Key, number: u64) {
        if let Some(live) = self.live().get_mut(key)
            && live.stream.as_ref().is_some_and(|(n, _)| *n == number)
        {
            live.stream = None;
        }
    }

    /// Counts one more sending of `pos` to `key`; returns the count. When
    /// the counts are full, those of items not out on this subscription
    /// (`out`) are forgotten.
    fn count_delivery(&self, key: &Key, pos: Pos, out: &BTreeMap<Pos, Sent>) -> u32 {
        let mut live = self.live();
        let Some(live) = live.get_mut(key) else {
            return 1;
        };
        let full = self.bounds.max_unacked.saturating_mul(2);
        if live.deliveries.len() >= full && !live.deliveries.contains_key(&pos) {
            live.deliveries.retain(|p, _| out.contains_key(p));
        }
        let n = live.deliveries.entry(pos).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    /// Forgets the delivery counts of items `key` has acknowledged.
    fn forget(&self, key: &Key, acked: &[Pos]) {
        if let Some(live) = self.live().get_mut(key) {
            for pos in acked {
                live.deliveries.remove(pos);
            }
        }
    }
}

/// An item sent on this subscription and not known to be acknowledged.
#[derive(Debug)]
struct Sent {
    id: String,
    /// When it is sent again unless acknowledged.
    due: Instant,
}

/// One subscription of a consumer: what it has sent, and the loop that
/// sends.
struct Delivery {
    consumers: Arc<Consumers>,
    key: Key,
    number: u64,
    follow: bool,
    tx: mpsc::Sender<Result<InboxItem, Status>>,
    /// Sent and not known to be acknowledged, in lane order.
    outstanding: BTreeMap<Pos, Sent>,
    /// Per lane, the last inbox sequence this subscription has looked at:
    /// every unacknowledged item up to it was sent (and is outstanding).
    scanned: [u64; 3],
}

/// An inbox item to send: (lane, sequence, id, record).
type Row = (u8, u64, String, ItemRecord);

/// What one turn of a subscription sends.
struct Batch {
    /// Most urgent lane first.
    rows: Vec<Row>,
    /// Fewer than the bound are out: new items may be sent.
    room: bool,
    /// Every unread item was looked at.
    exhausted: bool,
    /// The read stopped at its limit or budget: read again at once.
    more: bool,
}

/// Why a subscription stops.
enum Stop {
    /// The consumer went, the node stops, or the backlog is done.
    Quietly,
    /// Told to the consumer.
    With(Status),
}

impl Delivery {
    /// Sends until the consumer goes, another subscription takes over, or
    /// the node stops; without `follow`, until the backlog is sent.
    async fn run(mut self, takeover: CancellationToken, acks: watch::Receiver<u64>) {
        let stop = self.serve(&takeover, acks).await;
        self.consumers.detach(&self.key, self.number);
        if let Stop::With(status) = stop {
            // The consumer may be gone or not reading: never wait on it.
            let _ = self.tx.try_send(Err(status));
        }
    }

    async fn serve(
        &mut self,
        takeover: &CancellationToken,
        mut acks: watch::Receiver<u64>,
    ) -> Stop {
        let c = self.consumers.clone();
        let mut arrivals = c.store.inbox_watch();
        // Acknowledgements were stored since the last look (`changed`
        // below marks them seen, so it is remembered here).
        let mut acked = false;
        loop {
            arrivals.borrow_and_update();
            if acked || acks.has_changed().unwrap_or(false) {
                acks.borrow_and_update();
                acked = false;
                if let Err(e) = self.settle().await {
                    return self.failed(e);
                }
            }
            let batch = match self.next_batch().await {
                Ok(b) => b,
                Err(e) => return self.failed(e),
            };
            let sent_any = !batch.rows.is_empty();
            for row in batch.rows {
                if let Err(stop) = self.send(row, takeover).await {
                    return stop;
                }
            }
            if sent_any || batch.more {
                continue;
            }
            if !self.follow && batch.exhausted {
                return Stop::Quietly;
            }
            let next_due = self.outstanding.values().map(|s| s.due).min();
            tokio::select! {
                r = arrivals.changed(), if batch.room => if r.is_err() { return Stop::Quietly },
                r = acks.changed() => match r {
                    Ok(()) => acked = true,
                    Err(_) => return Stop::Quietly,
                },
                () = sleep_until(next_due) => {}
                () = takeover.cancelled() => return self.taken_over(),
                () = self.tx.closed() => return Stop::Quietly,
                () = c.shutdown.cancelled() => return Stop::Quietly,
            }
        }
    }

    /// What to send now: items out past their acknowledgement wait, and,
    /// while fewer than the bound are out, unread items not acknowledged;
    /// together, most urgent lane first.
    async fn next_batch(&mut self) -> Result<Batch, Error> {
        let c = self.consumers.clone();
        let now = Instant::now();
        let free = c
            .bounds
            .max_unacked
            .saturating_sub(self.outstanding.len())
            .min(BATCH);
        let mut batch = Batch {
            rows: self.redeliveries(now).await?,
            room: free > 0,
            exhausted: false,
            more: false,
        };
        // Read only when a slot is free: a consumer at its bound is sent
        // nothing new until it acknowledges.
        if free > 0 {
            let backlog = c
                .store
                .consumer_backlog(
                    self.key.0.clone(),
                    self.key.1.clone(),
                    self.scanned,
                    free,
                    SCAN_BUDGET,
                )
                .await?;
            self.scanned = backlog.upto;
            batch.exhausted = backlog.exhausted;
            batch.more = !backlog.exhausted;
            batch.rows.extend(backlog.items);
        }
        batch.rows.sort_by_key(|(lane, seq, _, _)| (*lane, *seq));
        Ok(batch)
    }

    /// Sends one item (again, or the first time) and marks it out until
    /// acknowledged or due again.
    async fn send(
        &mut self,
        (lane, seq, id, rec): Row,
        takeover: &CancellationToken,
    ) -> Result<(), Stop> {
        let c = self.consumers.clone();
        let Some(mut item) = inbox::item(&c.custody, &id, &rec) else {
            self.outstanding.remove(&(lane, seq));
            return Ok(());
        };
        item.deliveries = c.count_delivery(&self.key, (lane, seq), &self.outstanding);
        let due = Instant::now() + c.bounds.ack_wait;
        self.outstanding.insert((lane, seq), Sent { id, due });
        tokio::select! {
            r = self.tx.send(Ok(item)) => r.map_err(|_| Stop::Quietly),
            () = takeover.cancelled() => Err(self.taken_over()),
            () = c.shutdown.cancelled() => Err(Stop::Quietly),
        }
    }

    /// Drops what the consumer has acknowledged from what is out.
    async fn settle(&mut self) -> Result<(), Error> {
        if self.outstanding.is_empty() {
            return Ok(());
        }
        let keys = self.outstanding.keys().copied().collect();
        let acked = self
            .consumers
            .store
            .consumer_acked(self.key.0.clone(), self.key.1.clone(), keys)
            .await?;
        for pos in &acked {
            self.outstanding.remove(pos);
        }
        self.consumers.forget(&self.key, &acked);
        Ok(())
    }

    /// Up to [`BATCH`] items out past their acknowledgement wait, read
    /// again to be sent again.
    async fn redeliveries(&mut self, now: Instant) -> Result<Vec<Row>, Error> {
        let due: Vec<(Pos, String)> = self
            .outstanding
            .iter()
            .filter(|(_, s)| s.due <= now)
            .take(BATCH)
            .map(|(pos, s)| (*pos, s.id.clone()))
            .collect();
        let mut out = Vec::with_capacity(due.len());
        for ((lane, seq), id) in due {
            match self.consumers.store.get_or_damaged(id.clone()).await? {
                Some((rec, None)) => out.push((lane, seq, id, rec)),
                // Damaged on the disk since it was sent: it cannot be sent
                // again, and must not stop the stream; passed over, as the
                // stream passes over one found damaged before it was sent.
                Some((_, Some(e))) => {
                    error!(alarm = "report-damaged", peer = %self.key.0, consumer = %self.key.1, %id, error = %e, "ALARM: a stored report cannot be read back whole to be sent again; passed over");
                    self.outstanding.remove(&(lane, seq));
                }
                // Never expected: inbox items are not deleted.
                None => {
                    self.outstanding.remove(&(lane, seq));
                }
            }
        }
        Ok(out)
    }

    fn failed(&self, e: Error) -> Stop {
        warn!(peer = %self.key.0, consumer = %self.key.1, error = %e, "durable inbox consumer: read failed");
        Stop::With(e.into())
    }

    fn taken_over(&self) -> Stop {
        info!(peer = %self.key.0, consumer = %self.key.1, "durable inbox consumer taken over by a newer subscription");
        Stop::With(Error::TakenOver(self.key.1.clone()).into())
    }
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_and_plain() {
        for good in ["a", "office-1", "desk.main_2", &"x".repeat(MAX_NAME_BYTES)] {
            assert!(check_name(good).is_ok(), "{good:?}");
        }
        for bad in [
            "",
            "a b",
            "名字",
            "a/b",
            "a:b",
            &"x".repeat(MAX_NAME_BYTES + 1),
        ] {
            assert!(
                matches!(check_name(bad), Err(Error::BadConsumerName(_))),
                "{bad:?}"
            );
        }
        let Err(Error::BadConsumerName(shown)) = check_name(&"y ".repeat(10_000)) else {
            panic!("a long name with a space is refused");
        };
        assert_eq!(shown.len(), 80, "a hostile name is shown cut short");
    }
}
