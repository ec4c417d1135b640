//! Keeping trust material current while the node runs: the region CA and
//! CRL, and this node's own certificate and key, are re-read when their
//! files change (every few seconds, and at once on SIGHUP), and the CRL's
//! freshness is watched.
//!
//! A change that cannot be used (the CRL deleted, half-written, not signed
//! by the CA; a renewed key that does not match its certificate yet) keeps
//! the last good material in force and raises an alarm, once per change of
//! the files. A CRL past its `nextUpdate` raises an alarm and is tolerated
//! for the configured grace; past that, relay traffic stops (every check
//! fails) until a fresh CRL arrives, and the alarm says so.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::events::Events;
use super::said::Said;
use crate::trust::{self, Freshness, Keys, KeysReload, Trust};

/// How often the files are looked at.
pub(crate) const INTERVAL: Duration = Duration::from_secs(2);

/// What is kept current.
#[derive(Debug)]
pub(crate) struct Reload {
    pub(crate) trust: Arc<Trust>,
    pub(crate) keys: Arc<Keys>,
    pub(crate) events: Events,
    /// Rung on SIGHUP: look now rather than at the next tick.
    pub(crate) now: Arc<Notify>,
    /// The node's local time, ms east of UTC, for the times in alarms.
    pub(crate) utc_offset_ms: i64,
}

impl Reload {
    /// Runs until `shutdown`.
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(INTERVAL);
        let mut freshness = self.trust.freshness(SystemTime::now());
        if !matches!(freshness, Freshness::Fresh | Freshness::None) {
            report(&self.events, freshness, self.utc_offset_ms);
        }
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = self.now.notified() => info!("SIGHUP: looking at the CA, CRL, certificate and key now"),
                () = shutdown.cancelled() => return,
            }
            self.trust_files();
            self.own_keys();
            let now = self.trust.freshness(SystemTime::now());
            if now != freshness {
                report(&self.events, now, self.utc_offset_ms);
                freshness = now;
            }
        }
    }

    fn trust_files(&self) {
        match self.trust.reload_if_changed() {
            trust::Reload::Unchanged => {}
            trust::Reload::Reloaded => {
                let crl = self.trust.snapshot().crl;
                info!(
                    crl_number = crl.map(|c| c.number),
                    "region CA/CRL changed; reloaded"
                );
            }
            trust::Reload::Failed(e) => {
                error!(alarm = "trust-reload", error = %e, "ALARM: the CA/CRL changed but cannot be used; the previous one stays in force");
                self.events.alarm(
                    "",
                    "",
                    Said::both(
                        format!("CA/CRL cannot be used, previous one kept: {e}"),
                        format!("新的区域CA或吊销列表不能使用，仍用原有的：{e}"),
                    ),
                );
            }
        }
    }

    fn own_keys(&self) {
        match self.keys.reload_if_changed(&self.trust) {
            KeysReload::Unchanged => {}
            KeysReload::Reloaded => {
                info!(node = %self.keys.current().node_id(), "this node's certificate and key changed; the renewed ones are in use");
            }
            KeysReload::Failed(e) => {
                error!(alarm = "keys-reload", error = %e, "ALARM: this node's certificate or key changed but cannot be used; the current ones stay in use");
                self.events.alarm(
                    "",
                    "",
                    Said::both(
                        format!("renewed certificate or key not used: {e}"),
                        format!("更新的证书或密钥不能使用，仍用当前的：{e}"),
                    ),
                );
            }
        }
    }
}

/// Says what a change of freshness means.
fn report(events: &Events, freshness: Freshness, offset_ms: i64) {
    let local = |unix_s: i64| crate::clock::show(unix_s.saturating_mul(1000), offset_ms);
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
                Said::both(
                    format!("the region CRL expired at {}; relay traffic stops at {} unless a fresh CRL arrives", local(expired), local(refuse_at)),
                    format!("区域吊销列表已于 {} 过期；如无新列表，{} 起停止中继", local(expired), local(refuse_at)),
                ),
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
                Said::both(
                    format!("the region CRL expired at {} and its grace is over: relay traffic refused until a fresh CRL arrives", local(expired)),
                    format!("区域吊销列表已于 {} 过期且宽限期已过：在新列表到达前拒绝中继", local(expired)),
                ),
            );
        }
    }
}
