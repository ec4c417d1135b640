//! What goes down a child's `Forward` stream unasked: the final hub's
//! delivery receipts and the offices' decisions for items the child handed
//! over, the offices' notices (solicitations, bulletins) for every child,
//! and the region's CRL.
//!
//! When the final hub's delivery receipt for an item comes back to a relay,
//! or an office (here or above) decides on it, the node keeps it and owes
//! it to the child that handed the item over. While that child has a
//! stream open, [`run`] pushes every such receipt and decision down it
//! (`ForwardResponse.delivered`, `.disposition`), again after every
//! reconnection, until the child acknowledges it (`ForwardRequest.ack`).

use std::collections::HashSet;

use prost::Message;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tracing::warn;

use crate::proto::{
    ForwardResponse, SignedDisposition, SignedNotice, SignedReceipt, forward_response,
};
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
    let mut notice_acks = store.notices_watch();
    // Pushed on this stream and not acknowledged yet: not pushed again.
    let mut sent = HashSet::new();
    loop {
        changes.borrow_and_update();
        notice_acks.borrow_and_update();
        let pending = match store.down_for(child.clone(), BATCH).await {
            Ok(p) => p,
            Err(e) => {
                warn!(%child, error = %e, "cannot read delivery receipts to push down");
                return;
            }
        };
        let decisions = match store.down_decisions_for(child.clone(), BATCH).await {
            Ok(p) => p,
            Err(e) => {
                warn!(%child, error = %e, "cannot read decisions to push down");
                return;
            }
        };
        // Verified before they were stored; decoding cannot fail short of
        // a corrupt store, and then there is nothing to push.
        let mut down: Vec<(String, forward_response::Result)> = Vec::new();
        for (id, bytes) in pending {
            if let Ok(receipt) = SignedReceipt::decode(bytes.as_slice()) {
                down.push((id, forward_response::Result::Delivered(receipt)));
            }
        }
        // After the delivery receipts, so a child usually learns that an
        // item arrived before what became of it.
        for (id, bytes) in decisions {
            let Ok(signed) = SignedDisposition::decode(bytes.as_slice()) else {
                continue;
            };
            let Some(body) = crate::disposition::peek(&signed) else {
                continue;
            };
            let key = format!("{id}/{}/{}", body.node, body.seq);
            down.push((key, forward_response::Result::Disposition(signed)));
        }
        // Every notice version the child lacks, oldest version first per
        // notice: a child takes them only in order.
        let notices = match store.notices_for(child.clone(), BATCH).await {
            Ok(n) => n,
            Err(e) => {
                warn!(%child, error = %e, "cannot read notices to push down");
                return;
            }
        };
        for (id, version, bytes) in notices {
            if let Ok(signed) = SignedNotice::decode(bytes.as_slice()) {
                down.push((
                    format!("notice/{id}/{version}"),
                    forward_response::Result::Notice(signed),
                ));
            }
        }
        sent.retain(|key| down.iter().any(|(k, _)| k == key));
        for (key, result) in down {
            if !sent.insert(key) {
                continue;
            }
            let resp = ForwardResponse {
                result: Some(result),
            };
            if tx.send(Ok(resp)).await.is_err() {
                return;
            }
        }
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            r = notice_acks.changed() => if r.is_err() { return },
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
