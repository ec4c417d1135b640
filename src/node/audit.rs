//! The custody log's checkpoints: every so often, if the log grew, this
//! node signs its head with its key and keeps the signed checkpoint beside
//! the log. The records themselves are written by the store, in the same
//! transaction as each custody change (see [`crate::audit`]).

use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::audit::{self, Checkpoint};
use crate::clock::Clock;
use crate::store::Store;
use crate::trust::Keys;

/// Signs a checkpoint every `every` (if the log grew), until `shutdown`.
pub(crate) async fn checkpoints(
    store: Store,
    keys: Arc<Keys>,
    clock: Clock,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    let mut signed_up_to = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let head = match store.audit_head().await {
            Ok(Some(head)) => head,
            Ok(None) => continue,
            Err(e) => {
                warn!(error = %e, "cannot read the custody log's head");
                continue;
            }
        };
        if signed_up_to == Some(head.0) {
            continue;
        }
        let identity = keys.current();
        let checkpoint = Checkpoint {
            node: identity.node_id().to_string(),
            seq: head.0,
            head_sha256: head.1.to_vec(),
            at_unix_ms: clock.now_ms(),
        };
        let signed = audit::sign(&checkpoint, &identity);
        match store.put_checkpoint(head.0, signed.encode_to_vec()).await {
            Ok(()) => {
                debug!(seq = head.0, "custody log checkpoint signed");
                signed_up_to = Some(head.0);
            }
            Err(e) => warn!(error = %e, "cannot keep the custody log's checkpoint"),
        }
    }
}
