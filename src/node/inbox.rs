//! `Inbox`: consumers at a hub read what arrived, from a cursor.
//!
//! The cursor is one position per class lane. Each batch is read most
//! urgent lane first, so among unread items the highest class always comes
//! next; each item carries the cursor to resume from after it, so a
//! consumer that reconnects sees no gaps and no repeats.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use super::Shared;
use crate::proto::{
    AttachmentRequest, Chunk, Cursor, InboxItem, SignedReport, SubscribeRequest,
    inbox_server::Inbox,
};
use crate::tls::PeerInfo;

/// Items read from the store per batch; a new emergency waits at most this
/// many items behind older, lower-class ones.
const BATCH: usize = 16;

pub(crate) struct InboxService {
    shared: Arc<Shared>,
}

impl InboxService {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Only this node's own certificate and the configured consumers may
    /// read the inbox: reports are confidential, and a county that may
    /// forward here may not read what other counties sent.
    fn admit<T>(&self, request: &Request<T>) -> Result<PeerInfo, Status> {
        let peer = PeerInfo::of(request).ok_or_else(|| {
            Status::unauthenticated("no verified client certificate on this connection")
        })?;
        let own = peer.node_id == self.shared.cfg.node_id;
        let listed = self
            .shared
            .cfg
            .relay
            .as_ref()
            .is_some_and(|r| r.consumers.contains(&peer.node_id));
        if own || listed {
            Ok(peer)
        } else {
            warn!(peer = %peer.node_id, addr = %peer.addr, "refused inbox access: not a configured consumer");
            Err(Status::permission_denied(format!(
                "node {:?} is not a consumer of this inbox (relay.consumers)",
                peer.node_id
            )))
        }
    }
}

type ItemStream = Pin<Box<dyn Stream<Item = Result<InboxItem, Status>> + Send>>;

type ChunkStream = Pin<Box<dyn Stream<Item = Result<Chunk, Status>> + Send>>;

#[tonic::async_trait]
impl Inbox for InboxService {
    type SubscribeStream = ItemStream;
    type AttachmentStream = ChunkStream;

    async fn attachment(
        &self,
        request: Request<AttachmentRequest>,
    ) -> Result<Response<ChunkStream>, Status> {
        self.admit(&request)?;
        let req = request.into_inner();
        crate::envelope::check_id(&req.item_id)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let shared = self.shared.clone();
        let rec = shared
            .store
            .get(req.item_id.clone())
            .await?
            .filter(|r| r.state() == Some(crate::store::RecordState::Delivered))
            .ok_or_else(|| Status::not_found(format!("no item {} in this inbox", req.item_id)))?;
        let report = SignedReport::decode(rec.signed.as_slice())
            .ok()
            .and_then(|s| crate::proto::Report::decode(s.report.as_slice()).ok())
            .ok_or_else(|| Status::internal("stored item does not decode"))?;
        let a = report
            .attachments
            .get(req.attachment as usize)
            .cloned()
            .ok_or_else(|| {
                Status::not_found(format!(
                    "item {} has no attachment {}",
                    req.item_id, req.attachment
                ))
            })?;
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            for index in 0..crate::envelope::chunk_count(&a) {
                let chunk = match shared
                    .store
                    .chunk(req.item_id.clone(), req.attachment, index)
                    .await
                {
                    Ok(Some(data)) => Ok(Chunk {
                        item_id: req.item_id.clone(),
                        attachment: req.attachment,
                        index,
                        data,
                    }),
                    Ok(None) => Err(Status::data_loss(format!("chunk {index} is missing"))),
                    Err(e) => Err(Status::from(e)),
                };
                let failed = chunk.is_err();
                if tx.send(chunk).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<ItemStream>, Status> {
        let peer = self.admit(&request)?;
        let req = request.into_inner();
        let c = req.cursor.unwrap_or_default();
        let mut cursor = [c.emergency, c.bad_news, c.routine];
        let follow = !req.no_follow;
        let shared = self.shared.clone();
        let (tx, rx) = mpsc::channel(BATCH);
        info!(consumer = %peer.node_id, addr = %peer.addr, ?cursor, "inbox subscriber connected");
        tokio::spawn(async move {
            let mut arrivals = shared.store.inbox_watch();
            loop {
                arrivals.borrow_and_update();
                let batch = match shared.store.inbox_after(cursor, BATCH).await {
                    Ok(b) => b,
                    Err(e) => {
                        warn!(consumer = %peer.node_id, error = %e, "inbox read failed");
                        let _ = tx.send(Err(Status::from(e))).await;
                        return;
                    }
                };
                if batch.is_empty() {
                    if !follow {
                        return;
                    }
                    tokio::select! {
                        r = arrivals.changed() => if r.is_err() { return },
                        () = tx.closed() => return,
                        () = shared.shutdown.cancelled() => return,
                    }
                    continue;
                }
                for (lane, seq, id, rec) in batch {
                    cursor[usize::from(lane)] = seq;
                    let item = match SignedReport::decode(rec.signed.as_slice()) {
                        Ok(i) => i,
                        Err(e) => {
                            warn!(%id, error = %e, "stored item does not decode; skipping it in the inbox stream");
                            continue;
                        }
                    };
                    let out = InboxItem {
                        receipt: Some(shared.receipt_for(&id, &rec)),
                        item: Some(item),
                        next: Some(Cursor {
                            emergency: cursor[0],
                            bad_news: cursor[1],
                            routine: cursor[2],
                        }),
                    };
                    if tx.send(Ok(out)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
