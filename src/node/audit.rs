//! The custody log's checkpoints: every so often, if the log grew, this
//! node signs its head with its key and keeps the signed checkpoint beside
//! the log. The records themselves are written by the store, in the same
//! transaction as each custody change (see [`crate::audit`]).

use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::audit::{self, Checkpoint};
use crate::clock::Clock;
use crate::store::Store;
use crate::trust::Keys;

/// Signs a checkpoint every `every` (if the log grew), until `shutdown`;
/// with `retain`, then prunes records older than that (through a
/// checkpoint, see [`Store::prune_audit`]).
pub(crate) async fn checkpoints(
    store: Store,
    keys: Arc<Keys>,
    clock: Clock,
    every: Duration,
    retain: Option<Duration>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    let mut signed_up_to = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        if let Some(retain) = retain {
            prune(&store, &clock, retain).await;
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

async fn prune(store: &Store, clock: &Clock, retain: Duration) {
    let keep_after = clock
        .now_ms()
        .saturating_sub(i64::try_from(retain.as_millis()).unwrap_or(i64::MAX));
    match store.prune_audit(keep_after).await {
        Ok(Some(seq)) => info!(seq, "custody log pruned through a signed checkpoint"),
        Ok(None) => {}
        Err(e) => warn!(error = %e, "cannot prune the custody log"),
    }
}
