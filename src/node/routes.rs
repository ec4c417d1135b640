//! The routes upstream: which route each item starts on and is escalated
//! to (policy, from the configuration, replaced when SIGHUP changes it),
//! and how each route is doing now —
//! up or down, and which items are on its wire (state, kept by the
//! forwarders, read by `status` and the deadline watch).

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, RwLock};

use crate::class::Class;
use crate::config::{Role, UpstreamConfig};

#[derive(Debug, Default)]
struct RouteState {
    /// Whether its last session is up; `None` until one was tried.
    up: Option<bool>,
    /// Items sent on the current session and not yet answered.
    in_flight: HashSet<String>,
}

/// The node's routes upstream; none for a hub.
#[derive(Debug)]
pub(crate) struct Routes {
    table: RwLock<Vec<UpstreamConfig>>,
    state: Mutex<HashMap<String, RouteState>>,
}

impl Routes {
    pub(crate) fn new(table: &[UpstreamConfig]) -> Self {
        Self {
            table: RwLock::new(table.to_vec()),
            state: Mutex::default(),
        }
    }

    /// The table in force.
    pub(crate) fn table(&self) -> Vec<UpstreamConfig> {
        self.table.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Puts `table` in force (SIGHUP); the state of routes no longer in
    /// it is forgotten.
    pub(crate) fn replace(&self, table: &[UpstreamConfig]) {
        *self.table.write().unwrap_or_else(|e| e.into_inner()) = table.to_vec();
        self.with(|state| state.retain(|route, _| table.iter().any(|u| &u.node_id == route)));
    }

    /// Whether this node forwards nothing: items end here, in its inbox.
    pub(crate) fn is_final(&self) -> bool {
        self.table().is_empty()
    }

    /// The routes a new item of `class` starts on: every primary, and for an
    /// emergency every route at once.
    pub(crate) fn initial(&self, class: Class) -> Vec<String> {
        self.table()
            .iter()
            .filter(|u| class == Class::Emergency || u.role == Role::Primary)
            .map(|u| u.node_id.clone())
            .collect()
    }

    /// The routes an item is escalated to: alternates and skip-level hubs.
    pub(crate) fn escalation(&self) -> Vec<String> {
        self.table()
            .iter()
            .filter(|u| u.role != Role::Primary)
            .map(|u| u.node_id.clone())
            .collect()
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, RouteState>) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Whether every primary route has been tried and is down.
    pub(crate) fn primaries_down(&self) -> bool {
        let table = self.table();
        self.with(|state| {
            table
                .iter()
                .filter(|u| u.role == Role::Primary)
                .all(|u| state.get(&u.node_id).and_then(|s| s.up) == Some(false))
        })
    }

    /// Records whether `route` is up; returns whether that changed.
    pub(crate) fn set_up(&self, route: &str, up: bool) -> bool {
        self.with(|state| {
            let s = state.entry(route.to_string()).or_default();
            let changed = s.up != Some(up);
            s.up = Some(up);
            if !up {
                s.in_flight.clear();
            }
            changed
        })
    }

    /// `id` went on `route`'s wire.
    pub(crate) fn sent(&self, route: &str, id: &str) {
        self.with(|state| {
            state
                .entry(route.to_string())
                .or_default()
                .in_flight
                .insert(id.to_string());
        });
    }

    /// `id` came off `route`'s wire (answered, or the session ended).
    pub(crate) fn answered(&self, route: &str, id: &str) {
        self.with(|state| {
            if let Some(s) = state.get_mut(route) {
                s.in_flight.remove(id);
            }
        });
    }

    /// Every route: (name, role, up (None = not tried yet), items in flight).
    pub(crate) fn report(&self) -> Vec<(String, crate::config::Role, Option<bool>, usize)> {
        let table = self.table();
        self.with(|state| {
            table
                .iter()
                .map(|u| {
                    let s = state.get(&u.node_id);
                    (
                        u.node_id.clone(),
                        u.role,
                        s.and_then(|s| s.up),
                        s.map_or(0, |s| s.in_flight.len()),
                    )
                })
                .collect()
        })
    }

    /// Every route's name: where a held notice goes up (all of them, so it
    /// gets through whichever is up).
    pub(crate) fn all(&self) -> Vec<String> {
        self.report().into_iter().map(|(name, ..)| name).collect()
    }

    /// Whether `id` is on the wire to any route right now.
    pub(crate) fn is_in_flight(&self, id: &str) -> bool {
        self.with(|state| state.values().any(|s| s.in_flight.contains(id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(id: &str, role: Role) -> UpstreamConfig {
        UpstreamConfig {
            node_id: id.into(),
            addr: "h:1".into(),
            role,
        }
    }

    #[test]
    fn emergencies_take_every_route_and_the_rest_the_primaries() {
        let routes = Routes::new(&[
            route("hub", Role::Primary),
            route("hub-b", Role::Alternate),
            route("top", Role::Skip),
        ]);
        assert_eq!(routes.initial(Class::Emergency), ["hub", "hub-b", "top"]);
        assert_eq!(routes.initial(Class::Routine), ["hub"]);
        assert_eq!(routes.escalation(), ["hub-b", "top"]);
        assert!(!routes.is_final());
    }

    #[test]
    fn primaries_are_down_only_once_tried_and_failed() {
        let routes = Routes::new(&[route("a", Role::Primary), route("b", Role::Primary)]);
        assert!(!routes.primaries_down(), "not tried yet");
        assert!(routes.set_up("a", false));
        assert!(!routes.primaries_down());
        assert!(routes.set_up("b", false));
        assert!(!routes.set_up("b", false), "no change");
        assert!(routes.primaries_down());
        routes.sent("a", "x");
        assert!(routes.is_in_flight("x"));
        routes.set_up("a", false);
        assert!(
            !routes.is_in_flight("x"),
            "a session that ends clears its wire"
        );
    }
}
