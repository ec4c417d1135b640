//! The deadline watch: nothing overdue goes unnoticed.
//!
//! It sleeps until the earliest deadline among unsettled items (or until
//! the queue or a route changes), then marks every item past its deadline
//! overdue: an alarm, a counter, and escalation to the alternate and
//! skip-level routes. Items are never dropped; the forwarders keep retrying
//! them on every route they are queued on. When no primary route is
//! reachable, items are escalated at once rather than at their deadline,
//! since the node can already tell the deadline will be missed. All of it
//! is in the store, so a restarted node resumes where it was.

use std::sync::Arc;
use std::time::Duration;

use tracing::{error, warn};

use super::Shared;
use crate::class::Class;
use crate::config::Role;
use crate::envelope::now_ms;
use crate::proto::EventKind;

/// Items handled per pass; the next pass follows at once if there are more.
const BATCH: usize = 256;
/// Longest sleep, so a route going down is noticed without an event for it.
const MAX_NAP: Duration = Duration::from_secs(1);

/// Whether every primary route has been tried and is down.
fn primaries_down(shared: &Shared) -> bool {
    let up = shared.routes_up.lock().unwrap_or_else(|e| e.into_inner());
    shared
        .cfg
        .upstream
        .iter()
        .filter(|u| u.role == Role::Primary)
        .all(|u| up.get(&u.node_id) == Some(&false))
}

/// Runs until shutdown.
pub(crate) async fn run(shared: Arc<Shared>) {
    let escalation = shared.escalation_routes();
    let mut queue = shared.store.queue_watch();
    // Where early escalation got to while the primaries are down.
    let mut early_from = (i64::MIN, 0u64);
    loop {
        queue.borrow_and_update();
        if !primaries_down(&shared) {
            early_from = (i64::MIN, 0);
        }
        let full = match pass(&shared, &escalation, &mut early_from).await {
            Ok(full) => full,
            Err(e) => {
                error!(error = %e, "deadline watch cannot read the store; retrying");
                false
            }
        };
        if full {
            continue;
        }
        let nap = match shared.store.next_deadline().await {
            Ok(Some(at)) => {
                Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0)).min(MAX_NAP)
            }
            _ => MAX_NAP,
        };
        tokio::select! {
            () = tokio::time::sleep(nap) => {}
            r = queue.changed() => if r.is_err() { return },
            () = shared.shutdown.cancelled() => return,
        }
    }
}

/// One pass; returns whether it stopped at the batch limit.
async fn pass(
    shared: &Shared,
    escalation: &[String],
    early_from: &mut (i64, u64),
) -> Result<bool, crate::store::Error> {
    let now = now_ms();
    let due = shared.store.due(now, BATCH).await?;
    let mut full = due.len() == BATCH;
    for (id, rec) in due {
        let class = Class::from_lane(u8::try_from(rec.lane).unwrap_or(2));
        let done = shared
            .store
            .escalate(id.clone(), escalation.to_vec(), true)
            .await?;
        if done.newly_overdue {
            let late = now - rec.deadline_ms;
            error!(alarm = "overdue", %id, class = ?class, late_ms = late, routes = ?rec.pending_routes,
                "ALARM: no receipt by the deadline; escalating, and retrying until receipted");
            shared.emit(
                EventKind::Overdue,
                &id,
                class,
                "",
                format!("no receipt {late} ms after the deadline"),
            );
        }
        if !done.added.is_empty() {
            shared.emit(
                EventKind::Escalated,
                &id,
                class,
                "",
                format!("now also sent to {}", done.added.join(", ")),
            );
        }
    }
    // Early escalation: with every primary down, waiting for the deadline
    // would only make the item late. Emergencies are on every route already.
    if !escalation.is_empty() && primaries_down(shared) {
        let waiting = shared.store.due_from(*early_from, i64::MAX, BATCH).await?;
        full |= waiting.len() == BATCH;
        for (id, rec) in waiting {
            *early_from = (rec.deadline_ms, rec.seq.saturating_add(1));
            if rec.escalated_ms != 0 || rec.lane == 0 {
                continue;
            }
            let done = shared
                .store
                .escalate(id.clone(), escalation.to_vec(), false)
                .await?;
            if !done.added.is_empty() {
                let class = Class::from_lane(u8::try_from(rec.lane).unwrap_or(2));
                warn!(%id, class = ?class, routes = ?done.added, "no primary route reachable; escalating before the deadline");
                shared.emit(
                    EventKind::Escalated,
                    &id,
                    class,
                    "",
                    format!(
                        "no primary route reachable; now also sent to {}",
                        done.added.join(", ")
                    ),
                );
            }
        }
    }
    Ok(full)
}
