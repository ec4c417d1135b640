//! What a metrics scrape reads of a running node: the store's queues,
//! partial uploads and free space, and each route's state.

use std::sync::Arc;

use futures::FutureExt;
use tracing::warn;

use super::routes::Routes;
use crate::clock::Clock;
use crate::metrics::{Snapshot, Source};
use crate::store::Store;

/// The snapshot source the metrics endpoint calls on each scrape.
pub(crate) fn source(store: Store, routes: Arc<Routes>, clock: Clock) -> Source {
    Arc::new(move || {
        let (store, routes) = (store.clone(), routes.clone());
        async move {
            let gauges = match store.gauges(clock.now_ms()).await {
                Ok(g) => g,
                Err(e) => {
                    // The counters are still worth serving.
                    warn!(error = %e, "metrics scrape could not read the store");
                    crate::store::StoreGauges::default()
                }
            };
            Snapshot {
                queues: gauges.queues,
                routes: routes
                    .report()
                    .into_iter()
                    .map(|(name, _, up, _)| (name, up))
                    .collect(),
                upload_bytes: gauges.upload_bytes,
                free_bytes: gauges.free_bytes,
            }
        }
        .boxed()
    })
}
