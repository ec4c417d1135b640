//! One forwarder per route of the table in force: when SIGHUP changes the
//! routes, the forwarders of routes removed or changed (address, role) are
//! stopped — each is awaited, so two never serve one route — and those of
//! new or changed routes started. Items stay in the store throughout; a
//! stopped forwarder's items in flight are sent again by the next.

use std::collections::HashMap;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::Forwarder;
use crate::config::UpstreamConfig;

struct Running {
    route: UpstreamConfig,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

fn same(a: &UpstreamConfig, b: &UpstreamConfig) -> bool {
    a.node_id == b.node_id && a.addr == b.addr && a.role == b.role
}

/// Runs a forwarder (made by `make`) for every route in `table`, following
/// its changes, until `shutdown`; then stops them all and waits for them.
pub(crate) async fn supervise(
    make: impl Fn(UpstreamConfig) -> Forwarder,
    mut table: watch::Receiver<Vec<UpstreamConfig>>,
    shutdown: CancellationToken,
) {
    let mut running: HashMap<String, Running> = HashMap::new();
    loop {
        let want = table.borrow_and_update().clone();
        let stale: Vec<String> = running
            .iter()
            .filter(|(_, r)| !want.iter().any(|u| same(u, &r.route)))
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            if let Some(r) = running.remove(&id) {
                info!(upstream = %id, addr = %r.route.addr, "route removed or changed: stopping its forwarder");
                r.stop.cancel();
                let _ = r.task.await;
            }
        }
        for route in want {
            if running.contains_key(&route.node_id) {
                continue;
            }
            let stop = shutdown.child_token();
            let task = tokio::spawn(make(route.clone()).run(stop.clone()));
            running.insert(route.node_id.clone(), Running { route, stop, task });
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            changed = table.changed() => if changed.is_err() { break },
        }
    }
    for (_, r) in running {
        r.stop.cancel();
        let _ = r.task.await;
    }
}
