//! SIGHUP: the configuration file read again and compared, field by field,
//! with the one in force. What can change while the node runs is applied
//! at once; what cannot is named in the log as needing a restart. A file
//! that does not load or validate changes nothing (the caller logs why).
//!
//! Applied without a restart: the routes (`[[upstream]]`: forwarders of
//! changed routes are restarted, items queued on a removed route go to
//! the routes their class starts on — but a hub does not become a
//! forwarding node, nor the reverse), the class deadlines
//! (`deadlines.*_secs`, for items submitted from then on), the operators
//! (`[[operators]]`, `operator.allow_unlisted`), and the office's
//! `counties`, `outlets`, `scoring` and `targets`. The CA, CRL,
//! certificate and key files are re-read by `reload` (on SIGHUP too);
//! their *paths*, like every other field (listeners, limits, review,
//! publishers, `utc_offset`, the log format), are taken at start only.

use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tracing::{error, info, warn};

use super::live::Live;
use super::who::Staff;

use super::routes::Routes;
use crate::config::{Deadlines, NodeConfig, OfficeConfig, UpstreamConfig};
use crate::score::OfficeRules;

/// Fields (dotted, as in the file) that take effect without a restart.
const LIVE: &[&str] = &[
    // Not between none and some: a hub does not become a forwarding node.
    "upstream",
    "deadlines.emergency_secs",
    "deadlines.bad_news_secs",
    "deadlines.routine_secs",
    "operators",
    "operator.allow_unlisted",
    "office.counties",
    "office.outlets",
    "office.scoring",
    "office.targets",
];

/// What a reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconfigured {
    /// Fields changed and now in force.
    pub applied: Vec<String>,
    /// Fields changed in the file that take effect only after a restart.
    pub need_restart: Vec<String>,
    /// Routes no longer configured: what is queued on them goes elsewhere.
    pub removed_routes: Vec<String>,
}

/// The settings a running node takes from a new configuration, and the
/// configuration in force.
#[derive(Debug)]
pub(crate) struct Reconfigure {
    pub(crate) in_force: Mutex<NodeConfig>,
    pub(crate) deadlines: Live<Deadlines>,
    pub(crate) staff: Staff,
    pub(crate) rules: Live<OfficeRules>,
    pub(crate) office: Live<OfficeConfig>,
    /// The routes, replaced when `upstream` changes.
    pub(crate) routes: Arc<Routes>,
    /// The route table the forwarders follow (`forward::supervise`).
    pub(crate) upstream: watch::Sender<Vec<UpstreamConfig>>,
}

impl Reconfigure {
    /// Applies what can be applied of `new` (already loaded and validated)
    /// and logs what changed and what needs a restart.
    ///
    /// # Errors
    /// The configuration that would be in force (the running one with the
    /// new live fields) does not validate — e.g. review is configured and
    /// the new operators have no reviewer; nothing is changed.
    pub(crate) fn apply(
        &self,
        new: &NodeConfig,
    ) -> Result<Reconfigured, crate::config::ConfigError> {
        let mut in_force = self.in_force.lock().unwrap_or_else(|e| e.into_inner());
        let changed = diff(&in_force, new);
        // A hub (no routes) and a forwarding node differ in more than routes.
        let kind_changes = in_force.upstream.is_empty() != new.upstream.is_empty();
        let (applied, need_restart): (Vec<String>, Vec<String>) = changed
            .into_iter()
            .partition(|f| is_live(f) && !(kind_changes && f == "upstream"));
        let mut next = in_force.clone();
        if !kind_changes {
            next.upstream.clone_from(&new.upstream);
        }
        next.deadlines.emergency_secs = new.deadlines.emergency_secs;
        next.deadlines.bad_news_secs = new.deadlines.bad_news_secs;
        next.deadlines.routine_secs = new.deadlines.routine_secs;
        next.operators.clone_from(&new.operators);
        next.operator.allow_unlisted = new.operator.allow_unlisted;
        next.office.counties.clone_from(&new.office.counties);
        next.office.outlets.clone_from(&new.office.outlets);
        next.office.scoring.clone_from(&new.office.scoring);
        next.office.targets.clone_from(&new.office.targets);
        if let Err(e) = next.validate() {
            error!(error = %e, "SIGHUP: the new configuration cannot be combined with the settings that need a restart; nothing changed");
            return Err(e);
        }
        let removed_routes: Vec<String> = in_force
            .upstream
            .iter()
            .filter(|old| !next.upstream.iter().any(|u| u.node_id == old.node_id))
            .map(|u| u.node_id.clone())
            .collect();
        if !applied.is_empty() {
            if applied.iter().any(|f| f == "upstream") {
                self.routes.replace(&next.upstream);
                self.upstream.send_replace(next.upstream.clone());
            }
            self.deadlines.set(next.deadlines.clone());
            self.staff.update(&next);
            self.rules.set(next.office.rules());
            self.office.set(next.office.clone());
            *in_force = next;
        }
        let outcome = Reconfigured {
            removed_routes: if applied.iter().any(|f| f == "upstream") {
                removed_routes
            } else {
                Vec::new()
            },
            applied,
            need_restart,
        };
        if outcome.applied.is_empty() && outcome.need_restart.is_empty() {
            info!("SIGHUP: configuration unchanged");
        } else if !outcome.applied.is_empty() {
            info!(applied = ?outcome.applied, "SIGHUP: configuration reloaded; these changes are in force");
        }
        if !outcome.need_restart.is_empty() {
            warn!(need_restart = ?outcome.need_restart, "SIGHUP: these changes take effect only after a restart; until then the values in force stay");
        }
        Ok(outcome)
    }
}

/// Whether a changed field takes effect without a restart.
fn is_live(field: &str) -> bool {
    LIVE.iter().any(|l| {
        field == *l
            || field
                .strip_prefix(l)
                .is_some_and(|r| r.starts_with(['.', '[']))
    })
}

/// The dotted names of the fields that differ between `a` and `b`; arrays
/// are compared whole (`operators`, `upstream`).
pub(crate) fn diff(a: &NodeConfig, b: &NodeConfig) -> Vec<String> {
    let (Ok(a), Ok(b)) = (toml::Value::try_from(a), toml::Value::try_from(b)) else {
        return vec!["(the whole file)".into()];
    };
    let mut out = Vec::new();
    walk("", &a, &b, &mut out);
    out
}

fn walk(at: &str, a: &toml::Value, b: &toml::Value, out: &mut Vec<String>) {
    match (a, b) {
        (toml::Value::Table(ta), toml::Value::Table(tb)) => {
            let keys: std::collections::BTreeSet<&String> = ta.keys().chain(tb.keys()).collect();
            for k in keys {
                let name = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                match (ta.get(k), tb.get(k)) {
                    (Some(x), Some(y)) => walk(&name, x, y, out),
                    _ => out.push(name),
                }
            }
        }
        _ if a != b => out.push(at.to_string()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn base() -> NodeConfig {
        NodeConfig::for_node("county-a", Path::new("certs"), Path::new("data"))
    }

    #[test]
    fn a_diff_names_each_changed_field_and_sorts_them_by_whether_they_apply_live() {
        let a = base();
        let mut b = base();
        b.deadlines.emergency_secs = 30;
        b.deadlines.utc_offset = "+07:00".into();
        b.limits.max_in_flight = 8;
        b.office.outlets.push(crate::score::Outlet {
            key: "k".into(),
            zh: "专报".into(),
            en: "Special".into(),
        });
        let changed = diff(&a, &b);
        assert_eq!(
            changed,
            [
                "deadlines.emergency_secs",
                "deadlines.utc_offset",
                "limits.max_in_flight",
                "office.outlets"
            ]
        );
        let live: Vec<bool> = changed.iter().map(|f| is_live(f)).collect();
        assert_eq!(live, [true, false, false, true]);
        assert!(diff(&a, &base()).is_empty());
    }

    #[test]
    fn apply_takes_the_live_fields_and_keeps_the_rest_as_they_were() {
        let cfg = base();
        let r = Reconfigure {
            deadlines: Live::new(cfg.deadlines.clone()),
            staff: Staff::from_config(&cfg),
            rules: Live::new(cfg.office.rules()),
            office: Live::new(cfg.office.clone()),
            routes: Arc::new(Routes::new(&cfg.upstream)),
            upstream: watch::channel(cfg.upstream.clone()).0,
            in_force: Mutex::new(cfg),
        };
        let mut new = base();
        new.deadlines.bad_news_secs = 120;
        new.deadlines.utc_offset = "+00:00".into();
        new.limits.max_in_flight = 8;
        let done = r.apply(&new).unwrap();
        assert_eq!(done.applied, ["deadlines.bad_news_secs"]);
        assert_eq!(
            done.need_restart,
            ["deadlines.utc_offset", "limits.max_in_flight"]
        );
        let d = r.deadlines.get();
        assert_eq!((d.bad_news_secs, d.utc_offset.as_str()), (120, "+08:00"));
        // Asked again, the restart-only fields are still named.
        let again = r.apply(&new).unwrap();
        assert!(again.applied.is_empty());
        assert_eq!(again.need_restart.len(), 2);
    }
}
