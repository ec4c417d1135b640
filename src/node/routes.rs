//! The routes upstream: which route each item starts on and is escalated
//! to (policy, from the configuration, replaced when SIGHUP changes it),
//! and how each route is doing now —
//! up or down, and which items are on its wire (state, kept by the
//! forwarders, read by `status` and the deadline watch) — and, while a
//! route's session has nothing to do, where an operator's new item is
//! offered to it before it is on this node's disk (see
//! [`early`](super::forward::early)).

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, RwLock};

use tokio::sync::mpsc;

use super::forward::early::Early;
use crate::class::Class;
use crate::config::{Role, UpstreamConfig};

#[derive(Debug, Default)]
struct RouteState {
    /// Whether its last session is up; `None` until one was tried.
    up: Option<bool>,
    /// Items sent on the current session and not yet answered.
    in_flight: HashSet<String>,
    /// Where the current session takes items offered early, while it says
    /// it is idle.
    early: Option<mpsc::Sender<Early>>,
    /// Whether the current session has nothing on its wire and nothing
    /// queued: an item offered now would be the next it sends anyway.
    idle: bool,
}

/// Items offered early that a route's session has not looked at yet: one
/// is offered at a time (see [`Routes::offer`]); room for a few more in
/// case a session is slow to look.
const EARLY_OFFERS: usize = 4;

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
                s.early = None;
                s.idle = false;
            }
            changed
        })
    }

    /// Opens `route`'s mailbox for items offered early, for a session
    /// starting; the previous session's is closed. Offers are taken only
    /// while the session says it is idle ([`Routes::set_idle`]).
    pub(crate) fn open_early(&self, route: &str) -> mpsc::Receiver<Early> {
        let (tx, rx) = mpsc::channel(EARLY_OFFERS);
        self.with(|state| {
            let s = state.entry(route.to_string()).or_default();
            s.early = Some(tx);
            s.idle = false;
        });
        rx
    }

    /// Whether `route`'s session is idle: nothing on its wire, nothing
    /// queued for it.
    pub(crate) fn set_idle(&self, route: &str, idle: bool) {
        self.with(|state| {
            if let Some(s) = state.get_mut(route) {
                s.idle = idle && s.early.is_some();
            }
        });
    }

    /// Offers an item to `route`'s session if it is idle (see
    /// [`early`](super::forward::early)); `make` is called only then. The
    /// route counts as busy from now until its session says otherwise, so
    /// a second item offered meanwhile waits for the store like any other.
    /// Says whether the offer was made.
    pub(crate) fn offer(&self, route: &str, make: impl FnOnce() -> Early) -> bool {
        self.with(|state| {
            let Some(s) = state.get_mut(route).filter(|s| s.idle) else {
                return false;
            };
            s.idle = false;
            s.early
                .as_ref()
                .is_some_and(|tx| tx.try_send(make()).is_ok())
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

    fn early(id: &str) -> Early {
        Early {
            id: id.into(),
            item: crate::proto::SignedReport::default(),
            rec: crate::store::ItemRecord::default(),
            stored: tokio::sync::oneshot::channel().1,
        }
    }

    #[test]
    fn an_item_is_offered_early_only_to_an_idle_session_and_one_at_a_time() {
        let routes = Routes::new(&[route("hub", Role::Primary)]);
        assert!(!routes.offer("hub", || early("a")), "no session yet");
        let mut rx = routes.open_early("hub");
        assert!(!routes.offer("hub", || early("a")), "not idle yet");
        routes.set_idle("hub", true);
        assert!(routes.offer("hub", || early("a")));
        assert!(
            !routes.offer("hub", || early("b")),
            "busy from the offer on, until the session says otherwise"
        );
        assert_eq!(rx.try_recv().unwrap().id, "a");
        assert!(rx.try_recv().is_err(), "b was never sent");
        routes.set_idle("hub", true);
        assert!(!routes.offer("other", || early("c")), "another route");
        // The session ends: nothing more is offered until the next opens.
        routes.set_up("hub", false);
        routes.set_idle("hub", true);
        assert!(!routes.offer("hub", || early("c")));
        drop(rx);
        let _next = routes.open_early("hub");
        routes.set_idle("hub", true);
        assert!(routes.offer("hub", || early("d")));
    }

    #[test]
    fn an_offer_to_a_session_gone_is_not_made() {
        let routes = Routes::new(&[route("hub", Role::Primary)]);
        let rx = routes.open_early("hub");
        routes.set_idle("hub", true);
        drop(rx);
        assert!(!routes.offer("hub", || early("a")));
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
