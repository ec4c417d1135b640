//! `Inbox`: consumers at a hub read what arrived (down, to the office's
//! systems), over mutual TLS, from a cursor or as a durable consumer.
//!
//! The cursor is one position per class lane. Each batch is read most
//! urgent lane first, so among unread items the highest class always comes
//! next; each item carries the cursor to resume from after it, so a
//! consumer that reconnects sees no gaps and no repeats. A subscription
//! with a consumer name leaves the position to the hub instead, which
//! keeps it from the consumer's acknowledgements (`consumers`). Only the
//! hub's own certificate and the node ids in `[relay] consumers` may read:
//! reports are confidential, and a county that may forward here may not
//! read what other counties sent.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use super::consumers::Consumers;
use super::custody::Custody;
use super::error::Error;
use crate::envelope::{self, chunk_count};
use crate::proto::{
    AttachmentRef, AttachmentRequest, Chunk, ConsumersRequest, ConsumersResponse, Cursor, InboxAck,
    InboxAckResponse, InboxItem, Report, SignedReport, SubscribeRequest, inbox_server::Inbox,
};
use crate::store::{ItemRecord, RecordState, Store};
use crate::tls::PeerInfo;

/// Items read from the store per batch; a new emergency waits at most this
/// many items behind older, lower-class ones.
const BATCH: usize = 16;

/// The `Inbox` service of a hub.
#[derive(Debug)]
pub(crate) struct InboxService {
    pub(crate) node_id: String,
    /// Node ids that may read besides the hub itself.
    pub(crate) consumers: Vec<String>,
    pub(crate) store: Store,
    pub(crate) custody: Arc<Custody>,
    /// The durable consumers (subscriptions with a name).
    pub(crate) durable: Arc<Consumers>,
    pub(crate) shutdown: CancellationToken,
}

impl InboxService {
    /// The reader, if it may read this inbox.
    fn admit<T>(&self, request: &Request<T>) -> Result<PeerInfo, Error> {
        let peer = PeerInfo::of(request).ok_or(Error::NoPeer)?;
        if peer.node_id == self.node_id || self.consumers.contains(&peer.node_id) {
            Ok(peer)
        } else {
            warn!(peer = %peer.node_id, addr = %peer.addr, "refused inbox access: not a configured consumer");
            Err(Error::NotConsumer(peer.node_id))
        }
    }
}

/// Attachment `index` of item `id` in `store`; with `inbox_only`, only of
/// an item in the inbox.
pub(crate) async fn attachment_ref(
    store: &Store,
    id: &str,
    index: u32,
    inbox_only: bool,
) -> Result<AttachmentRef, Error> {
    let rec = store
        .get(id.to_string())
        .await?
        .filter(|r| !inbox_only || r.state() == Some(RecordState::Delivered))
        .ok_or_else(|| {
            if inbox_only {
                Error::NotInInbox(id.to_string())
            } else {
                Error::NotFound(id.to_string())
            }
        })?;
    if rec.is_pruned() {
        return Err(Error::Pruned {
            id: id.to_string(),
            at_ms: rec.pruned_ms,
        });
    }
    let report = SignedReport::decode(rec.signed.as_slice())
        .and_then(|s| Report::decode(s.report.as_slice()))
        .map_err(|source| Error::Corrupt {
            id: id.to_string(),
            source,
        })?;
    usize::try_from(index)
        .ok()
        .and_then(|i| report.attachments.get(i).cloned())
        .ok_or_else(|| Error::NoAttachment {
            id: id.to_string(),
            index,
        })
}

/// The chunks of attachment `attachment` (described by `a`) of item `id`,
/// in order, read from `store` as the receiver takes them.
pub(crate) fn chunk_stream(
    store: Store,
    id: String,
    attachment: u32,
    a: &AttachmentRef,
) -> ChunkStream {
    let count = chunk_count(a);
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        for index in 0..count {
            let chunk = match store.chunk(id.clone(), attachment, index).await {
                Ok(Some(data)) => Ok(Chunk {
                    item_id: id.clone(),
                    attachment,
                    index,
                    data,
                }),
                Ok(None) => Err(Error::MissingChunk {
                    id: id.clone(),
                    attachment,
                    index,
                }),
                Err(e) => Err(e.into()),
            };
            let failed = chunk.is_err();
            if tx.send(chunk.map_err(Status::from)).await.is_err() || failed {
                return;
            }
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

/// The stream item for inbox item `id`; `None` (logged) if its stored
/// bytes do not decode.
pub(super) fn item(custody: &Custody, id: &str, rec: &ItemRecord) -> Option<InboxItem> {
    if rec.is_pruned() {
        // Archived: a consumer this far behind reads it from the archive.
        tracing::debug!(%id, "inbox item archived; skipping it in the inbox stream");
        return None;
    }
    if rec.unreadable() {
        // Damaged on the disk: alarmed by the read; nothing to send.
        return None;
    }
    match SignedReport::decode(rec.signed.as_slice()) {
        Ok(item) => Some(InboxItem {
            receipt: Some(custody.receipt(id, rec)),
            item: Some(item),
            ..InboxItem::default()
        }),
        Err(e) => {
            warn!(%id, error = %e, "stored item does not decode; skipping it in the inbox stream");
            None
        }
    }
}

pub(super) type ItemStream = Pin<Box<dyn Stream<Item = Result<InboxItem, Status>> + Send>>;
pub(crate) type ChunkStream = Pin<Box<dyn Stream<Item = Result<Chunk, Status>> + Send>>;

#[tonic::async_trait]
impl Inbox for InboxService {
    type SubscribeStream = ItemStream;
    type AttachmentStream = ChunkStream;
    type HistoryStream = super::history::HistoryStream;

    async fn history(
        self: Arc<Self>,
        request: Request<crate::proto::HistoryRequest>,
    ) -> Result<Response<Self::HistoryStream>, Status> {
        let peer = self.admit(&request)?;
        let stream = super::history::stream(
            self.store.clone(),
            peer,
            request.into_inner(),
            self.shutdown.clone(),
        )
        .await?;
        Ok(Response::new(stream))
    }

    async fn history_ack(
        self: Arc<Self>,
        request: Request<crate::proto::HistoryAckRequest>,
    ) -> Result<Response<crate::proto::HistoryAckResponse>, Status> {
        let peer = self.admit(&request)?;
        let req = request.into_inner();
        let upto = super::history::ack(&self.store, &peer, &req.consumer, req.upto).await?;
        Ok(Response::new(crate::proto::HistoryAckResponse { upto }))
    }

    async fn attachment(
        self: Arc<Self>,
        request: Request<AttachmentRequest>,
    ) -> Result<Response<ChunkStream>, Status> {
        self.admit(&request)?;
        let req = request.into_inner();
        envelope::check_id(&req.item_id).map_err(Error::from)?;
        let a = attachment_ref(&self.store, &req.item_id, req.attachment, true).await?;
        Ok(Response::new(chunk_stream(
            self.store.clone(),
            req.item_id,
            req.attachment,
            &a,
        )))
    }

    async fn subscribe(
        self: Arc<Self>,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<ItemStream>, Status> {
        let peer = self.admit(&request)?;
        let req = request.into_inner();
        if !req.consumer.is_empty() {
            let cursor_set = req.cursor.is_some_and(|c| c != Cursor::default());
            let stream = self
                .durable
                .subscribe(peer, req.consumer, cursor_set, !req.no_follow)
                .await?;
            return Ok(Response::new(stream));
        }
        let c = req.cursor.unwrap_or_default();
        let cursor = [c.emergency, c.bad_news, c.routine];
        info!(consumer = %peer.node_id, addr = %peer.addr, ?cursor, "inbox subscriber connected");
        let (tx, rx) = mpsc::channel(BATCH);
        tokio::spawn(follow(self.clone(), peer, cursor, !req.no_follow, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn ack(
        self: Arc<Self>,
        request: Request<InboxAck>,
    ) -> Result<Response<InboxAckResponse>, Status> {
        let peer = self.admit(&request)?;
        let resp = self.durable.ack(&peer, request.into_inner()).await?;
        Ok(Response::new(resp))
    }

    async fn consumers(
        self: Arc<Self>,
        request: Request<ConsumersRequest>,
    ) -> Result<Response<ConsumersResponse>, Status> {
        let peer = self.admit(&request)?;
        Ok(Response::new(self.durable.list(&peer).await?))
    }
}

/// Sends the items after `cursor` down `tx`, then (with `follow`) new ones
/// as they arrive, until the consumer goes or the node stops.
async fn follow(
    inbox: Arc<InboxService>,
    peer: PeerInfo,
    mut cursor: [u64; 3],
    follow: bool,
    tx: mpsc::Sender<Result<InboxItem, Status>>,
) {
    let mut arrivals = inbox.store.inbox_watch();
    loop {
        arrivals.borrow_and_update();
        let batch = match inbox.store.inbox_after(cursor, BATCH).await {
            Ok(b) => b,
            Err(e) => {
                warn!(consumer = %peer.node_id, error = %e, "inbox read failed");
                let _ = tx.send(Err(Error::from(e).into())).await;
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
                () = inbox.shutdown.cancelled() => return,
            }
            continue;
        }
        for (lane, seq, id, rec) in batch {
            cursor[usize::from(lane)] = seq;
            let Some(mut out) = item(&inbox.custody, &id, &rec) else {
                continue;
            };
            out.next = Some(Cursor {
                emergency: cursor[0],
                bad_news: cursor[1],
                routine: cursor[2],
            });
            if tx.send(Ok(out)).await.is_err() {
                return;
            }
        }
    }
}
