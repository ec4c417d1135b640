//! The node's live events, for `zhibao watch`: submissions, receipts,
//! overdue items, escalations, refusals, alarms, routes going up and down.
//!
//! A bounded broadcast: a watcher that falls behind is told how many events
//! it missed rather than slowing the node down. Every event is also counted
//! in the node's metrics (items accepted, overdue, escalated, alarms,
//! reconnects), and the parts that hold `Events` reach the metrics here.

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::class::Class;
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::proto::{Event, EventKind};

use super::said::Said;

/// Events kept for a slow watcher before it starts missing them.
const BACKLOG: usize = 1024;

/// Where the node's parts tell watchers what happened; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Events {
    tx: broadcast::Sender<Event>,
    clock: Clock,
    metrics: Arc<Metrics>,
}

impl Events {
    /// Events counted in metrics of their own (unit tests).
    #[cfg(test)]
    pub(crate) fn new(clock: Clock) -> Self {
        Self::with_metrics(clock, Arc::new(Metrics::new([])))
    }

    /// Events counted in the node's `metrics`.
    pub(crate) fn with_metrics(clock: Clock, metrics: Arc<Metrics>) -> Self {
        Self {
            tx: broadcast::channel(BACKLOG).0,
            clock,
            metrics,
        }
    }

    /// The node's metrics, for what events do not tell.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Tells every watcher about something; nobody watching is fine.
    pub(crate) fn emit(
        &self,
        kind: EventKind,
        item_id: &str,
        class: Option<Class>,
        route: &str,
        message: impl Into<Said>,
    ) {
        let said = message.into();
        self.metrics.event(kind, class, route);
        let _ = self.tx.send(Event {
            kind: kind as i32,
            item_id: item_id.to_string(),
            priority: class.map_or(0, |c| c.to_proto() as i32),
            route: route.to_string(),
            message: said.en,
            message_zh: said.zh,
            at_unix_ms: self.clock.now_ms(),
        });
    }

    /// An alarm: something an operator must look at.
    pub(crate) fn alarm(&self, item_id: &str, route: &str, message: impl Into<Said>) {
        self.emit(EventKind::Alarm, item_id, None, route, message);
    }

    /// A new watcher's view, from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// The event a watcher gets in place of `missed` events it fell behind on.
    pub(crate) fn missed(&self, missed: u64) -> Event {
        Event {
            kind: EventKind::Alarm as i32,
            message: format!("this watcher fell behind and missed {missed} events"),
            message_zh: format!("本监视端处理不及，漏收 {missed} 条事件"),
            at_unix_ms: self.clock.now_ms(),
            ..Default::default()
        }
    }
}
