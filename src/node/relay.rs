//! `Relay`: items from child nodes, over mutual TLS.
//!
//! Thin: takes the peer's node id from the verified connection, opens the
//! envelope, hands the item to [`Shared::accept`], and maps errors to gRPC
//! statuses (or, inside a `Forward` stream, to per-item refusals that keep
//! the stream open).

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
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
        let out = request
            .into_inner()
            .map(move |msg| {
                let shared = shared.clone();
                let peer = peer.clone();
                async move {
                    let req = msg?;
                    let Some(item) = req.item else {
                        return Ok(refusal(
                            String::new(),
                            &Status::invalid_argument("forward request carries no item"),
                        ));
                    };
                    Ok(match take(&shared, &peer, &item).await {
                        Ok(receipt) => ForwardResponse {
                            result: Some(forward_response::Result::Receipt(receipt)),
                        },
                        Err(status) => refusal(claimed_id(&item), &status),
                    })
                }
            })
            // Items of one stream are verified and stored concurrently, so
            // they share commits; the bound is the sender's largest window
            // (with its room for urgent items, see `forward::cap`), so an
            // emergency is never stuck behind bulk in this stream's buffer.
            .buffer_unordered(window + window.div_ceil(2))
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

fn refusal(item_id: String, status: &Status) -> ForwardResponse {
    ForwardResponse {
        result: Some(forward_response::Result::Refusal(Refusal {
            item_id,
            code: status.code() as i32,
            message: status.message().to_string(),
        })),
    }
}
