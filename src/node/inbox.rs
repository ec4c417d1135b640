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
use crate::proto::{Cursor, InboxItem, SignedReport, SubscribeRequest, inbox_server::Inbox};
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
}

type ItemStream = Pin<Box<dyn Stream<Item = Result<InboxItem, Status>> + Send>>;

#[tonic::async_trait]
impl Inbox for InboxService {
    type SubscribeStream = ItemStream;

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<ItemStream>, Status> {
        let peer = PeerInfo::of(&request)?;
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
