//! Keeping the trust material current while the node runs: the CA and CRL
//! are re-read when their files change, and the CRL's freshness is watched.
//!
//! A change that cannot be used (the CRL deleted, half-written, not signed
//! by the CA) keeps the last good view in force and raises an alarm, once
//! per change of the files. A CRL past its `nextUpdate` raises an alarm and
//! is tolerated for the configured grace; past that, relay traffic stops
//! (every check fails) until a fresh CRL arrives, and the alarm says so.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::events::Events;
use crate::trust::{Freshness, Reload, Trust};

/// How often the files are looked at.
pub(crate) const INTERVAL: Duration = Duration::from_secs(2);

/// Runs until `shutdown`.
pub(crate) async fn run(trust: Arc<Trust>, events: Events, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(INTERVAL);
    let mut freshness = trust.freshness(SystemTime::now());
    if !matches!(freshness, Freshness::Fresh | Freshness::None) {
        report(&events, freshness);
    }
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        match trust.reload_if_changed() {
            Reload::Unchanged => {}
            Reload::Reloaded => {
                let crl = trust.snapshot().crl;
                info!(
                    crl_number = crl.map(|c| c.number),
                    "region CA/CRL changed; reloaded"
                );
            }
            Reload::Failed(e) => {
                error!(alarm = "trust-reload", error = %e, "ALARM: the CA/CRL changed but cannot be used; the previous one stays in force");
                events.alarm(
                    "",
                    "",
                    format!("CA/CRL cannot be used, previous one kept: {e}"),
                );
            }
        }
        let now = trust.freshness(SystemTime::now());
        if now != freshness {
            report(&events, now);
            freshness = now;
        }
    }
}

/// Says what a change of freshness means.
fn report(events: &Events, freshness: Freshness) {
    match freshness {
        Freshness::None | Freshness::Fresh => info!("the region CRL is fresh"),
        Freshness::Grace { expired, refuse_at } => {
            error!(
                alarm = "crl-expired",
                expired,
                refuse_at,
                "ALARM: the region CRL is past its nextUpdate; tolerated until the grace ends, then relay traffic stops"
            );
            events.alarm(
                "",
                "",
                format!("the region CRL expired at {expired} (Unix s); relay traffic stops at {refuse_at} unless a fresh CRL arrives"),
            );
        }
        Freshness::Stale { expired } => {
            error!(
                alarm = "crl-stale",
                expired,
                "ALARM: the region CRL is past its grace; relay traffic is refused until a fresh CRL arrives"
            );
            events.alarm(
                "",
                "",
                format!("the region CRL expired at {expired} (Unix s) and its grace is over: relay traffic refused until a fresh CRL arrives"),
            );
        }
    }
}
