//! The forwarder: one per route, keeping a long-lived `Relay.Forward`
//! stream to its upstream (and a second one for urgent items, on a
//! connection of their own). It works in both directions:
//! - **up**: items in schedule order (emergency lane first, earliest
//!   deadline first) and their attachments' chunks ([`session`], [`pace`],
//!   [`chunks`]);
//! - **down**: the upstream's answers — receipts, verified (CA, signature,
//!   receiver, item, digest) before they are stored, refusals, requests for
//!   chunks — and, from a relay, the final hub's delivery receipts for items
//!   it took from us earlier ([`delivery`]).
//!
//! On any failure it reconnects with capped exponential backoff and jitter
//! ([`backoff`]); whatever had no receipt is sent again, and receivers
//! deduplicate by id, so the effect is exactly once. `supervise` keeps one
//! forwarder per route of the table in force, as SIGHUP changes it.

mod backoff;
pub(crate) mod chunks;
mod delivery;
pub(crate) mod early;
pub(crate) mod pace;
mod session;
mod supervise;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::events::Events;
use super::routes::Routes;
use super::said::Said;
use crate::config::UpstreamConfig;
use crate::proto::EventKind;
use crate::store::{self, Store};
use crate::telemetry::Throttle;
use crate::tls::connect::ConnectOptions;
use crate::tls::{Refused, TlsError};
use crate::trust::{Keys, Trust};
use backoff::Backoff;
use session::Session;
pub(crate) use supervise::supervise;

/// The shortest wait between reconnections.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// How often an outage is logged while it lasts.
const OUTAGE_LOG_EVERY: Duration = Duration::from_secs(60);
/// Items taken off a refusing route per store write.
const REFUSE_BATCH: usize = 512;

/// Why a session with the upstream ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionEnd {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("connect: {}", crate::telemetry::chain(.0))]
    Connect(tonic::transport::Error),
    #[error("stream: {}: {}", .0.code(), .0.message())]
    Stream(tonic::Status),
    #[error("stream: {0}")]
    Closed(&'static str),
    #[error("upstream is busy: item {id}: {code:?}: {message}")]
    Busy {
        id: String,
        code: tonic::Code,
        message: String,
    },
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("the region CA or CRL, or this node's certificate, changed: reconnecting under it")]
    TrustChanged,
    #[error("shutting down")]
    Shutdown,
}

/// Sends queued items to one upstream route.
#[derive(Debug)]
pub(crate) struct Forwarder {
    pub(crate) route: UpstreamConfig,
    pub(crate) store: Store,
    pub(crate) keys: Arc<Keys>,
    pub(crate) trust: Arc<Trust>,
    pub(crate) routes: Arc<Routes>,
    pub(crate) events: Events,
    /// Routine items in flight at most (urgent ones get room beyond).
    pub(crate) window: usize,
    /// Largest message either way.
    pub(crate) max_message: usize,
    pub(crate) max_backoff: Duration,
    /// Connect timeout and keepalive pings.
    pub(crate) connect: ConnectOptions,
    /// Whose solicitations and bulletins this node takes (`office.publishers`).
    pub(crate) publishers: Arc<[String]>,
    /// The node's local time, ms east of UTC (for messages).
    pub(crate) utc_offset_ms: i64,
}

impl Forwarder {
    /// The route's name: its upstream's node id.
    fn name(&self) -> &str {
        &self.route.node_id
    }

    /// Runs sessions until `shutdown`.
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(MIN_BACKOFF, self.max_backoff);
        // An outage is logged when it starts, then once a minute with how
        // many attempts failed since, so it stays visible without flooding.
        let mut outage = Throttle::new(OUTAGE_LOG_EVERY);
        loop {
            let (end, progressed) = match Session::open(&self, &shutdown).await {
                Ok((session, responses)) => session.run(responses, &shutdown).await,
                Err(end) => (end, false),
            };
            if matches!(end, SessionEnd::Shutdown) {
                self.set_up(false, &end.to_string());
                return;
            }
            if matches!(end, SessionEnd::TrustChanged) {
                // Not a failure: the next session checks the upstream, and
                // is checked by it, under the new CA and CRL.
                info!(upstream = %self.name(), "{end}");
                continue;
            }
            self.set_up(false, &end.to_string());
            if progressed {
                backoff.reset();
                // A new outage is logged as soon as it starts.
                outage = Throttle::new(OUTAGE_LOG_EVERY);
            }
            if let Err(e) = self.on_refused(&end).await {
                error!(upstream = %self.name(), error = %e, "cannot mark items refused");
            }
            let delay = backoff.next_delay();
            let (up, addr) = (self.name(), &self.route.addr);
            match outage.allow() {
                Some(failed) => {
                    warn!(upstream = %up, %addr, error = %end, failed_since_last_line = failed, "upstream unavailable; items stay queued and are retried");
                }
                None => {
                    debug!(upstream = %up, %addr, error = %end, retry_in_ms = delay.as_millis() as u64, "upstream still unavailable");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// The upstream refused this node's certificate for good (revoked,
    /// expired, not the region's): the items queued on this route get that
    /// answer — marked refused where no other route is left, with an alarm
    /// — instead of waiting in silence. The route is still tried, so that
    /// a renewed certificate gets new items through.
    async fn on_refused(&self, end: &SessionEnd) -> Result<(), store::Error> {
        let SessionEnd::Connect(e) = end else {
            return Ok(());
        };
        let Some(refused) = Refused::find(e).filter(|r| r.is_verdict()) else {
            return Ok(());
        };
        let why = refused.to_string();
        let route = self.name();
        let mut total = 0;
        loop {
            let ids = self
                .store
                .refuse_route(route.to_string(), why.clone(), REFUSE_BATCH)
                .await?;
            for id in &ids {
                self.events.emit(
                    EventKind::Refused,
                    id,
                    None,
                    route,
                    Said::both(format!("{route}: {why}"), format!("{route} 拒收：{why}")),
                );
            }
            total += ids.len();
            if ids.len() < REFUSE_BATCH {
                break;
            }
        }
        if total > 0 {
            error!(alarm = "refused", upstream = %route, items = total, why = %why, "ALARM: the upstream refuses this node; the items queued on this route are marked refused");
            self.events.alarm(
                "",
                route,
                Said::both(
                    format!("{why}: {total} queued items marked refused"),
                    format!("{why}：排队中的 {total} 条信息已标为被拒收"),
                ),
            );
        }
        Ok(())
    }

    /// Records whether the route is up, telling watchers on a change.
    fn set_up(&self, up: bool, why: &str) {
        let route = self.name();
        if self.routes.set_up(route, up) {
            let (kind, msg) = if up {
                (
                    EventKind::RouteUp,
                    Said::both(
                        format!("route {route} is up"),
                        format!("上报路由 {route} 已连通"),
                    ),
                )
            } else {
                (
                    EventKind::RouteDown,
                    Said::both(
                        format!("route {route} is down: {why}"),
                        format!("上报路由 {route} 中断：{why}"),
                    ),
                )
            };
            self.events.emit(kind, "", None, route, msg);
        }
    }
}
