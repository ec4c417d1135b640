//! One session with the upstream, from connect to end: a `Relay.Forward`
//! stream, and a second on a connection of its own for urgent items,
//! which the upstream serves apart (`node::urgent`). Both share one window.
//!
//! The session loop repeats four named steps: [`Session::fill_window`]
//! (items up, in schedule order, as far as the window allows),
//! [`Session::next_chunk`] (one attachment chunk up, from the most urgent
//! upload), then waits for whichever comes first: an answer from upstream
//! ([`Session::on_response`]), a receipt reaching the disk
//! ([`Session::on_commit`]), new items in the queue, or, while it has
//! nothing else to do, an operator's item offered before it is on this
//! node's disk ([`Session::on_early`], see [`super::early`]).

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;

use futures::stream::FuturesUnordered;
use futures::{Future, StreamExt};
use prost::Message;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Streaming};
use tracing::{debug, error, info, warn};

use super::chunks::ChunkSchedule;
use super::early::Early;
use super::pace::{Pace, cap};
use super::{Forwarder, SessionEnd};
use crate::audit::{AuditKind, Entry};
use crate::class::Class;
use crate::envelope::hops;
use crate::node::said::Said;
use crate::proto::{
    Chunk, ChunkNeed, EventKind, ForwardRequest, ForwardResponse, ReceiptKind, Refusal,
    SignedReceipt, SignedReport, forward_request, forward_response, relay_client::RelayClient,
};
use crate::receipt;
use crate::store::{self, FROM_OPERATOR, ItemRecord, ReceiptOutcome};
use crate::tls;

/// An item on the wire in this session.
#[derive(Debug)]
struct Sent {
    /// SHA-256 of the report bytes, which its receipt must name.
    sha256: Vec<u8>,
    lane: u8,
    /// When this node stored it, Unix ms (for the receipt's latency).
    stored_ms: i64,
    /// Whether its attachments are uploading.
    uploads: bool,
    /// An urgent item's hold on the runtime's priority, until its receipt
    /// is stored (or the session ends).
    _raised: Option<crate::node::boost::Hold>,
}

/// Items with attachments on the wire at once: chunks go one at a time
/// anyway, and the receiver holds each child to a quota of partial uploads.
const UPLOADS_IN_FLIGHT: usize = 4;

/// A verified receipt on its way to the disk.
#[derive(Debug)]
struct Committed {
    id: String,
    on_time: bool,
    delivery: bool,
    stored: Result<ReceiptOutcome, store::Error>,
}

type Commit = Pin<Box<dyn Future<Output = Committed> + Send>>;

/// Puts one request on the stream.
pub(super) async fn send(
    tx: &mpsc::Sender<ForwardRequest>,
    kind: forward_request::Kind,
) -> Result<(), SessionEnd> {
    tx.send(ForwardRequest { kind: Some(kind) })
        .await
        .map_err(|_| SessionEnd::Closed("request stream closed"))
}

/// Connects (mutual TLS, the upstream pinned by node id) and opens a
/// `Forward` stream.
async fn open_stream(
    fwd: &Forwarder,
    config: rustls::ClientConfig,
    shutdown: &CancellationToken,
) -> Result<(mpsc::Sender<ForwardRequest>, Streaming<ForwardResponse>), SessionEnd> {
    let connect = tls::connect_channel(&fwd.route.addr, Arc::new(config), fwd.name(), fwd.connect);
    let channel = tokio::select! {
        c = connect => c.map_err(SessionEnd::Connect)?,
        () = shutdown.cancelled() => return Err(SessionEnd::Shutdown),
    };
    let mut client = RelayClient::new(channel)
        .max_decoding_message_size(fwd.max_message)
        .max_encoding_message_size(fwd.max_message);
    let (tx, rx) = mpsc::channel(fwd.window);
    let responses = tokio::select! {
        r = client.forward(ReceiverStream::new(rx)) => r.map_err(SessionEnd::Stream)?.into_inner(),
        () = shutdown.cancelled() => return Err(SessionEnd::Shutdown),
    };
    Ok((tx, responses))
}

/// The stream on the urgent connection: urgent items without attachments
/// go up it, and their answers come down it (and the CRL); all else takes
/// the routine stream.
struct Urgent {
    tx: mpsc::Sender<ForwardRequest>,
    rx: Streaming<ForwardResponse>,
}

/// The next answer on the urgent stream; never, without one.
async fn urgent_answer(
    urgent: &mut Option<Urgent>,
) -> Result<Option<ForwardResponse>, tonic::Status> {
    match urgent {
        Some(u) => u.rx.message().await,
        None => std::future::pending().await,
    }
}

/// One open stream to the upstream and what is on it.
pub(super) struct Session<'f> {
    fwd: &'f Forwarder,
    tx: mpsc::Sender<ForwardRequest>,
    /// The urgent connection's stream, if it opened.
    urgent: Option<Urgent>,
    in_flight: HashMap<String, Sent>,
    commits: FuturesUnordered<Commit>,
    chunks: ChunkSchedule,
    pace: Pace,
    queue: watch::Receiver<u64>,
    /// The region CA and CRL, and our own keys: the session ends when
    /// either changes, and the next is made under the new ones.
    trust: watch::Receiver<u64>,
    keys: watch::Receiver<u64>,
    /// Held notices to send up: changes when one is added or acknowledged.
    held: watch::Receiver<u64>,
    /// Held notices sent on this stream and not acknowledged yet.
    held_sent: HashSet<(String, String)>,
    /// Whether the held notices to send may have changed since last read.
    held_due: bool,
    /// Whether the upstream has answered anything: the link works.
    progressed: bool,
    /// Items offered before they were on this node's disk.
    early: mpsc::Receiver<Early>,
    /// Of the items on the wire, those sent early, until their receipt or
    /// refusal: whether this node's commit of them succeeded (`None`: not
    /// known), told once the custody log's record of the sending is
    /// queued, if it did.
    local: HashMap<String, oneshot::Receiver<Option<bool>>>,
    /// Whether the last look at the queue found everything in it on the
    /// wire (it asked for more than it got).
    drained: bool,
    /// Whether the routes last heard this session is idle.
    idle: bool,
}

impl<'f> Session<'f> {
    /// Connects and opens the routine stream, then the urgent one.
    pub(super) async fn open(
        fwd: &'f Forwarder,
        shutdown: &CancellationToken,
    ) -> Result<(Self, Streaming<ForwardResponse>), SessionEnd> {
        let mut trust = fwd.trust.changes();
        trust.borrow_and_update();
        let mut keys = fwd.keys.changes();
        keys.borrow_and_update();
        let config = tls::client_config(&fwd.keys.current(), &fwd.trust.snapshot(), fwd.name())?;
        let (tx, responses) = open_stream(fwd, config.clone(), shutdown).await?;
        info!(upstream = %fwd.name(), addr = %fwd.route.addr, "forwarding stream open");
        fwd.set_up(true, "");
        // A second connection for urgent items, served apart upstream (see
        // `node::urgent`). Without it they go on the routine stream, ahead
        // of routine items as ever.
        let urgent = match open_stream(fwd, tls::asking_urgent(config), shutdown).await {
            Ok((tx, rx)) => Some(Urgent { tx, rx }),
            Err(SessionEnd::Shutdown) => return Err(SessionEnd::Shutdown),
            Err(e) => {
                warn!(upstream = %fwd.name(), addr = %fwd.route.addr, error = %e,
                    "no urgent connection: urgent items go on the routine stream");
                None
            }
        };
        let session = Self {
            fwd,
            tx,
            urgent,
            in_flight: HashMap::new(),
            commits: FuturesUnordered::new(),
            chunks: ChunkSchedule::default(),
            pace: Pace::new(fwd.window),
            queue: fwd.store.queue_watch(),
            trust,
            keys,
            held: fwd.store.held_watch(),
            held_sent: HashSet::new(),
            held_due: true,
            progressed: false,
            early: fwd.routes.open_early(fwd.name()),
            local: HashMap::new(),
            drained: false,
            idle: false,
        };
        Ok((session, responses))
    }

    /// Runs the session until it ends; returns why, and whether the
    /// upstream answered anything on it.
    pub(super) async fn run(
        mut self,
        mut responses: Streaming<ForwardResponse>,
        shutdown: &CancellationToken,
    ) -> (SessionEnd, bool) {
        let end = loop {
            if let Err(end) = self.step(&mut responses, shutdown).await {
                break end;
            }
        };
        for id in self.in_flight.keys() {
            self.fwd.routes.answered(self.fwd.name(), id);
        }
        (end, self.progressed)
    }

    async fn step(
        &mut self,
        responses: &mut Streaming<ForwardResponse>,
        shutdown: &CancellationToken,
    ) -> Result<(), SessionEnd> {
        self.fill_window().await?;
        self.next_chunk().await?;
        self.send_held().await?;
        self.tell_idle();
        let room = self.in_flight.len() < cap(0, self.pace.limit(), self.fwd.window);
        tokio::select! {
            Some(early) = self.early.recv() => self.on_early(early).await,
            msg = responses.message() => self.on_message(msg, false).await,
            // Its items are in the one window: if it ends, the session
            // does, and what had no receipt goes again on the next.
            msg = urgent_answer(&mut self.urgent), if self.urgent.is_some() => {
                self.on_message(msg, true).await
            }
            Some(done) = self.commits.next(), if !self.commits.is_empty() => self.on_commit(done),
            r = self.queue.changed(), if room => r.map_err(|_| SessionEnd::Shutdown),
            r = self.held.changed() => {
                self.held_due = true;
                r.map_err(|_| SessionEnd::Shutdown)
            }
            r = self.trust.changed() => Err(match r {
                Ok(()) => SessionEnd::TrustChanged,
                Err(_) => SessionEnd::Shutdown,
            }),
            r = self.keys.changed() => Err(match r {
                Ok(()) => SessionEnd::TrustChanged,
                Err(_) => SessionEnd::Shutdown,
            }),
            () = shutdown.cancelled() => Err(SessionEnd::Shutdown),
        }
    }

    /// Sends up the held notices queued for this route that are not on
    /// this stream yet; they go again on the next stream until the
    /// upstream acknowledges them.
    async fn send_held(&mut self) -> Result<(), SessionEnd> {
        // Read only when something changed: this runs every step.
        if !std::mem::take(&mut self.held_due) {
            return Ok(());
        }
        self.held.borrow_and_update();
        let pending = self
            .fwd
            .store
            .held_up_for(self.fwd.name().to_string(), 64)
            .await?;
        self.held_sent
            .retain(|k| pending.iter().any(|(id, h, _)| (id, h) == (&k.0, &k.1)));
        for (id, holder, bytes) in pending {
            if !self.held_sent.insert((id, holder)) {
                continue;
            }
            let Ok(notice) = crate::proto::SignedHeldNotice::decode(bytes.as_slice()) else {
                continue;
            };
            send(&self.tx, forward_request::Kind::Held(notice)).await?;
        }
        Ok(())
    }

    /// Puts items on the wire in schedule order while the window has room.
    /// Not while the CRL is stale: no receipt could be trusted; the session
    /// stays open for the fresh CRL the upstream pushes down it.
    async fn fill_window(&mut self) -> Result<(), SessionEnd> {
        self.drained = false;
        if self
            .fwd
            .trust
            .freshness(std::time::SystemTime::now())
            .is_stale()
        {
            return Ok(());
        }
        let window = self.fwd.window;
        let limit = self.pace.limit();
        // The most the window could take: room for an emergency beyond it.
        let most = cap(0, limit, window);
        if self.in_flight.len() >= most {
            return Ok(());
        }
        self.queue.borrow_and_update();
        let in_flight = &self.in_flight;
        let asked = most - in_flight.len();
        let next = self
            .fwd
            .store
            .next_queued(self.fwd.name(), asked, |id| in_flight.contains_key(id))
            .await?;
        self.drained = next.len() < asked;
        let mut uploading = self.in_flight.values().filter(|s| s.uploads).count();
        for store::Queued { id, rec, damaged } in next {
            // Schedule order is lane first, so once one item may not go,
            // none after it may either.
            if self.in_flight.len() >= cap(rec.lane(), limit, window) {
                break;
            }
            if let Some(e) = damaged {
                let route = self.fwd.name();
                // Never sent as it is, and never in the way of the rest.
                error!(alarm = "report-damaged", %id, error = %e, "ALARM: a queued report cannot be read back whole from the store; marking it refused on this route");
                self.fwd
                    .store
                    .record_refusal(id, route.to_string(), format!("damaged in store: {e}"))
                    .await?;
                continue;
            }
            if rec.attachments > 0 {
                if uploading >= UPLOADS_IN_FLIGHT {
                    continue;
                }
                uploading += 1;
            }
            self.send_item(id, rec).await?;
        }
        Ok(())
    }

    /// Nothing on this session's wire (so no chunk to send either) or
    /// being committed, and nothing stored in the queue since it last
    /// looked.
    fn quiet(&self) -> bool {
        self.in_flight.is_empty()
            && self.commits.is_empty()
            && !self.queue.has_changed().unwrap_or(true)
    }

    /// Tells the routes whether this session is idle — quiet, and nothing
    /// left in the queue at its last look — so that an operator's new item
    /// may be offered to it early.
    fn tell_idle(&mut self) {
        let idle = self.drained && self.quiet();
        if idle != self.idle {
            self.idle = idle;
            self.fwd.routes.set_idle(self.fwd.name(), idle);
        }
    }

    /// An operator's item offered before it is on this node's disk: sent
    /// now if this session is still idle, so that it is the next item it
    /// would send anyway; else left to come the usual way, from the queue,
    /// once stored. See [`super::early`].
    async fn on_early(&mut self, early: Early) -> Result<(), SessionEnd> {
        // The routes count this session busy from the offer on.
        self.idle = false;
        let Early {
            id,
            item,
            rec,
            stored,
        } = early;
        let still_idle = self.quiet()
            && !self
                .fwd
                .trust
                .freshness(std::time::SystemTime::now())
                .is_stale()
            && cap(rec.lane(), self.pace.limit(), self.fwd.window) > 0;
        if !still_idle {
            return Ok(());
        }
        debug!(%id, lane = rec.lane(), "sending before it is on this node's disk");
        self.fwd.events.metrics().sent_early(self.fwd.name());
        // Recorded as sent once stored here: the custody log never names
        // an item this node does not hold. Its receipt's record comes
        // after: it is queued once this one is (both are small writes,
        // which the store keeps in order).
        let (store, entry) = (
            self.fwd.store.clone(),
            Entry::new(AuditKind::Forwarded, &id).with_peer(self.fwd.name()),
        );
        let (noted, local) = oneshot::channel();
        tokio::spawn(async move {
            let stored = stored.await.ok();
            if stored == Some(true) {
                store.log_soon(entry);
            }
            let _ = noted.send(stored);
        });
        self.local.insert(id.clone(), local);
        self.put_item_on_wire(id, rec, item).await
    }

    /// Sends one stored item; an item held for a child gets our hop first.
    async fn send_item(&mut self, id: String, rec: ItemRecord) -> Result<(), SessionEnd> {
        let route = self.fwd.name();
        let mut item = match SignedReport::decode(rec.signed.as_slice()) {
            Ok(i) => i,
            Err(e) => {
                error!(%id, error = %e, "stored item does not decode; marking it refused");
                self.fwd
                    .store
                    .record_refusal(id, route.to_string(), format!("corrupt in store: {e}"))
                    .await?;
                return Ok(());
            }
        };
        if rec.from != FROM_OPERATOR {
            // Not ours: we countersign our link in its chain of custody.
            hops::add(
                &mut item,
                &self.fwd.keys.current(),
                &rec.from,
                rec.stored_ms,
            );
        }
        self.fwd
            .store
            .log_soon(Entry::new(AuditKind::Forwarded, &id).with_peer(route));
        self.put_item_on_wire(id, rec, item).await
    }

    /// Puts `item` on the wire: the routine stream, or the urgent one.
    async fn put_item_on_wire(
        &mut self,
        id: String,
        rec: ItemRecord,
        item: SignedReport,
    ) -> Result<(), SessionEnd> {
        self.fwd.routes.sent(self.fwd.name(), &id);
        self.pace.sent(&id);
        debug!(%id, lane = rec.lane(), "sending");
        let lane = rec.lane();
        self.in_flight.insert(
            id,
            Sent {
                sha256: rec.sha256,
                lane,
                stored_ms: rec.stored_ms,
                uploads: rec.attachments > 0,
                _raised: (lane < Class::Routine.lane()).then(crate::node::boost::hold),
            },
        );
        // Chunks go on the stream their item went up: the routine one.
        let tx = match &self.urgent {
            Some(u) if lane < Class::Routine.lane() && rec.attachments == 0 => &u.tx,
            _ => &self.tx,
        };
        send(tx, forward_request::Kind::Item(item)).await
    }

    /// Sends the next attachment chunk if none is on the wire.
    async fn next_chunk(&mut self) -> Result<(), SessionEnd> {
        let Some((id, attachment, index)) = self.chunks.next() else {
            return Ok(());
        };
        match self.fwd.store.chunk(id.clone(), attachment, index).await? {
            Some(data) => {
                let chunk = Chunk {
                    item_id: id,
                    attachment,
                    index,
                    data,
                };
                send(&self.tx, forward_request::Kind::Chunk(chunk)).await
            }
            None => {
                error!(alarm = "missing-chunk", %id, attachment, index, "ALARM: a chunk to send is not in the store");
                self.fwd.events.alarm(
                    &id,
                    self.fwd.name(),
                    Said::both(
                        format!("chunk {index} of attachment {attachment} is missing here"),
                        format!("本节点缺少附件 {attachment} 的第 {index} 块"),
                    ),
                );
                self.chunks.done(&id);
                Ok(())
            }
        }
    }

    /// What came on the routine stream, or on the urgent one: an answer,
    /// or the stream's end.
    async fn on_message(
        &mut self,
        msg: Result<Option<ForwardResponse>, tonic::Status>,
        urgent: bool,
    ) -> Result<(), SessionEnd> {
        let resp = match msg {
            Ok(Some(resp)) => resp,
            Ok(None) if urgent => {
                return Err(SessionEnd::Closed("upstream closed the urgent stream"));
            }
            Ok(None) => return Err(SessionEnd::Closed("upstream closed the stream")),
            Err(s) => return Err(SessionEnd::Stream(s)),
        };
        self.progressed = true;
        // Notices are taken from the routine stream: an upstream that
        // pushes them on every stream it is given pushes them there too,
        // and each is then taken, and acknowledged, once. Receipts,
        // decisions and requests for chunks may come on the stream the
        // item went up.
        if urgent
            && matches!(
                resp.result,
                Some(forward_response::Result::Notice(_) | forward_response::Result::HeldAck(_))
            )
        {
            return Ok(());
        }
        self.on_response(resp).await
    }

    /// One answer from upstream.
    async fn on_response(&mut self, resp: ForwardResponse) -> Result<(), SessionEnd> {
        match resp.result {
            Some(forward_response::Result::Receipt(signed)) => {
                self.on_receipt(signed);
                Ok(())
            }
            Some(forward_response::Result::Refusal(r)) => self.on_refusal(r).await,
            Some(forward_response::Result::Need(need)) => {
                self.on_need(need);
                Ok(())
            }
            Some(forward_response::Result::Delivered(signed)) => {
                self.fwd.on_delivered(&signed, &self.tx).await
            }
            Some(forward_response::Result::Crl(der)) => {
                self.fwd.on_crl(&der);
                Ok(())
            }
            Some(forward_response::Result::Disposition(signed)) => {
                self.fwd.on_disposition(&signed, &self.tx).await
            }
            Some(forward_response::Result::Notice(signed)) => {
                self.fwd.on_notice(&signed, &self.tx).await
            }
            Some(forward_response::Result::HeldAck(ack)) => {
                let refs = ack
                    .notices
                    .into_iter()
                    .map(|r| (r.item_id, r.holder))
                    .collect();
                self.fwd
                    .store
                    .ack_held(self.fwd.name().to_string(), refs)
                    .await?;
                Ok(())
            }
            None => Err(SessionEnd::Closed("empty response from upstream")),
        }
    }

    /// A receipt for an item on the wire: verified now, then handed to the
    /// store without waiting, so receipts commit together (group commit)
    /// while the stream keeps flowing; the item leaves the window once its
    /// receipt is on disk ([`Session::on_commit`]).
    fn on_receipt(&mut self, signed: SignedReceipt) {
        let fwd = self.fwd;
        let up = fwd.name();
        // Which item it names decides how it is checked; it is trusted only
        // once `open_for` has verified it.
        let Some(named) = receipt::peek(&signed) else {
            error!(alarm = "bad-receipt", upstream = %up, "ALARM: receipt does not decode; ignored");
            fwd.events.alarm(
                "",
                up,
                Said::both(
                    format!("receipt from {up} does not decode"),
                    format!("{up} 的回执无法解码"),
                ),
            );
            return;
        };
        let id = named.item_id;
        self.pace.answered(&id);
        let Some(sent) = self.in_flight.get(&id) else {
            warn!(alarm = "unknown-receipt", upstream = %up, %id, "receipt for an item not in flight here; ignored");
            fwd.events.alarm(
                &id,
                up,
                Said::both(
                    format!("{up} sent a receipt for an item not sent to it"),
                    format!("{up} 发来未曾发给它的信息的回执"),
                ),
            );
            return;
        };
        let now = std::time::SystemTime::now();
        let receipt = match receipt::open_for(&signed, &fwd.trust, now, &id, &sent.sha256, Some(up))
        {
            Ok(r) => r,
            Err(e) => {
                error!(alarm = "bad-receipt", upstream = %up, %id, error = %e, "ALARM: receipt does not verify or match the item; it stays queued");
                fwd.events.alarm(
                    &id,
                    up,
                    Said::both(
                        format!("receipt from {up} rejected: {e}"),
                        format!(
                            "拒收 {up} 的回执：{}",
                            crate::verdict::reason_zh(e.problem(), &e)
                        ),
                    ),
                );
                return;
            }
        };
        let delivery = receipt.kind == ReceiptKind::Delivery as i32;
        fwd.events
            .metrics()
            .receipt_latency(sent.lane, sent.stored_ms, now);
        // The session polls its commits together with the stream: this one
        // may be made on the session's own task only if nothing else is on
        // the wire or being committed (see `Store::alone`).
        let store = if self.in_flight.len() <= 1 && self.commits.is_empty() {
            fwd.store.alone()
        } else {
            fwd.store.clone()
        };
        // An urgent item's sender waits for this commit (its operator, or
        // the child it came from): see `Store::pressing`.
        let store = if Class::from_lane(sent.lane).is_some_and(Class::is_urgent) {
            store.pressing()
        } else {
            store
        };
        let route = up.to_string();
        let bytes = signed.encode_to_vec();
        let local = self.local.remove(&id);
        self.commits.push(Box::pin(async move {
            // Sent early: its receipt is kept once the item is (see
            // `early`); if it is not stored here, there is nothing to
            // settle.
            let stored = if let Some(local) = local
                && local.await == Ok(Some(false))
            {
                warn!(%id, upstream = %route, "the upstream took an item this node could not store; its receipt is not kept here");
                Ok(ReceiptOutcome::NotPending)
            } else {
                store
                    .record_receipt(id.clone(), route, bytes, delivery)
                    .await
            };
            Committed {
                id,
                on_time: receipt.on_time,
                delivery,
                stored,
            }
        }));
    }

    /// A receipt is on disk: the item leaves the window.
    fn on_commit(&mut self, done: Committed) -> Result<(), SessionEnd> {
        let outcome = done.stored?;
        let (fwd, id) = (self.fwd, &done.id);
        let route = fwd.name();
        self.in_flight.remove(id);
        self.chunks.done(id);
        fwd.routes.answered(route, id);
        fwd.events.metrics().receipt(done.delivery);
        debug!(%id, upstream = %route, ?outcome, "receipted");
        if done.delivery && outcome != ReceiptOutcome::NotPending {
            fwd.events.emit(
                EventKind::Delivered,
                id,
                None,
                route,
                Said::both(
                    format!("delivery receipt from {route}"),
                    format!("{route} 的送达回执"),
                ),
            );
        }
        if outcome == ReceiptOutcome::Settled {
            let (timing, timing_zh) = if done.on_time {
                ("on time", "按时")
            } else {
                ("late", "迟到")
            };
            fwd.events.emit(
                EventKind::Receipted,
                id,
                None,
                route,
                Said::both(
                    format!("receipt from {route}, {timing}"),
                    format!("{route} 的回执，{timing_zh}"),
                ),
            );
        }
        Ok(())
    }

    /// A refusal: one a retry may cure ends the session (the item is sent
    /// again on the next); any other takes the item off this route.
    async fn on_refusal(&mut self, r: Refusal) -> Result<(), SessionEnd> {
        let fwd = self.fwd;
        let up = fwd.name();
        let code = Code::from_i32(r.code);
        if matches!(
            code,
            Code::Unavailable
                | Code::ResourceExhausted
                | Code::Internal
                | Code::Aborted
                | Code::DeadlineExceeded
        ) {
            return Err(SessionEnd::Busy {
                id: r.item_id,
                code,
                message: r.message,
            });
        }
        if self.in_flight.remove(&r.item_id).is_none() {
            warn!(upstream = %up, id = %r.item_id, code = ?code, message = %r.message, "refusal for an item not in flight here");
            return Ok(());
        }
        self.chunks.done(&r.item_id);
        fwd.routes.answered(up, &r.item_id);
        error!(alarm = "refused", upstream = %up, id = %r.item_id, code = ?code, message = %r.message,
            "ALARM: upstream refused the item; it is kept here");
        let why = format!("{code:?}: {}", r.message);
        // Sent early: what it said is noted once the item is stored here.
        if let Some(local) = self.local.remove(&r.item_id)
            && local.await == Ok(Some(false))
        {
            return Ok(());
        }
        fwd.events.emit(
            EventKind::Refused,
            &r.item_id,
            None,
            up,
            Said::both(
                format!("{up} refused it: {why}"),
                format!("{up} 拒收：{why}"),
            ),
        );
        fwd.store
            .record_refusal(r.item_id, up.to_string(), why)
            .await?;
        Ok(())
    }

    /// The receiver wants chunk `need.next` of an attachment.
    fn on_need(&mut self, need: ChunkNeed) {
        let Some(sent) = self.in_flight.get(&need.item_id) else {
            self.chunks.done(&need.item_id);
            return;
        };
        let first = self.chunks.want(&need, sent.lane);
        if first || need.next.is_multiple_of(64) {
            let (what, what_zh) = if first && need.next > 0 {
                ("resuming at", "续传，从")
            } else {
                ("at", "上传至")
            };
            self.fwd.events.emit(
                EventKind::Upload,
                &need.item_id,
                None,
                self.fwd.name(),
                Said::both(
                    format!("attachment {} {what} chunk {}", need.attachment, need.next),
                    format!("附件 {} {what_zh}第 {} 块", need.attachment, need.next),
                ),
            );
        }
    }
}
