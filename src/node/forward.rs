//! The forwarder: one long-lived `Relay.Forward` stream to the upstream.
//!
//! It keeps up to `max_in_flight` items on the wire, always taking the next
//! item in schedule order from the store (emergency lane first, earliest
//! deadline first), verifies every receipt (CA, signature, receiver, item,
//! digest) before storing it, and on any failure reconnects with capped
//! exponential backoff and jitter. Whatever had no receipt is sent again;
//! receivers deduplicate by id, so the effect is exactly once.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tracing::{debug, error, info, warn};

use super::Shared;
use crate::config::UpstreamConfig;
use crate::envelope;
use crate::proto::{Chunk, ChunkNeed, DeliveryAck, EventKind, ReceiptKind};
use crate::proto::{
    ForwardRequest, ForwardResponse, SignedReport, forward_response, relay_client::RelayClient,
};
use crate::store::FROM_OPERATOR;
use crate::store::ReceiptOutcome;
use crate::tls;

/// Capped exponential backoff with full jitter.
#[derive(Debug)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            current: min,
        }
    }

    pub(crate) fn reset(&mut self) {
        self.current = self.min;
    }

    /// The next wait: uniformly random in [min, current], then current doubles.
    pub(crate) fn next_delay(&mut self) -> Duration {
        use ring::rand::SecureRandom;
        let mut b = [0u8; 4];
        let _ = ring::rand::SystemRandom::new().fill(&mut b);
        let frac = f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX);
        let span = self.current.saturating_sub(self.min);
        let delay = self.min + span.mul_f64(frac);
        self.current = (self.current * 2).min(self.max);
        delay
    }
}

/// A receipt being stored: (item id, on time, delivery kind, what the store did).
type Commit = Pin<
    Box<
        dyn Future<
                Output = (
                    String,
                    bool,
                    bool,
                    Result<ReceiptOutcome, crate::store::Error>,
                ),
            > + Send,
    >,
>;

/// Why a session with the upstream ended.
#[derive(Debug, thiserror::Error)]
enum SessionEnd {
    #[error("connect: {0}")]
    Connect(String),
    #[error("stream: {0}")]
    Stream(String),
    #[error("upstream is busy: {0}")]
    Busy(String),
    #[error("store: {0}")]
    Store(#[from] crate::store::Error),
    #[error("shutting down")]
    Shutdown,
}

/// Sends queued items to one upstream.
pub(crate) struct Forwarder {
    shared: Arc<Shared>,
    upstream: UpstreamConfig,
}

impl Forwarder {
    pub(crate) fn new(shared: Arc<Shared>, upstream: UpstreamConfig) -> Self {
        Self { shared, upstream }
    }

    /// Runs until shutdown.
    pub(crate) async fn run(self) {
        let max = Duration::from_secs(self.shared.cfg.limits.max_backoff_secs);
        let mut backoff = Backoff::new(Duration::from_millis(50), max);
        // Consecutive failed sessions; logged loudly on the first and then
        // now and again, so an outage is visible without flooding the log.
        let mut failures: u64 = 0;
        loop {
            let mut delivered = false;
            let end = self.session(&mut delivered).await;
            self.in_flight_set(|set| set.clear());
            self.set_up(false, &end.to_string());
            if matches!(end, SessionEnd::Shutdown) {
                return;
            }
            if delivered {
                backoff.reset();
                failures = 0;
            }
            failures += 1;
            let delay = backoff.next_delay();
            let (up, addr) = (&self.upstream.node_id, &self.upstream.addr);
            if failures == 1 || failures.is_multiple_of(50) {
                warn!(upstream = %up, %addr, error = %end, failures, "upstream unavailable; items stay queued and are retried");
            } else {
                debug!(upstream = %up, %addr, error = %end, failures, retry_in_ms = delay.as_millis() as u64, "upstream still unavailable");
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.shared.shutdown.cancelled() => return,
            }
        }
    }

    /// Works on this route's share of the node's in-flight table.
    fn in_flight_set<T>(&self, f: impl FnOnce(&mut HashSet<String>) -> T) -> T {
        let mut all = self
            .shared
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        f(all.entry(self.upstream.node_id.clone()).or_default())
    }

    /// Records whether the route is up, telling watchers on a change.
    fn set_up(&self, up: bool, why: &str) {
        let route = &self.upstream.node_id;
        let was = self
            .shared
            .routes_up
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(route.clone(), up);
        if was != Some(up) {
            let (kind, msg) = if up {
                (EventKind::RouteUp, format!("route {route} is up"))
            } else {
                (
                    EventKind::RouteDown,
                    format!("route {route} is down: {why}"),
                )
            };
            self.shared.emit(kind, "", None, route, msg);
        }
    }

    async fn session(&self, delivered: &mut bool) -> SessionEnd {
        let shared = &self.shared;
        let config = match tls::client_config(
            &shared.identity,
            &shared.trust.snapshot(),
            &self.upstream.node_id,
        ) {
            Ok(c) => Arc::new(c),
            Err(e) => return SessionEnd::Connect(e.to_string()),
        };
        let connect = tls::connect_channel(
            &self.upstream.addr,
            config,
            &self.upstream.node_id,
            Duration::from_secs(5),
        );
        let channel = tokio::select! {
            c = connect => match c {
                Ok(c) => c,
                Err(e) => return SessionEnd::Connect(error_chain(&e)),
            },
            () = shared.shutdown.cancelled() => return SessionEnd::Shutdown,
        };
        let max_msg = shared.cfg.limits.max_report_bytes.max(1 << 20) + 64 * 1024;
        let mut client = RelayClient::new(channel)
            .max_decoding_message_size(max_msg)
            .max_encoding_message_size(max_msg);
        let window = shared.cfg.limits.max_in_flight;
        let (tx, rx) = mpsc::channel::<ForwardRequest>(window);
        let mut responses = tokio::select! {
            r = client.forward(ReceiverStream::new(rx)) => match r {
                Ok(r) => r.into_inner(),
                Err(s) => return SessionEnd::Stream(format!("{}: {}", s.code(), s.message())),
            },
            () = shared.shutdown.cancelled() => return SessionEnd::Shutdown,
        };
        info!(upstream = %self.upstream.node_id, addr = %self.upstream.addr, "forwarding stream open");
        self.set_up(true, "");
        let route = self.upstream.node_id.clone();
        // id -> digest of the bytes we sent, to check the receipt against.
        let mut in_flight: HashMap<String, Vec<u8>> = HashMap::new();
        let mut commits: FuturesUnordered<Commit> = FuturesUnordered::new();
        let mut uploads = Uploads::default();
        let mut pace = Pace::new(window);
        let mut queue = shared.store.queue_watch();
        loop {
            let limit = pace.limit();
            if in_flight.len() < cap(0, limit, window) {
                queue.borrow_and_update();
                let skip: HashSet<String> = in_flight.keys().cloned().collect();
                let next = match shared
                    .store
                    .next_queued(route.clone(), cap(0, limit, window) - in_flight.len(), skip)
                    .await
                {
                    Ok(n) => n,
                    Err(e) => return e.into(),
                };
                for (id, rec) in next {
                    // Schedule order is lane first, so once one item may not
                    // go, none after it may either.
                    if in_flight.len() >= cap(rec.lane, limit, window) {
                        break;
                    }
                    let mut item = match <SignedReport as prost::Message>::decode(
                        rec.signed.as_slice(),
                    ) {
                        Ok(i) => i,
                        Err(e) => {
                            error!(%id, error = %e, "stored item does not decode; marking it refused");
                            if let Err(e) = shared
                                .store
                                .record_refusal(id, route.clone(), format!("corrupt in store: {e}"))
                                .await
                            {
                                return e.into();
                            }
                            continue;
                        }
                    };
                    if rec.from != FROM_OPERATOR {
                        // Not ours: we countersign our link in its chain of custody.
                        envelope::add_hop(&mut item, &shared.identity, &rec.from, rec.stored_ms);
                    }
                    self.in_flight_set(|set| set.insert(id.clone()));
                    in_flight.insert(id.clone(), rec.sha256.clone());
                    pace.sent(&id);
                    uploads.lanes.insert(id.clone(), rec.lane);
                    debug!(%id, lane = rec.lane, "sending");
                    if tx
                        .send(ForwardRequest {
                            item: Some(item),
                            ..Default::default()
                        })
                        .await
                        .is_err()
                    {
                        return SessionEnd::Stream("request stream closed".into());
                    }
                }
            }
            // An item answered (receipted or refused) frees the wire.
            if uploads
                .on_wire
                .as_ref()
                .is_some_and(|w| !in_flight.contains_key(w))
            {
                uploads.on_wire = None;
            }
            if uploads.on_wire.is_none() {
                uploads.forget(|id| !in_flight.contains_key(id));
                if let Some((id, attachment, index)) = uploads.next() {
                    match shared.store.chunk(id.clone(), attachment, index).await {
                        Ok(Some(data)) => {
                            let chunk = Chunk {
                                item_id: id.clone(),
                                attachment,
                                index,
                                data,
                            };
                            uploads.on_wire = Some(id);
                            if tx
                                .send(ForwardRequest {
                                    chunk: Some(chunk),
                                    ..Default::default()
                                })
                                .await
                                .is_err()
                            {
                                return SessionEnd::Stream("request stream closed".into());
                            }
                        }
                        Ok(None) => {
                            error!(alarm = "missing-chunk", %id, attachment, index, "ALARM: a chunk to send is not in the store");
                            shared.emit(
                                EventKind::Alarm,
                                &id,
                                None,
                                &route,
                                format!("chunk {index} of attachment {attachment} is missing here"),
                            );
                            uploads.wanted.remove(&id);
                        }
                        Err(e) => return e.into(),
                    }
                }
            }
            let room = in_flight.len() < cap(0, pace.limit(), window);
            tokio::select! {
                msg = responses.message() => match msg {
                    Ok(Some(ForwardResponse { result: Some(forward_response::Result::Need(need)) })) => {
                        self.on_need(need, &in_flight, &mut uploads);
                        *delivered = true;
                    }
                    Ok(Some(resp)) => {
                        if let Some(forward_response::Result::Receipt(r)) = &resp.result
                            && let Some(named) = crate::receipt::peek(r)
                        {
                            pace.answered(&named.item_id);
                        }
                        if let Err(end) = self.on_response(resp, &mut in_flight, &mut commits, &tx).await {
                            return end;
                        }
                        *delivered = true;
                    }
                    Ok(None) => return SessionEnd::Stream("upstream closed the stream".into()),
                    Err(s) => return SessionEnd::Stream(format!("{}: {}", s.code(), s.message())),
                },
                Some((id, on_time, delivery, stored)) = commits.next(), if !commits.is_empty() => {
                    let outcome = match stored {
                        Ok(o) => o,
                        Err(e) => return e.into(),
                    };
                    in_flight.remove(&id);
                    self.in_flight_set(|set| set.remove(&id));
                    debug!(%id, upstream = %route, ?outcome, "receipted");
                    if delivery && outcome != ReceiptOutcome::NotPending {
                        shared.emit(EventKind::Delivered, &id, None, &route, format!("delivery receipt from {route}"));
                    }
                    if outcome == ReceiptOutcome::Settled {
                        let timing = if on_time { "on time" } else { "late" };
                        shared.emit(EventKind::Receipted, &id, None, &route, format!("receipt from {route}, {timing}"));
                    }
                }
                r = queue.changed(), if room => if r.is_err() { return SessionEnd::Shutdown },
                () = shared.shutdown.cancelled() => return SessionEnd::Shutdown,
            }
        }
    }

    /// Handles one response. A verified receipt is handed to the store
    /// without waiting: receipts commit together (group commit) while the
    /// stream keeps flowing, and the item leaves the window once its receipt
    /// is on disk.
    async fn on_response(
        &self,
        resp: ForwardResponse,
        in_flight: &mut HashMap<String, Vec<u8>>,
        commits: &mut FuturesUnordered<Commit>,
        tx: &mpsc::Sender<ForwardRequest>,
    ) -> Result<(), SessionEnd> {
        let shared = &self.shared;
        let up = &self.upstream.node_id;
        match resp.result {
            Some(forward_response::Result::Receipt(signed)) => {
                // Which item it names decides how it is checked; it is trusted
                // only once `open_for` has verified it.
                let Some(named) = crate::receipt::peek(&signed) else {
                    error!(alarm = "bad-receipt", upstream = %up, "ALARM: receipt does not decode; ignored");
                    shared.emit(
                        EventKind::Alarm,
                        "",
                        None,
                        up,
                        format!("receipt from {up} does not decode"),
                    );
                    return Ok(());
                };
                let id = named.item_id;
                if named.kind == ReceiptKind::Delivery as i32 && !in_flight.contains_key(&id) {
                    return self.on_delivery_pushed_down(&id, &signed, tx).await;
                }
                let Some(sha) = in_flight.get(&id) else {
                    warn!(alarm = "unknown-receipt", upstream = %up, %id, "receipt for an item not in flight here; ignored");
                    shared.emit(
                        EventKind::Alarm,
                        &id,
                        None,
                        up,
                        format!("{up} sent a receipt for an item not sent to it"),
                    );
                    return Ok(());
                };
                let receipt = match crate::receipt::open_for(
                    &signed,
                    &shared.trust,
                    Shared::now(),
                    &id,
                    sha,
                    Some(up),
                ) {
                    Ok(r) => r,
                    Err(e) => {
                        error!(alarm = "bad-receipt", upstream = %up, %id, error = %e, "ALARM: receipt does not verify or match the item; it stays queued");
                        shared.emit(
                            EventKind::Alarm,
                            &id,
                            None,
                            up,
                            format!("receipt from {up} rejected: {e}"),
                        );
                        return Ok(());
                    }
                };
                let delivery = receipt.kind == ReceiptKind::Delivery as i32;
                let bytes = prost::Message::encode_to_vec(&signed);
                let store = shared.store.clone();
                let route = up.clone();
                commits.push(Box::pin(async move {
                    let stored = store
                        .record_receipt(id.clone(), route, bytes, delivery)
                        .await;
                    (id, receipt.on_time, delivery, stored)
                }));
                Ok(())
            }
            Some(forward_response::Result::Refusal(r)) => {
                let code = Code::from_i32(r.code);
                match code {
                    // The upstream could not take it now: try again later.
                    Code::Unavailable
                    | Code::ResourceExhausted
                    | Code::Internal
                    | Code::Aborted
                    | Code::DeadlineExceeded => Err(SessionEnd::Busy(format!(
                        "item {}: {code:?}: {}",
                        r.item_id, r.message
                    ))),
                    _ => {
                        if in_flight.remove(&r.item_id).is_none() {
                            warn!(upstream = %up, id = %r.item_id, code = ?code, message = %r.message, "refusal for an item not in flight here");
                            return Ok(());
                        }
                        self.in_flight_set(|set| set.remove(&r.item_id));
                        error!(alarm = "refused", upstream = %up, id = %r.item_id, code = ?code, message = %r.message,
                            "ALARM: upstream refused the item; it is kept here");
                        let why = format!("{code:?}: {}", r.message);
                        shared.emit(
                            EventKind::Refused,
                            &r.item_id,
                            None,
                            up,
                            format!("{up} refused it: {why}"),
                        );
                        shared
                            .store
                            .record_refusal(r.item_id, up.clone(), why)
                            .await?;
                        Ok(())
                    }
                }
            }
            // Handled in the session loop, which owns the upload state.
            Some(forward_response::Result::Need(_)) => Ok(()),
            None => Err(SessionEnd::Stream("empty response from upstream".into())),
        }
    }
}

/// How many items may be in flight when the next one is of `lane`, with
/// `limit` the current routine window and `window` the configured one.
///
/// Routine news fills the window; bad news may go a quarter of the
/// configured window beyond it and emergencies half, so an urgent item is on
/// the wire at once even when the window is full of bulk.
fn cap(lane: u32, limit: usize, window: usize) -> usize {
    match lane {
        0 => limit + window.div_ceil(2),
        1 => limit + window.div_ceil(4),
        _ => limit,
    }
}

/// Keeps the window no larger than the upstream can take without queueing.
///
/// A window larger than the path needs only builds a queue at the receiver,
/// and an urgent item sent into it waits behind everything ahead (measured:
/// emergency p99 under load 316 ms with 64 in flight, 75 ms with 8). So the
/// window grows by one per window of answers while answers come back within
/// twice the fastest seen (plus 5 ms), and shrinks to 70 % at most once per
/// window when they do not — delay-based, as TCP Vegas.
#[derive(Debug)]
struct Pace {
    window: f64,
    max: f64,
    base: Option<Duration>,
    since_cut: usize,
    sent: HashMap<String, Instant>,
}

impl Pace {
    fn new(max: usize) -> Self {
        Self {
            window: (max as f64).min(8.0),
            max: max as f64,
            base: None,
            since_cut: 0,
            sent: HashMap::new(),
        }
    }

    fn limit(&self) -> usize {
        (self.window as usize).max(1)
    }

    fn sent(&mut self, id: &str) {
        self.sent.insert(id.to_string(), Instant::now());
    }

    /// A receipt for `id` came back: measure its round trip and adjust.
    fn answered(&mut self, id: &str) {
        if let Some(at) = self.sent.remove(id) {
            self.on_rtt(at.elapsed());
        }
    }

    fn on_rtt(&mut self, rtt: Duration) {
        let base = *self.base.get_or_insert(rtt);
        if rtt < base {
            self.base = Some(rtt);
        }
        self.since_cut += 1;
        if rtt > base * 2 + Duration::from_millis(5) {
            if self.since_cut as f64 >= self.window {
                self.window = (self.window * 0.7).max(4.0);
                self.since_cut = 0;
            }
        } else {
            self.window = (self.window + 1.0 / self.window).min(self.max);
        }
    }
}

/// Attachment uploads on one session: one chunk on the wire at a time, and
/// the next one always from the most urgent item, so an urgent item waits
/// behind at most one chunk of bulk.
#[derive(Debug, Default)]
struct Uploads {
    /// Item id → (lane, attachment, next chunk the receiver wants).
    wanted: HashMap<String, (u32, u32, u32)>,
    /// The item whose chunk is on the wire, if any.
    on_wire: Option<String>,
    /// Lanes of the items sent in this session.
    lanes: HashMap<String, u32>,
}

impl Uploads {
    /// The next chunk to send: (item, attachment, index).
    fn next(&self) -> Option<(String, u32, u32)> {
        self.wanted
            .iter()
            .min_by_key(|(id, (lane, _, _))| (*lane, (*id).clone()))
            .map(|(id, (_, a, i))| (id.clone(), *a, *i))
    }

    /// Drops uploads of items that are no longer in flight.
    fn forget(&mut self, gone: impl Fn(&str) -> bool) {
        self.wanted.retain(|id, _| !gone(id));
        self.lanes.retain(|id, _| !gone(id));
    }
}

impl Forwarder {
    /// The receiver wants chunk `next` of an attachment.
    fn on_need(
        &self,
        need: ChunkNeed,
        in_flight: &HashMap<String, Vec<u8>>,
        uploads: &mut Uploads,
    ) {
        if uploads.on_wire.as_deref() == Some(need.item_id.as_str()) {
            uploads.on_wire = None;
        }
        if !in_flight.contains_key(&need.item_id) {
            return;
        }
        let lane = uploads.lanes.get(&need.item_id).copied().unwrap_or(2);
        let first = !uploads.wanted.contains_key(&need.item_id);
        uploads
            .wanted
            .insert(need.item_id.clone(), (lane, need.attachment, need.next));
        if first || need.next.is_multiple_of(64) {
            let route = &self.upstream.node_id;
            let what = if first && need.next > 0 {
                "resuming at"
            } else {
                "at"
            };
            self.shared.emit(
                EventKind::Upload,
                &need.item_id,
                None,
                route,
                format!("attachment {} {what} chunk {}", need.attachment, need.next),
            );
        }
    }

    /// A relay upstream pushed down the final hub's delivery receipt for an
    /// item it took in custody from us earlier: check it, keep it, pass it
    /// on down if the item came from a child, and acknowledge it.
    async fn on_delivery_pushed_down(
        &self,
        id: &str,
        signed: &crate::proto::SignedReceipt,
        tx: &mpsc::Sender<ForwardRequest>,
    ) -> Result<(), SessionEnd> {
        let shared = &self.shared;
        let up = &self.upstream.node_id;
        let Some(rec) = shared.store.get(id.to_string()).await? else {
            warn!(alarm = "unknown-receipt", upstream = %up, %id, "delivery receipt for an item never sent here; ignored");
            shared.emit(
                EventKind::Alarm,
                id,
                None,
                up,
                format!("{up} pushed a delivery receipt for an unknown item"),
            );
            return Ok(());
        };
        let receiver = match crate::receipt::open_for(
            signed,
            &shared.trust,
            Shared::now(),
            id,
            &rec.sha256,
            None,
        ) {
            Ok(r) if r.kind == ReceiptKind::Delivery as i32 => r.receiver,
            Ok(_) => {
                warn!(alarm = "unknown-receipt", upstream = %up, %id, "custody receipt for an item not in flight here; ignored");
                return Ok(());
            }
            Err(e) => {
                error!(alarm = "bad-receipt", upstream = %up, %id, error = %e, "ALARM: pushed-down delivery receipt does not match the item");
                shared.emit(
                    EventKind::Alarm,
                    id,
                    None,
                    up,
                    format!("delivery receipt does not match: {e}"),
                );
                return Ok(());
            }
        };
        shared
            .store
            .record_delivery(id.to_string(), prost::Message::encode_to_vec(signed))
            .await?;
        debug!(%id, hub = %receiver, "delivery receipt came down");
        shared.emit(
            EventKind::Delivered,
            id,
            None,
            up,
            format!("delivery receipt from {receiver}"),
        );
        let ack = ForwardRequest {
            ack: Some(DeliveryAck {
                item_ids: vec![id.to_string()],
            }),
            ..Default::default()
        };
        if tx.send(ack).await.is_err() {
            return Err(SessionEnd::Stream("request stream closed".into()));
        }
        Ok(())
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urgent_lanes_get_room_beyond_the_window() {
        assert_eq!(cap(2, 64, 64), 64);
        assert_eq!(cap(1, 64, 64), 80);
        assert_eq!(cap(0, 64, 64), 96);
        assert_eq!(
            cap(0, 4, 64),
            36,
            "room for urgent items even when the window shrank"
        );
        assert_eq!(
            cap(0, 1, 1),
            2,
            "even a window of one leaves room for an emergency"
        );
    }

    #[test]
    fn pace_grows_while_answers_are_quick_and_shrinks_when_they_queue() {
        let mut p = Pace::new(64);
        assert_eq!(p.limit(), 8);
        for _ in 0..3000 {
            p.on_rtt(Duration::from_millis(2));
        }
        assert_eq!(p.limit(), 64, "grows to the configured window");
        for _ in 0..500 {
            p.on_rtt(Duration::from_millis(50));
        }
        assert_eq!(p.limit(), 4, "shrinks while answers queue, to a floor");
    }

    #[test]
    fn backoff_grows_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
        let mut last_cap = Duration::ZERO;
        for _ in 0..20 {
            let d = b.next_delay();
            assert!(
                d >= Duration::from_millis(50) && d <= Duration::from_secs(2),
                "{d:?}"
            );
            last_cap = b.current;
        }
        assert_eq!(last_cap, Duration::from_secs(2));
        b.reset();
        assert_eq!(b.current, Duration::from_millis(50));
    }
}
