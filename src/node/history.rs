//! The office's history for the systems that follow it: every decision and
//! held notice this hub kept, in the order kept, streamed from a position
//! (`Inbox.History`), and — for a named consumer — resumed after what it
//! acknowledged (`Inbox.HistoryAck`), across reconnects and restarts.
//!
//! The history is one ordered log, so a consumer's whole state is one
//! number: the last entry it has processed.

use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tracing::{info, warn};

use super::consumers::{MAX_PER_PEER, check_name};
use super::error::Error;
use crate::proto::{
    HistoryEntry, HistoryRequest, SignedDisposition, SignedHeldNotice, history_entry,
};
use crate::store::{HistoryKind, Store};
use crate::tls::PeerInfo;

/// Entries read from the store per batch.
const BATCH: usize = 64;

/// A stream of history entries.
pub(crate) type HistoryStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<HistoryEntry, Status>> + Send>>;

/// Starts streaming the history to `peer` as `req` asks.
pub(crate) async fn stream(
    store: Store,
    peer: PeerInfo,
    req: HistoryRequest,
    shutdown: CancellationToken,
) -> Result<HistoryStream, Error> {
    let mut after = req.after;
    if !req.consumer.is_empty() {
        check_name(&req.consumer)?;
        let (acked, _) = store
            .history_position(peer.node_id.clone(), req.consumer.clone())
            .await?;
        after = after.max(acked);
    }
    info!(consumer = %peer.node_id, name = %req.consumer, after, "history subscriber connected");
    let (tx, rx) = mpsc::channel(BATCH);
    tokio::spawn(follow(store, peer, after, !req.no_follow, tx, shutdown));
    Ok(Box::pin(ReceiverStream::new(rx)))
}

/// Records that `peer`'s consumer `name` processed the history up to `upto`.
pub(crate) async fn ack(
    store: &Store,
    peer: &PeerInfo,
    name: &str,
    upto: u64,
) -> Result<u64, Error> {
    check_name(name)?;
    let (at, count) = store
        .history_position(peer.node_id.clone(), name.to_string())
        .await?;
    if at == 0 && count >= MAX_PER_PEER {
        warn!(peer = %peer.node_id, addr = %peer.addr, "refused history acknowledgement: too many consumers");
        return Err(Error::TooManyConsumers {
            peer: peer.node_id.clone(),
            limit: MAX_PER_PEER,
        });
    }
    Ok(store
        .ack_history(peer.node_id.clone(), name.to_string(), upto)
        .await?)
}

async fn follow(
    store: Store,
    peer: PeerInfo,
    mut after: u64,
    follow: bool,
    tx: mpsc::Sender<Result<HistoryEntry, Status>>,
    shutdown: CancellationToken,
) {
    let mut changes = store.history_watch();
    loop {
        changes.borrow_and_update();
        let batch = match store.history_after(after, BATCH).await {
            Ok(b) => b,
            Err(e) => {
                warn!(consumer = %peer.node_id, error = %e, "history read failed");
                let _ = tx.send(Err(Error::from(e).into())).await;
                return;
            }
        };
        if batch.is_empty() {
            if !follow {
                return;
            }
            tokio::select! {
                r = changes.changed() => if r.is_err() { return },
                () = tx.closed() => return,
                () = shutdown.cancelled() => return,
            }
            continue;
        }
        for (seq, kind, bytes) in batch {
            after = seq;
            // Verified before it was kept; one that does not decode is
            // sent as an empty entry, so positions stay gapless.
            let entry = match HistoryKind::from_u8(kind) {
                Some(HistoryKind::Decision) => SignedDisposition::decode(bytes.as_slice())
                    .ok()
                    .map(history_entry::Entry::Disposition),
                Some(HistoryKind::Held) => SignedHeldNotice::decode(bytes.as_slice())
                    .ok()
                    .map(history_entry::Entry::Held),
                None => None,
            };
            if tx.send(Ok(HistoryEntry { seq, entry })).await.is_err() {
                return;
            }
        }
    }
}
