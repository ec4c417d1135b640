//! `Relay`: items from child nodes, over mutual TLS.
//!
//! Thin: takes the peer's node id from the verified connection, opens the
//! envelope, hands the item to [`Shared::accept`], and maps errors to gRPC
//! statuses (or, inside a `Forward` stream, to per-item refusals that keep
//! the stream open).

use std::pin::Pin;
use std::sync::Arc;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use futures::{Stream, StreamExt};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{info, warn};

use super::Shared;
use crate::envelope;
use crate::envelope::Verified;
use crate::proto::{
    Chunk, ChunkNeed, ForwardRequest, ForwardResponse, Refusal, SignedReceipt, SignedReport,
    forward_response, relay_server::Relay,
};
use crate::tls::PeerInfo;

pub(crate) struct RelayService {
    shared: Arc<Shared>,
}

impl RelayService {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

/// Verifies an item from a child: envelope, custody chain, attachments.
fn check(shared: &Shared, peer: &PeerInfo, item: &SignedReport) -> Result<Verified, Status> {
    let refuse = |e: envelope::VerifyError| {
        warn!(peer = %peer.node_id, addr = %peer.addr, error = %e, "refused item from child");
        Status::from(e)
    };
    let verified = envelope::open(
        item,
        &shared.trust,
        shared.cfg.limits.max_report_bytes,
        Shared::now(),
    )
    .map_err(refuse)?;
    envelope::check_attachments(&verified.report, shared.cfg.limits.max_attachment_bytes)
        .map_err(refuse)?;
    if verified.holder != peer.node_id {
        warn!(peer = %peer.node_id, addr = %peer.addr, id = %verified.report.id, holder = %verified.holder,
            "refused item from child: its custody chain does not end at the sender");
        return Err(Status::permission_denied(format!(
            "item {} is held by {:?} according to its custody chain, not by {:?} who sent it",
            verified.report.id, verified.holder, peer.node_id
        )));
    }
    Ok(verified)
}

/// Takes a verified item (attachments complete) into custody.
async fn custody(
    shared: &Shared,
    peer: &PeerInfo,
    item: &SignedReport,
    verified: &Verified,
) -> Result<SignedReceipt, Status> {
    let (_, receipt) = shared
        .accept(item, verified, &peer.node_id)
        .await
        .map_err(|e| {
            warn!(peer = %peer.node_id, addr = %peer.addr, id = %verified.report.id, error = %e, "refused item from child");
            Status::from(e)
        })?;
    Ok(receipt)
}

/// Verifies and takes one item without attachments into custody (`Deliver`).
async fn take(
    shared: &Shared,
    peer: &PeerInfo,
    item: &SignedReport,
) -> Result<SignedReceipt, Status> {
    let verified = check(shared, peer, item)?;
    if !verified.report.attachments.is_empty()
        && shared
            .store
            .get(verified.report.id.clone())
            .await?
            .is_none()
    {
        return Err(Status::failed_precondition(
            "items with attachments travel on Relay.Forward, which carries their chunks",
        ));
    }
    custody(shared, peer, item, &verified).await
}

/// Items with attachments announced on one stream and not complete yet.
type Uploads = Arc<Mutex<HashMap<String, (SignedReport, Verified)>>>;

/// Most incomplete uploads one stream may have open.
const MAX_UPLOADS: usize = 64;

fn need(item_id: &str, attachment: usize, next: u32) -> ForwardResponse {
    ForwardResponse {
        result: Some(forward_response::Result::Need(ChunkNeed {
            item_id: item_id.to_string(),
            attachment: u32::try_from(attachment).unwrap_or(u32::MAX),
            next,
        })),
    }
}

/// Where an item with attachments stands: asks for the next missing chunk,
/// or, once every attachment is complete and verified, takes the item.
async fn progress(
    shared: &Shared,
    peer: &PeerInfo,
    item: SignedReport,
    verified: Verified,
    uploads: &Uploads,
) -> Result<ForwardResponse, Status> {
    let id = verified.report.id.clone();
    if shared.store.get(id.clone()).await?.is_some() {
        uploads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        let receipt = custody(shared, peer, &item, &verified).await?;
        return Ok(receipt_response(receipt));
    }
    for (a, r) in verified.report.attachments.iter().enumerate() {
        let index = u32::try_from(a).unwrap_or(u32::MAX);
        let stored = shared.store.chunks_stored(id.clone(), index).await?;
        if stored < envelope::chunk_count(r) {
            let mut open = uploads.lock().unwrap_or_else(|e| e.into_inner());
            if !open.contains_key(&id) {
                if open.len() >= MAX_UPLOADS {
                    return Err(Status::resource_exhausted(
                        "too many uploads open on this stream",
                    ));
                }
                if stored > 0 {
                    info!(peer = %peer.node_id, %id, attachment = a, chunk = stored, "resuming upload from the last stored chunk");
                }
                open.insert(id.clone(), (item, verified));
            }
            return Ok(need(&id, a, stored));
        }
    }
    uploads
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id);
    for (a, r) in verified.report.attachments.iter().enumerate() {
        let index = u32::try_from(a).unwrap_or(u32::MAX);
        let (sha, len) = shared.store.attachment_digest(id.clone(), index).await?;
        if sha.as_slice() != r.sha256.as_slice() || len != r.size {
            shared.store.drop_chunks(id.clone()).await?;
            warn!(peer = %peer.node_id, %id, attachment = a, "refused item: attachment does not match its signed digest");
            return Err(Status::unauthenticated(format!(
                "attachment {a} ({:?}) does not match the digest the origin signed",
                r.name
            )));
        }
    }
    let receipt = custody(shared, peer, &item, &verified).await?;
    Ok(receipt_response(receipt))
}

/// Stores one chunk of an announced upload and says what comes next.
async fn on_chunk(
    shared: &Shared,
    peer: &PeerInfo,
    chunk: Chunk,
    uploads: &Uploads,
) -> Result<ForwardResponse, Status> {
    let upload = uploads
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&chunk.item_id)
        .cloned();
    let Some((item, verified)) = upload else {
        return Err(Status::failed_precondition(format!(
            "chunk for item {:?}, which was not announced on this stream",
            chunk.item_id
        )));
    };
    let id = chunk.item_id.clone();
    let a = usize::try_from(chunk.attachment).unwrap_or(usize::MAX);
    let Some(r) = verified.report.attachments.get(a) else {
        return Err(Status::invalid_argument(format!(
            "item {id} has no attachment {a}"
        )));
    };
    let stored = shared
        .store
        .chunks_stored(id.clone(), chunk.attachment)
        .await?;
    if chunk.index != stored {
        // Out of step (a resend after a reconnect): say where we are.
        return Ok(need(&id, a, stored));
    }
    if chunk.index >= envelope::chunk_count(r)
        || chunk.data.len() as u64 != envelope::chunk_len(r, chunk.index)
    {
        warn!(peer = %peer.node_id, %id, attachment = a, index = chunk.index, "refused chunk of the wrong size");
        return Err(Status::invalid_argument(format!(
            "chunk {} of attachment {a} of {id} has the wrong size",
            chunk.index
        )));
    }
    shared
        .store
        .put_chunks(id, chunk.attachment, chunk.index, vec![chunk.data])
        .await?;
    progress(shared, peer, item, verified, uploads).await
}

fn receipt_response(receipt: SignedReceipt) -> ForwardResponse {
    ForwardResponse {
        result: Some(forward_response::Result::Receipt(receipt)),
    }
}

/// The id an item claims, for refusals of items we could not verify.
fn claimed_id(item: &SignedReport) -> String {
    use prost::Message;
    crate::proto::Report::decode(item.report.as_slice())
        .map(|r| r.id)
        .ok()
        .filter(|id| envelope::check_id(id).is_ok())
        .unwrap_or_default()
}

type ForwardStream = Pin<Box<dyn Stream<Item = Result<ForwardResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Relay for RelayService {
    type ForwardStream = ForwardStream;

    async fn forward(
        &self,
        request: Request<Streaming<ForwardRequest>>,
    ) -> Result<Response<ForwardStream>, Status> {
        let peer = PeerInfo::of(&request).ok_or_else(|| {
            Status::unauthenticated("no verified client certificate on this connection")
        })?;
        let shared = self.shared.clone();
        let window = shared.cfg.limits.max_in_flight;
        let shutdown = shared.shutdown.clone();
        let (down_tx, down_rx) = mpsc::channel(DOWN_BATCH);
        tokio::spawn(push_down(shared.clone(), peer.node_id.clone(), down_tx));
        let uploads = Uploads::default();
        let answers = request
            .into_inner()
            .map(move |msg| {
                let shared = shared.clone();
                let peer = peer.clone();
                let uploads = uploads.clone();
                async move { answer(&shared, &peer, msg?, &uploads).await }
            })
            // Items of one stream are verified and stored concurrently, so
            // they share commits; the bound is the sender's largest window
            // (with its room for urgent items, see `forward::cap`), so an
            // emergency is never stuck behind bulk in this stream's buffer.
            .buffer_unordered(window + window.div_ceil(2))
            .filter_map(|r| async move { r.transpose() });
        let out = futures::stream::select(answers, ReceiverStream::new(down_rx))
            .take_until(shutdown.cancelled_owned());
        Ok(Response::new(Box::pin(out)))
    }

    async fn deliver(
        &self,
        request: Request<SignedReport>,
    ) -> Result<Response<SignedReceipt>, Status> {
        let peer = PeerInfo::of(&request).ok_or_else(|| {
            Status::unauthenticated("no verified client certificate on this connection")
        })?;
        let receipt = take(&self.shared, &peer, request.get_ref()).await?;
        Ok(Response::new(receipt))
    }
}

/// Most delivery receipts pushed down, or acknowledged, at once.
const DOWN_BATCH: usize = 256;

/// Answers one request of a `Forward` stream: an acknowledgement of
/// delivery receipts (no answer), or an item (a receipt or a refusal).
async fn answer(
    shared: &Shared,
    peer: &PeerInfo,
    req: ForwardRequest,
    uploads: &Uploads,
) -> Result<Option<ForwardResponse>, Status> {
    if let Some(ack) = req.ack {
        if ack.item_ids.len() > DOWN_BATCH
            || ack
                .item_ids
                .iter()
                .any(|id| envelope::check_id(id).is_err())
        {
            warn!(peer = %peer.node_id, addr = %peer.addr, "malformed delivery acknowledgement");
            return Err(Status::invalid_argument(
                "malformed delivery acknowledgement",
            ));
        }
        shared
            .store
            .ack_down(peer.node_id.clone(), ack.item_ids)
            .await?;
        if req.item.is_none() && req.chunk.is_none() {
            return Ok(None);
        }
    }
    if let Some(chunk) = req.chunk {
        let id = chunk.item_id.clone();
        return Ok(Some(match on_chunk(shared, peer, chunk, uploads).await {
            Ok(resp) => resp,
            Err(status) => {
                uploads
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
                refusal(id, &status)
            }
        }));
    }
    let Some(item) = req.item else {
        return Ok(Some(refusal(
            String::new(),
            &Status::invalid_argument("forward request carries no item"),
        )));
    };
    let id = claimed_id(&item);
    let result = match check(shared, peer, &item) {
        Ok(v) if v.report.attachments.is_empty() => {
            custody(shared, peer, &item, &v).await.map(receipt_response)
        }
        Ok(v) => progress(shared, peer, item, v, uploads).await,
        Err(status) => Err(status),
    };
    Ok(Some(result.unwrap_or_else(|status| refusal(id, &status))))
}

/// Pushes the delivery receipts waiting for `child` down its stream, again
/// after every reconnection, until it acknowledges them.
async fn push_down(
    shared: Arc<Shared>,
    child: String,
    tx: mpsc::Sender<Result<ForwardResponse, Status>>,
) {
    let mut changes = shared.store.down_watch();
    let mut sent = HashSet::new();
    loop {
        changes.borrow_and_update();
        let pending = match shared.store.down_for(child.clone(), DOWN_BATCH).await {
            Ok(p) => p,
            Err(e) => {
                warn!(%child, error = %e, "cannot read delivery receipts to push down");
                return;
            }
        };
        sent.retain(|id| pending.iter().any(|(p, _)| p == id));
        for (id, bytes) in pending {
            if !sent.insert(id) {
                continue;
            }
            let Ok(receipt) = SignedReceipt::decode(bytes.as_slice()) else {
                continue;
            };
            let resp = ForwardResponse {
                result: Some(forward_response::Result::Receipt(receipt)),
            };
            if tx.send(Ok(resp)).await.is_err() {
                return;
            }
        }
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            () = tx.closed() => return,
            () = shared.shutdown.cancelled() => return,
        }
    }
}

fn refusal(item_id: String, status: &Status) -> ForwardResponse {
    ForwardResponse {
        result: Some(forward_response::Result::Refusal(Refusal {
            item_id,
            code: status.code() as i32,
            message: status.message().to_string(),
        })),
    }
}
