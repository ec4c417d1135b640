//! The deadline watch: nothing overdue goes unnoticed.
//!
//! It sleeps until the earliest deadline among unsettled items (or until
//! the queue changes), then marks every item past its deadline overdue: an
//! alarm, a counter, and escalation to the alternate and skip-level routes.
//! Items are never dropped; the forwarders keep retrying them on every
//! route they are queued on. When no primary route is reachable, items are
//! escalated at once rather than at their deadline, since the node can
//! already tell the deadline will be missed. All of it is in the store, so
//! a restarted node resumes where it was.
//!
//! Time comes from a [`Clock`], so the rules run under tokio's paused clock
//! in the unit tests below.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use super::events::Events;
use super::routes::Routes;
use super::said::Said;
use crate::class::Class;
use crate::clock::{Clock, Steady};
use crate::proto::{EventKind, HeldNotice};
use crate::store::{self, ItemRecord, Store};
use crate::trust::Keys;
use prost::Message;

/// Items handled per pass; the next pass follows at once if there are more.
const BATCH: usize = 256;
/// Longest sleep, so a route going down is noticed without an event for it.
const MAX_NAP: Duration = Duration::from_secs(1);

/// Watches the deadlines of the items this node forwards.
#[derive(Debug)]
pub(crate) struct DeadlineWatch {
    store: Store,
    routes: Arc<Routes>,
    events: Events,
    clock: Clock,
    /// The clock read so that a jump of the system clock neither marks
    /// items overdue nor hides late ones.
    steady: Steady,
    /// Where early escalation got to while the primaries are down: the
    /// (deadline, sequence) key to go on from.
    early_from: (i64, u64),
    /// This node's keys, to sign held notices (none in unit tests).
    keys: Option<Arc<Keys>>,
    /// The node's local time, ms east of UTC, for the times in held
    /// notices' texts (read by people at the hub).
    utc_offset_ms: i64,
}

fn class_of(rec: &ItemRecord) -> Option<Class> {
    Class::from_lane(rec.lane())
}

impl DeadlineWatch {
    pub(crate) fn new(store: Store, routes: Arc<Routes>, events: Events, clock: Clock) -> Self {
        Self {
            store,
            routes,
            events,
            clock,
            steady: Steady::new(),
            early_from: (i64::MIN, 0),
            keys: None,
            utc_offset_ms: 0,
        }
    }

    /// Writes the times in held notices' texts in this zone (ms east of UTC).
    pub(crate) fn with_utc_offset(mut self, offset_ms: i64) -> Self {
        self.utc_offset_ms = offset_ms;
        self
    }

    /// Signs a held notice for every item that misses its deadline while
    /// still here, and sends it up every route.
    pub(crate) fn with_keys(mut self, keys: Arc<Keys>) -> Self {
        self.keys = Some(keys);
        self
    }

    /// Tells the offices above that `id` is held past its deadline: here,
    /// or at `stuck_at`, the upstream that took custody of it and has not
    /// delivered it.
    async fn notify_held(
        &self,
        id: &str,
        rec: &ItemRecord,
        stuck_at: Option<&str>,
    ) -> Result<(), store::Error> {
        let Some(keys) = &self.keys else {
            return Ok(());
        };
        // The record's own copy: the deadline watcher reads no report.
        let brief = rec.brief();
        let why = if let Some(at) = stuck_at {
            format!(
                "in custody at {at} since {}, not delivered",
                crate::clock::show(rec.receipted_ms, self.utc_offset_ms)
            )
        } else if self.routes.primaries_down() {
            format!(
                "no primary route reachable (sending on {})",
                rec.pending_routes.join(", ")
            )
        } else {
            format!("not yet taken by {}", rec.pending_routes.join(", "))
        };
        let signed = crate::held::issue(
            &keys.current(),
            HeldNotice {
                item_id: id.to_string(),
                origin: brief.origin,
                priority: brief.priority,
                since_unix_ms: rec.stored_ms,
                deadline_unix_ms: rec.deadline_ms,
                why,
                at_unix_ms: self.clock.now_ms(),
                report_sha256: rec.sha256.clone(),
                stuck_at: stuck_at.unwrap_or_default().to_string(),
                ..Default::default()
            },
        );
        let me = keys.current().node_id().to_string();
        // Our own: always kept (the bound is on what children send).
        self.store
            .hold(
                id.to_string(),
                me,
                signed.encode_to_vec(),
                self.routes.all(),
                u64::MAX,
            )
            .await?;
        Ok(())
    }

    /// Now, for deadlines; a jump of the system clock is alarmed once.
    fn now_ms(&mut self) -> i64 {
        let reading = self.steady.read(self.clock.now_ms());
        if let Some(jump) = reading.jumped {
            error!(
                alarm = "clock-jump",
                jump_ms = jump,
                "ALARM: the system clock jumped; deadlines keep to the monotonic clock until it agrees again (or for an hour)"
            );
            self.events.alarm(
                "",
                "",
                Said::both(
                    format!(
                        "the system clock jumped by {jump} ms; deadlines keep to the monotonic clock"
                    ),
                    format!("系统时钟跳变 {jump} 毫秒；时限仍按单调时钟计算"),
                ),
            );
        }
        reading.now_ms
    }

    /// Runs until `shutdown`.
    pub(crate) async fn run(mut self, shutdown: CancellationToken) {
        let mut queue = self.store.queue_watch();
        loop {
            queue.borrow_and_update();
            let more = match self.pass().await {
                Ok(more) => more,
                Err(e) => {
                    error!(error = %e, "deadline watch cannot read the store; retrying");
                    false
                }
            };
            if more {
                continue;
            }
            let nap = self.nap().await;
            tokio::select! {
                () = tokio::time::sleep(nap) => {}
                r = queue.changed() => if r.is_err() { return },
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// How long to sleep before the next pass: until the earliest deadline,
    /// at most [`MAX_NAP`].
    async fn nap(&mut self) -> Duration {
        match self.store.next_deadline().await {
            Ok(Some(at)) => {
                let wait = at.saturating_sub(self.now_ms());
                Duration::from_millis(u64::try_from(wait).unwrap_or(0)).min(MAX_NAP)
            }
            _ => MAX_NAP,
        }
    }

    /// One pass: marks what is past its deadline overdue and escalates it,
    /// and escalates early while every primary is down. Returns whether it
    /// stopped at the batch limit (so another pass should follow at once).
    pub(crate) async fn pass(&mut self) -> Result<bool, store::Error> {
        if !self.routes.primaries_down() {
            self.early_from = (i64::MIN, 0);
        }
        let full = self.mark_overdue().await?;
        let early = self.escalate_early().await?;
        Ok(full || early)
    }

    async fn mark_overdue(&mut self) -> Result<bool, store::Error> {
        let now = self.now_ms();
        let escalation = self.routes.escalation();
        let due = self.store.due(now, BATCH).await?;
        let full = due.len() == BATCH;
        for (id, rec) in due {
            let class = class_of(&rec);
            let done = self
                .store
                .escalate(id.clone(), escalation.clone(), true)
                .await?;
            if done.newly_overdue {
                let late = now.saturating_sub(rec.deadline_ms);
                let held_by = rec
                    .route_receipts
                    .first()
                    .map(|r| r.route.clone())
                    .filter(|_| rec.state() == Some(store::RecordState::Receipted));
                let since = crate::clock::show(rec.receipted_ms, self.utc_offset_ms);
                let message = if let Some(holder) = &held_by {
                    error!(alarm = "overdue", %id, class = ?class, late_ms = late, %holder,
                        "ALARM: in custody upstream but not delivered by the deadline");
                    self.notify_held(&id, &rec, Some(holder)).await?;
                    Said::both(
                        format!(
                            "in custody at {holder} since {since}, not delivered to the final hub {late} ms after the deadline"
                        ),
                        format!(
                            "自 {since} 起由 {holder} 保管，超过时限 {late} 毫秒仍未送达最终枢纽"
                        ),
                    )
                } else {
                    error!(alarm = "overdue", %id, class = ?class, late_ms = late, routes = ?rec.pending_routes,
                        "ALARM: no receipt by the deadline; escalating, and retrying until receipted");
                    self.notify_held(&id, &rec, None).await?;
                    Said::both(
                        format!("no receipt {late} ms after the deadline"),
                        format!("超过时限 {late} 毫秒仍无回执"),
                    )
                };
                self.events
                    .emit(EventKind::Overdue, &id, class, "", message);
            }
            if !done.added.is_empty() {
                self.events.emit(
                    EventKind::Escalated,
                    &id,
                    class,
                    "",
                    Said::both(
                        format!("now also sent to {}", done.added.join(", ")),
                        format!("已同时发往 {}", done.added.join("、")),
                    ),
                );
            }
        }
        Ok(full)
    }

    /// With every primary down, waiting for the deadline would only make an
    /// item late: it goes to the other routes now. Emergencies are on every
    /// route already.
    async fn escalate_early(&mut self) -> Result<bool, store::Error> {
        let escalation = self.routes.escalation();
        if escalation.is_empty() || !self.routes.primaries_down() {
            return Ok(false);
        }
        let waiting = self
            .store
            .due_from(self.early_from, i64::MAX, BATCH)
            .await?;
        let full = waiting.len() == BATCH;
        for (id, rec) in waiting {
            self.early_from = (rec.deadline_ms, rec.seq.saturating_add(1));
            // Only what is still here: an item in custody above is the
            // upstream's to move until its deadline.
            let here = rec.state() == Some(store::RecordState::Queued);
            if rec.escalated_ms != 0 || rec.lane() == 0 || !here {
                continue;
            }
            let done = self
                .store
                .escalate(id.clone(), escalation.clone(), false)
                .await?;
            if !done.added.is_empty() {
                let class = class_of(&rec);
                warn!(%id, class = ?class, routes = ?done.added, "no primary route reachable; escalating before the deadline");
                self.events.emit(
                    EventKind::Escalated,
                    &id,
                    class,
                    "",
                    Said::both(
                        format!(
                            "no primary route reachable; now also sent to {}",
                            done.added.join(", ")
                        ),
                        format!("主路由均不通，已同时发往 {}", done.added.join("、")),
                    ),
                );
            }
        }
        Ok(full)
    }
}

#[cfg(test)]
mod tests;
