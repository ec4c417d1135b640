//! `Relay`: where child nodes hand items up, over mutual TLS.
//!
//! Both directions of a child's `Forward` stream meet here:
//! - **up**: items (verified by [`envelope::open`], then taken by
//!   [`Custody`]), the chunks of their attachments ([`upload`](super::upload)),
//!   and acknowledgements of delivery receipts pushed down earlier;
//! - **down**: for each item a receipt, a refusal (the stream stays open) or
//!   a request for the next chunk; and, from [`push_down`], the final hub's
//!   delivery receipts for items this child handed over before (on its
//!   routine stream: a stream on an urgent connection, see
//!   [`urgent`](super::urgent), gets only the answers to its items and the CRL).
//!
//! `Deliver` is the unary form for one item without attachments. The
//! service is thin: the peer's node id comes from its verified certificate,
//! the rules live in the envelope, custody and upload modules, and every
//! error becomes a status in one place ([`super::error`]).

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, warn};

use super::custody::Custody;
use super::error::Error;
use super::inflight::InFlight;
use super::push_down;
use super::upload::{self, Step, Uploads};
use crate::class::Class;
use crate::envelope::{self, Verified};
use crate::proto::{
    DeliveryAck, ForwardRequest, ForwardResponse, Refusal, SignedReceipt, SignedReport,
    forward_request, forward_response, relay_server::Relay,
};
use crate::store::Store;
use crate::tls::PeerInfo;
use crate::trust::{Trust, signature};

/// The `Relay` service of one node.
#[derive(Debug)]
pub(crate) struct RelayService {
    pub(crate) trust: Arc<Trust>,
    pub(crate) custody: Arc<Custody>,
    pub(crate) store: Store,
    /// Held notices kept at most (`limits.max_held_notices`).
    pub(crate) max_held_notices: u64,
    pub(crate) limits: envelope::Limits,
    /// Items of one stream handled at once (the sender's window).
    pub(crate) window: usize,
    /// What each child may hold in partial uploads.
    pub(crate) upload_quota: upload::Quota,
    /// What each child may make this node hold in memory.
    pub(crate) inflight: InFlight,
    /// Combines the signature checks of routine items arriving together.
    pub(crate) signatures: signature::Batcher,
    pub(crate) shutdown: CancellationToken,
}

/// The peer of a request on the relay listener.
fn peer_of<T>(request: &Request<T>) -> Result<PeerInfo, Error> {
    PeerInfo::of(request).ok_or(Error::NoPeer)
}

impl RelayService {
    /// Verifies an item from `peer`: envelope, fields, custody chain ending
    /// at the sender. A routine item waits for its turn and, unless it is
    /// the only one here, has its signature checked in a batch with others
    /// on the checker thread; an urgent one waits for neither.
    async fn check(
        &self,
        peer: &PeerInfo,
        item: &SignedReport,
        urgent: bool,
    ) -> Result<Verified, Error> {
        let now = std::time::SystemTime::now();
        let verified = if urgent {
            envelope::open(item, &self.trust, &self.limits, now)?
        } else {
            // Alone if it is the only routine item here: at one item at a
            // time, the checker thread's hand-off would only add to its
            // time.
            let alone = self.inflight.routine_in_flight() <= 1;
            let _turn = self.inflight.turn(false).await;
            envelope::open_batched(
                item,
                &self.trust,
                &self.limits,
                now,
                &self.signatures,
                alone,
            )
            .await?
        };
        if verified.holder() != peer.node_id {
            return Err(Error::NotHolder {
                id: verified.id().to_string(),
                holder: verified.holder().to_string(),
                sender: peer.node_id.clone(),
            });
        }
        Ok(verified)
    }

    /// Takes a verified item whose attachments (if any) are all here;
    /// answers with its receipt, signed together with the rest of its
    /// commit's.
    async fn take(
        &self,
        peer: &PeerInfo,
        item: &SignedReport,
        verified: &Verified,
    ) -> Result<SignedReceipt, Error> {
        // A stream's items are polled together in one task: its write may
        // be committed there only if it is the one message in flight.
        let in_flight = self.inflight.in_flight();
        let alone = in_flight <= 1;
        // With many items under way, the store's writer gathers them into
        // fewer, larger commits. The last item of a load says so, rather
        // than leaving the figure where the load left it. (Told after every
        // item, the figure dips as each commit's items are answered, and
        // the writer gathered less: a hub at 64 streams x 1 took 6 % fewer
        // items a second, in eight alternating pairs.)
        self.store.under_way(in_flight);
        let kept = self
            .custody
            .keep_receipted(item, verified, &peer.node_id, alone)
            .await;
        if self.inflight.in_flight() <= 1 {
            self.store.under_way(0);
        }
        kept
    }

    /// An item on a `Forward` stream: its id (for a refusal) and its
    /// receipt, or the first chunk its upload needs. The report is decoded
    /// once, by the verification; only one that does not verify is decoded
    /// again, to name it in the refusal.
    async fn item(
        &self,
        peer: &PeerInfo,
        item: SignedReport,
        uploads: &Uploads,
        urgent: bool,
    ) -> (String, Result<forward_response::Result, Error>) {
        let verified = match self.check(peer, &item, urgent).await {
            Ok(v) => v,
            Err(e) => return (envelope::claimed_id(&item).unwrap_or_default(), Err(e)),
        };
        let id = verified.id().to_string();
        let (item, verified) = if verified.report().attachments.is_empty() {
            (item, verified)
        } else {
            match uploads.announce(peer, item, verified).await {
                Ok(Step::Need(need)) => return (id, Ok(forward_response::Result::Need(need))),
                Ok(Step::Complete(done)) => *done,
                Err(e) => return (id, Err(e)),
            }
        };
        let receipt = self.take(peer, &item, &verified).await;
        (id, receipt.map(forward_response::Result::Receipt))
    }

    /// A chunk on a `Forward` stream: the next chunk wanted, or the
    /// receipt once the upload is complete.
    async fn chunk(
        &self,
        peer: &PeerInfo,
        chunk: crate::proto::Chunk,
        uploads: &Uploads,
    ) -> Result<forward_response::Result, Error> {
        match uploads.chunk(peer, chunk).await? {
            Step::Need(need) => Ok(forward_response::Result::Need(need)),
            Step::Complete(done) => {
                let (item, verified) = *done;
                let receipt = self.take(peer, &item, &verified).await?;
                Ok(forward_response::Result::Receipt(receipt))
            }
        }
    }

    /// A held notice from below: verified, kept, passed on up (unless this
    /// is the final hub or the item already arrived here), acknowledged.
    async fn held(
        &self,
        peer: &PeerInfo,
        signed: &crate::proto::SignedHeldNotice,
    ) -> Result<crate::proto::HeldAck, Error> {
        let notice = crate::held::open(signed, &self.trust, std::time::SystemTime::now())?;
        let kept = self
            .store
            .hold(
                notice.item_id.clone(),
                notice.holder.clone(),
                prost::Message::encode_to_vec(signed),
                self.custody.onward(),
                self.max_held_notices,
            )
            .await?;
        if kept == crate::store::HoldOutcome::Full {
            return Err(Error::HeldFull(self.max_held_notices));
        }
        if kept == crate::store::HoldOutcome::Kept {
            warn!(id = %notice.item_id, holder = %notice.holder, from = %peer.node_id, why = %notice.why, "item held below past its deadline");
            self.custody.held_below(&notice);
        }
        Ok(crate::proto::HeldAck {
            notices: vec![crate::proto::HeldRef {
                item_id: notice.item_id,
                holder: notice.holder,
            }],
        })
    }

    /// The child has stored delivery receipts, decisions and notices pushed
    /// down to it.
    async fn ack(&self, peer: &PeerInfo, ack: DeliveryAck) -> Result<(), Error> {
        let bad_ref = |r: &crate::proto::DispositionRef| {
            envelope::check_id(&r.item_id).is_err()
                || crate::trust::validate_node_id(&r.node).is_err()
                || r.seq == 0
        };
        if ack.item_ids.len() > push_down::BATCH
            || ack.dispositions.len() > push_down::BATCH
            || ack
                .item_ids
                .iter()
                .any(|id| envelope::check_id(id).is_err())
            || ack.dispositions.iter().any(bad_ref)
            || ack.notices.len() > push_down::BATCH
            || ack
                .notices
                .iter()
                .any(|r| crate::notice::check_id(&r.id).is_err() || r.version == 0)
        {
            return Err(Error::BadAck);
        }
        if !ack.item_ids.is_empty() {
            self.store
                .ack_down(peer.node_id.clone(), ack.item_ids)
                .await?;
        }
        if !ack.dispositions.is_empty() {
            let refs = ack
                .dispositions
                .into_iter()
                .map(|r| (r.item_id, r.node, r.seq))
                .collect();
            self.store
                .ack_down_decisions(peer.node_id.clone(), refs)
                .await?;
        }
        if !ack.notices.is_empty() {
            let refs = ack.notices.into_iter().map(|r| (r.id, r.version)).collect();
            self.store.ack_notices(peer.node_id.clone(), refs).await?;
        }
        Ok(())
    }

    /// Answers one request of a `Forward` stream: nothing for an
    /// acknowledgement, a receipt, chunk request or refusal for the rest.
    async fn answer(
        &self,
        peer: &PeerInfo,
        req: ForwardRequest,
        uploads: &Uploads,
        urgent: bool,
    ) -> Result<Option<ForwardResponse>, Status> {
        let class = claimed_class(&req);
        let (id, result) = match req.kind {
            Some(forward_request::Kind::Ack(ack)) => {
                return match self.ack(peer, ack).await {
                    Ok(()) => Ok(None),
                    Err(e) => {
                        warn!(peer = %peer.node_id, addr = %peer.addr, error = %e, "refused delivery acknowledgement");
                        Err(e.into())
                    }
                };
            }
            Some(forward_request::Kind::Held(notice)) => {
                return match self.held(peer, &notice).await {
                    Ok(ack) => Ok(Some(ForwardResponse {
                        result: Some(forward_response::Result::HeldAck(ack)),
                    })),
                    Err(e) => {
                        warn!(peer = %peer.node_id, addr = %peer.addr, error = %e, "refused held notice");
                        Err(e.into())
                    }
                };
            }
            Some(forward_request::Kind::Item(item)) => {
                if peer.urgent {
                    self.custody.metrics().urgent_connection_item(class);
                }
                self.item(peer, item, uploads, urgent).await
            }
            Some(forward_request::Kind::Chunk(chunk)) => {
                let id = chunk.item_id.clone();
                let result = self.chunk(peer, chunk, uploads).await;
                if result.is_err() {
                    uploads.forget(&id);
                }
                (id, result)
            }
            None => (String::new(), Err(Error::EmptyForward)),
        };
        let result = result.unwrap_or_else(|e| {
            warn!(peer = %peer.node_id, addr = %peer.addr, %id, error = %e, "refused item from child");
            let status = Status::from(e);
            self.custody.metrics().refused(class, status.code());
            forward_response::Result::Refusal(Refusal {
                item_id: id,
                code: status.code() as i32,
                message: status.message().to_string(),
            })
        });
        Ok(Some(ForwardResponse {
            result: Some(result),
        }))
    }
}

/// A `Forward` stream's message that could not be read: the status the
/// stream ends with, logged naming the peer when it is a refusal (by the
/// rule every call's refusals follow, `refusals::made_before_handler`)
/// rather than the connection going away.
fn stream_refusal(peer: &PeerInfo, status: Status) -> Status {
    let (status, refused) = super::refusals::made_before_handler(status);
    if refused {
        warn!(peer = %peer.node_id, addr = %peer.addr, code = ?status.code(), error = status.message(), "refused message on a Forward stream; the stream ends");
        return super::refusals::in_words(&status, "/zhibao.v1.Relay/Forward");
    } else {
        debug!(peer = %peer.node_id, addr = %peer.addr, error = %status, "Forward stream ended by its transport");
    }
    status
}

/// The class an item on a `Forward` request claims (unverified), for
/// counting its refusal.
fn claimed_class(req: &ForwardRequest) -> Option<Class> {
    match &req.kind {
        Some(forward_request::Kind::Item(item)) => envelope::claimed_class(item),
        _ => None,
    }
}

/// Whether a request goes ahead of routine work: an item of an urgent class
/// (as claimed; verified later), or a small message that moves items on.
fn urgent(req: &ForwardRequest) -> bool {
    match &req.kind {
        Some(forward_request::Kind::Item(item)) => {
            envelope::claimed_class(item).is_some_and(Class::is_urgent)
        }
        Some(forward_request::Kind::Chunk(_)) => false,
        _ => true,
    }
}

type ForwardStream = Pin<Box<dyn Stream<Item = Result<ForwardResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Relay for RelayService {
    type ForwardStream = ForwardStream;

    async fn forward(
        self: Arc<Self>,
        request: Request<Streaming<ForwardRequest>>,
    ) -> Result<Response<ForwardStream>, Status> {
        let peer = peer_of(&request)?;
        let (down_tx, down_rx) = mpsc::channel(push_down::BATCH);
        tokio::spawn(push_down::crl(
            self.trust.clone(),
            down_tx.clone(),
            self.shutdown.clone(),
        ));
        // What is owed to the child goes down its routine stream only: on
        // both, each would come twice.
        if !peer.urgent {
            tokio::spawn(push_down::run(
                self.store.clone(),
                peer.node_id.clone(),
                down_tx,
                self.shutdown.clone(),
            ));
        }
        let uploads = Arc::new(Uploads::new(self.store.clone(), self.upload_quota));
        let service = self.clone();
        let held = self.clone();
        let child = peer.node_id.clone();
        let window = self.window;
        let answers = request
            .into_inner()
            // Each message is held against the child's share from here
            // until answered; at its bound the stream is not read further.
            .then(move |msg| {
                let (held, child) = (held.clone(), child.clone());
                async move {
                    let size = msg.as_ref().map_or(0, prost::Message::encoded_len);
                    let urgent = msg.as_ref().is_ok_and(urgent);
                    (msg, held.inflight.hold(&child, size, urgent).await, urgent)
                }
            })
            .map(move |(msg, held, urgent)| {
                let service = service.clone();
                let peer = peer.clone();
                let uploads = uploads.clone();
                async move {
                    let msg = msg.map_err(|s| stream_refusal(&peer, s))?;
                    let answer = service.answer(&peer, msg, &uploads, urgent).await;
                    drop(held);
                    answer
                }
            })
            // Items of one stream are verified and stored concurrently, so
            // they share commits; the bound is the sender's largest window
            // (with its room for urgent items, see `forward::pace::cap`), so
            // an emergency is never stuck behind bulk in this stream's buffer.
            .buffer_unordered(window + window.div_ceil(2))
            .filter_map(|r| async move { r.transpose() });
        let out = futures::stream::select(answers, ReceiverStream::new(down_rx))
            .take_until(self.shutdown.clone().cancelled_owned());
        Ok(Response::new(Box::pin(out)))
    }

    async fn deliver(
        self: Arc<Self>,
        request: Request<SignedReport>,
    ) -> Result<Response<SignedReceipt>, Status> {
        let peer = peer_of(&request)?;
        let item = request.get_ref();
        let urgent = envelope::claimed_class(item).is_some_and(Class::is_urgent);
        let _held = self
            .inflight
            .hold(&peer.node_id, prost::Message::encoded_len(item), urgent)
            .await;
        let result = async {
            let verified = self.check(&peer, item, urgent).await?;
            if !verified.report().attachments.is_empty()
                && self
                    .store
                    .record(verified.id().to_string())
                    .await?
                    .is_none()
            {
                return Err(Error::AttachmentsNeedStream);
            }
            // The unary form answers with a receipt signed on its own
            // (over its bytes), as simple clients expect; streams get
            // receipts signed once per commit.
            let rec = self
                .custody
                .keep(item, &verified, &peer.node_id, false, false)
                .await?;
            Ok(self.custody.receipt(verified.id(), &rec))
        }
        .await;
        match result {
            Ok(receipt) => Ok(Response::new(receipt)),
            Err(e) => {
                warn!(peer = %peer.node_id, addr = %peer.addr, error = %e, "refused item from child");
                let status = Status::from(e);
                self.custody
                    .metrics()
                    .refused(envelope::claimed_class(item), status.code());
                Err(status)
            }
        }
    }
}
