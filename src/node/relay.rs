//! `Relay`: items from child nodes, over mutual TLS.
//!
//! Thin: takes the peer's node id from the verified connection, opens the
//! envelope, hands the item to [`Shared::accept`], and maps errors to gRPC
//! statuses (or, inside a `Forward` stream, to per-item refusals that keep
//! the stream open).

use std::pin::Pin;
use std::sync::Arc;

use std::collections::HashSet;

use futures::{Stream, StreamExt};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::warn;

use super::Shared;
use crate::envelope;
use crate::proto::{
    ForwardRequest, ForwardResponse, Refusal, SignedReceipt, SignedReport, forward_response,
    relay_server::Relay,
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

/// Verifies and takes one item into custody; the error names the peer in the log.
async fn take(
    shared: &Shared,
    peer: &PeerInfo,
    item: &SignedReport,
) -> Result<SignedReceipt, Status> {
    let verified = envelope::open(
        item,
        &shared.trust,
        shared.cfg.limits.max_report_bytes,
        Shared::now(),
    )
    .map_err(|e| {
        warn!(peer = %peer.node_id, addr = %peer.addr, error = %e, "refused item from child");
        Status::from(e)
    })?;
    if verified.holder != peer.node_id {
        warn!(peer = %peer.node_id, addr = %peer.addr, id = %verified.report.id, holder = %verified.holder,
            "refused item from child: its custody chain does not end at the sender");
        return Err(Status::permission_denied(format!(
            "item {} is held by {:?} according to its custody chain, not by {:?} who sent it",
            verified.report.id, verified.holder, peer.node_id
        )));
    }
    let (_, receipt) = shared
        .accept(item, &verified, &peer.node_id)
        .await
        .map_err(|e| {
            warn!(peer = %peer.node_id, addr = %peer.addr, id = %verified.report.id, error = %e, "refused item from child");
            Status::from(e)
        })?;
    Ok(receipt)
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
        let peer = PeerInfo::of(&request)?;
        let shared = self.shared.clone();
        let window = shared.cfg.limits.max_in_flight;
        let shutdown = shared.shutdown.clone();
        let (down_tx, down_rx) = mpsc::channel(DOWN_BATCH);
        tokio::spawn(push_down(shared.clone(), peer.node_id.clone(), down_tx));
        let answers = request
            .into_inner()
            .map(move |msg| {
                let shared = shared.clone();
                let peer = peer.clone();
                async move { answer(&shared, &peer, msg?).await }
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
        let peer = PeerInfo::of(&request)?;
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
        if req.item.is_none() {
            return Ok(None);
        }
    }
    let Some(item) = req.item else {
        return Ok(Some(refusal(
            String::new(),
            &Status::invalid_argument("forward request carries no item"),
        )));
    };
    Ok(Some(match take(shared, peer, &item).await {
        Ok(receipt) => ForwardResponse {
            result: Some(forward_response::Result::Receipt(receipt)),
        },
        Err(status) => refusal(claimed_id(&item), &status),
    }))
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
