//! What goes down a child's `Forward` stream unasked: the final hub's
//! delivery receipts for items the child handed over, and the region's CRL.
//!
//! When the final hub's delivery receipt for an item comes back to a relay,
//! the relay keeps it and owes it to the child that handed the item over.
//! While that child has a stream open, [`run`] pushes every such receipt
//! down it (`ForwardResponse.delivered`), again after every reconnection,
//! until the child acknowledges it (`ForwardRequest.ack`).

use std::collections::HashSet;

use prost::Message;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tracing::warn;

use crate::proto::{ForwardResponse, SignedReceipt, forward_response};
use crate::store::Store;
use crate::trust::Trust;

/// Most delivery receipts pushed down, or acknowledged, at once.
pub(crate) const BATCH: usize = 256;

/// Pushes the delivery receipts waiting for `child` down `tx` until the
/// stream closes or the node stops.
pub(crate) async fn run(
    store: Store,
    child: String,
    tx: mpsc::Sender<Result<ForwardResponse, Status>>,
    shutdown: CancellationToken,
) {
    let mut changes = store.down_watch();
    // Pushed on this stream and not acknowledged yet: not pushed again.
    let mut sent = HashSet::new();
    loop {
        changes.borrow_and_update();
        let pending = match store.down_for(child.clone(), BATCH).await {
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
            // Verified before it was stored; decoding cannot fail short of
            // a corrupt store, and then there is nothing to push.
            let Ok(receipt) = SignedReceipt::decode(bytes.as_slice()) else {
                continue;
            };
            let resp = ForwardResponse {
                result: Some(forward_response::Result::Delivered(receipt)),
            };
            if tx.send(Ok(resp)).await.is_err() {
                return;
            }
        }
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            () = tx.closed() => return,
            () = shutdown.cancelled() => return,
        }
    }
}

/// Pushes the CRL in force down `tx` when the stream opens and whenever it
/// changes, until the stream closes or the node stops: a CRL that reaches
/// any node reaches every node below it.
pub(crate) async fn crl(
    trust: std::sync::Arc<Trust>,
    tx: mpsc::Sender<Result<ForwardResponse, Status>>,
    shutdown: CancellationToken,
) {
    let mut changes = trust.changes();
    loop {
        changes.borrow_and_update();
        if let Some(der) = trust.crl_der() {
            let resp = ForwardResponse {
                result: Some(forward_response::Result::Crl(der)),
            };
            if tx.send(Ok(resp)).await.is_err() {
                return;
            }
        }
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            () = tx.closed() => return,
            () = shutdown.cancelled() => return,
        }
    }
}
