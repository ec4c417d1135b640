//! Prometheus metrics of a node: the registry and every metric handle,
//! made once when the node starts, and the text exposition a scrape gets.
//!
//! One [`Metrics`] per node, shared by `Arc` (not a process-wide global):
//! several nodes can run in one process (the tests, `zhibao demo`), and
//! each one's endpoint must show only its own figures. The node's parts
//! reach it through what they already hold: `Events` (every part that
//! tells watchers what happened counts it there too) and the store (the
//! writer thread times its commits).
//!
//! The hot path pays a relaxed atomic add per count: label sets of the
//! fixed enums (class, receipt kind, route) are resolved once here, and
//! the latency histograms are lock-free ([`histogram`]). Refusals look
//! their label set up in a family (a lock and a hash), which costs less
//! than the log line each refusal writes anyway. Gauges of the store
//! (queue depth, oldest item, free space) are read when scraped
//! ([`Snapshot`]), never kept up to date on each change.

pub mod histogram;
mod serve;

pub use serve::{Source, serve};

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use self::histogram::{Histogram, Labelled};
use crate::class::Class;
use crate::proto::EventKind;

/// The `Content-Type` of what [`Metrics::encode`] returns (the Prometheus
/// text format, version 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Submit → receipt, in seconds: from a millisecond emergency on a quiet
/// link to a routine item an hour late.
static LATENCY_BUCKETS: [f64; 18] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    1800.0, 3600.0,
];
/// A store commit, in seconds: a log append (~0.1 ms) to a full fsync.
static COMMIT_BUCKETS: [f64; 13] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];
/// Writes in one commit (at most the writer's batch, 512).
static BATCH_BUCKETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

type Labels = Vec<(&'static str, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// One counter per class, in lane order.
type PerClass = [Counter; 3];

/// An upstream route's reconnect counter, and whether it has been up yet
/// (the first time up is a connect, not a reconnect); the items sent up it
/// early.
#[derive(Debug)]
struct RouteCounters {
    reconnects: Counter,
    was_up: AtomicBool,
    sent_early: Counter,
}

/// Every metric of one node.
pub struct Metrics {
    registry: Registry,
    accepted: PerClass,
    urgent_connection: PerClass,
    overdue: PerClass,
    escalations: PerClass,
    refused: Family<Labels, Counter>,
    /// Custody, then delivery.
    receipts: [Counter; 2],
    alarms: Counter,
    routes: HashMap<String, RouteCounters>,
    latency: Labelled,
    commit_seconds: Histogram,
    commit_writes: Histogram,
    tls_refused: Family<Labels, Counter>,
    // Set when scraped, from a [`Snapshot`].
    queue_items: Family<Labels, Gauge>,
    queue_oldest: Family<Labels, FloatGauge>,
    upstream_up: Family<Labels, Gauge>,
    upload_bytes: Gauge,
    free_bytes: Gauge,
    /// One scrape sets the gauges and encodes at a time.
    scrape: Mutex<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// What the store and the routes look like at a scrape.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Items queued per route and class, and how long the oldest has waited.
    pub queues: Vec<QueueGauge>,
    /// Each upstream route: up (`None`: not tried yet).
    pub routes: Vec<(String, Option<bool>)>,
    /// Bytes of attachments received from children, uploads not complete.
    pub upload_bytes: u64,
    /// Free bytes on the store's file system, if it can be told.
    pub free_bytes: Option<u64>,
}

/// One route's queue of one class.
#[derive(Debug, Clone)]
pub struct QueueGauge {
    /// The upstream route.
    pub route: String,
    /// The class (lane).
    pub class: Class,
    /// Items queued and not receipted on this route.
    pub items: u64,
    /// Seconds since this node stored the item at the head of the queue.
    pub oldest_secs: f64,
}

fn class_labels(class: Class) -> Labels {
    vec![("class", class.name().to_string())]
}

fn per_class(family: &Family<Labels, Counter>) -> PerClass {
    Class::ALL.map(|c| family.get_or_create_owned(&class_labels(c)))
}

/// The gRPC code's name as a label value.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

impl Metrics {
    /// Every metric, registered; `routes` are the node's upstream routes.
    pub fn new<'a>(routes: impl IntoIterator<Item = &'a str>) -> Self {
        let mut registry = Registry::with_prefix("zhibao");
        let accepted = Family::<Labels, Counter>::default();
        registry.register(
            "items_accepted",
            "Items this node took into custody (submitted here or from a child), by class",
            accepted.clone(),
        );
        let urgent_connection = Family::<Labels, Counter>::default();
        registry.register(
            "urgent_connection_items",
            "Items children sent on connections served apart for urgent items, by claimed class (routine ones there mean a child misuses them)",
            urgent_connection.clone(),
        );
        let refused = Family::<Labels, Counter>::default();
        registry.register(
            "items_refused",
            "Items (and their chunks) refused from children or operators, by claimed class and gRPC code",
            refused.clone(),
        );
        let overdue = Family::<Labels, Counter>::default();
        registry.register(
            "items_overdue",
            "Items that missed their deadline here or were reported held past it below, by class",
            overdue.clone(),
        );
        let escalations = Family::<Labels, Counter>::default();
        registry.register(
            "escalations",
            "Items escalated to alternate and skip-level routes, by class",
            escalations.clone(),
        );
        let receipts = Family::<Labels, Counter>::default();
        registry.register(
            "receipts",
            "Verified receipts from upstream stored here, by kind (custody, delivery)",
            receipts.clone(),
        );
        let alarms = Counter::default();
        registry.register(
            "alarms",
            "Alarm events (refused or conflicting items, bad receipts, CRL and certificate trouble, clock jumps; overdue items are counted apart)",
            alarms.clone(),
        );
        let reconnects = Family::<Labels, Counter>::default();
        registry.register(
            "upstream_reconnects",
            "Times an upstream route came back up after being down",
            reconnects.clone(),
        );
        let sent_early = Family::<Labels, Counter>::default();
        registry.register(
            "items_sent_early",
            "Operators' items sent up a route while this node's own commit of them was still going to the disk (the route had nothing else to do)",
            sent_early.clone(),
        );
        let latency = Labelled {
            label: "class",
            parts: Class::ALL
                .iter()
                .map(|c| (c.name(), Histogram::new(&LATENCY_BUCKETS)))
                .collect(),
        };
        registry.register(
            "receipt_latency_seconds",
            "From storing an item here (its submission, at the origin) to the upstream's receipt, by class",
            latency.clone(),
        );
        let commit_seconds = Histogram::new(&COMMIT_BUCKETS);
        registry.register(
            "store_commit_duration_seconds",
            "Time to make one batch of store writes durable",
            commit_seconds.clone(),
        );
        let commit_writes = Histogram::new(&BATCH_BUCKETS);
        registry.register(
            "store_commit_batch_size",
            "Writes made durable by one store commit",
            commit_writes.clone(),
        );
        let tls_refused = Family::<Labels, Counter>::default();
        registry.register(
            "tls_handshakes_refused",
            "Connections refused at or right after the TLS handshake, by reason",
            tls_refused.clone(),
        );
        let queue_items = Family::<Labels, Gauge>::default();
        registry.register(
            "queue_items",
            "Items queued on an upstream route and not receipted by it, by class",
            queue_items.clone(),
        );
        let queue_oldest = Family::<Labels, FloatGauge>::default();
        registry.register(
            "queue_oldest_age_seconds",
            "Age of the item at the head of a route's queue, by class",
            queue_oldest.clone(),
        );
        let upstream_up = Family::<Labels, Gauge>::default();
        registry.register(
            "upstream_up",
            "Whether an upstream route is connected (1) or not (0)",
            upstream_up.clone(),
        );
        let upload_bytes = Gauge::default();
        registry.register(
            "attachment_bytes_in_flight",
            "Bytes of attachments received from children whose upload is not complete",
            upload_bytes.clone(),
        );
        let free_bytes = Gauge::default();
        registry.register(
            "store_free_bytes",
            "Free bytes on the file system of the store",
            free_bytes.clone(),
        );
        let routes = routes
            .into_iter()
            .map(|r| {
                let route = vec![("route", r.to_string())];
                let counters = RouteCounters {
                    reconnects: reconnects.get_or_create_owned(&route),
                    was_up: AtomicBool::new(false),
                    sent_early: sent_early.get_or_create_owned(&route),
                };
                (r.to_string(), counters)
            })
            .collect();
        Self {
            accepted: per_class(&accepted),
            urgent_connection: per_class(&urgent_connection),
            overdue: per_class(&overdue),
            escalations: per_class(&escalations),
            receipts: ["custody", "delivery"]
                .map(|k| receipts.get_or_create_owned(&vec![("kind", k.to_string())])),
            refused,
            alarms,
            routes,
            latency,
            commit_seconds,
            commit_writes,
            tls_refused,
            queue_items,
            queue_oldest,
            upstream_up,
            upload_bytes,
            free_bytes,
            registry,
            scrape: Mutex::new(()),
        }
    }

    /// Counts what an event tells: items accepted, overdue and escalated,
    /// alarms, a route coming back up.
    pub fn event(&self, kind: EventKind, class: Option<Class>, route: &str) {
        let lane = class.map(|c| usize::from(c.lane()));
        // The counters' previous values are not wanted.
        let _ = match (kind, lane) {
            (EventKind::Submitted, Some(i)) => self.accepted[i].inc(),
            (EventKind::Overdue, Some(i)) => self.overdue[i].inc(),
            (EventKind::Escalated, Some(i)) => self.escalations[i].inc(),
            (EventKind::Alarm, _) => self.alarms.inc(),
            (EventKind::RouteUp, _) => match self.routes.get(route) {
                Some(r) if r.was_up.swap(true, Ordering::Relaxed) => r.reconnects.inc(),
                _ => 0,
            },
            _ => 0,
        };
    }

    /// An item (or one of its chunks) from a child or an operator refused
    /// with `code`;
    /// `class` as the item claims it, if it could be read.
    pub fn refused(&self, class: Option<Class>, code: tonic::Code) {
        let class = class.map_or("unknown", Class::name);
        let labels = vec![
            ("class", class.to_string()),
            ("reason", code_name(code).to_string()),
        ];
        self.refused.get_or_create(&labels).inc();
    }

    /// A child sent an item of `class` (as it claims) on an urgent
    /// connection.
    pub fn urgent_connection_item(&self, class: Option<Class>) {
        if let Some(class) = class {
            self.urgent_connection[usize::from(class.lane())].inc();
        }
    }

    /// An operator's item went up `route` before this node's commit of it
    /// had ended.
    pub fn sent_early(&self, route: &str) {
        if let Some(r) = self.routes.get(route) {
            r.sent_early.inc();
        }
    }

    /// A verified receipt from upstream is stored here.
    pub fn receipt(&self, delivery: bool) {
        self.receipts[usize::from(delivery)].inc();
    }

    /// An item of `lane` stored here at `stored_ms` (Unix ms) got its
    /// upstream's receipt `now`.
    pub fn receipt_latency(&self, lane: u8, stored_ms: i64, now: std::time::SystemTime) {
        let now_ms = now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        if let Some((_, h)) = self.latency.parts.get(usize::from(lane)) {
            h.observe(now_ms.saturating_sub(stored_ms).max(0) as f64 / 1000.0);
        }
    }

    /// A store commit of `writes` writes took `took`.
    pub fn store_commit(&self, writes: usize, took: Duration) {
        self.commit_seconds.observe(took.as_secs_f64());
        self.commit_writes.observe(writes as f64);
    }

    /// A connection refused at the TLS handshake or right after it.
    pub fn tls_refused(&self, reason: &'static str) {
        let labels = vec![("reason", reason.to_string())];
        self.tls_refused.get_or_create(&labels).inc();
    }

    /// The text exposition of every metric, the gauges set from `snap`.
    pub fn encode(&self, snap: &Snapshot) -> String {
        let _one = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        self.queue_items.clear();
        self.queue_oldest.clear();
        for q in &snap.queues {
            let labels = vec![
                ("route", q.route.clone()),
                ("class", q.class.name().to_string()),
            ];
            self.queue_items
                .get_or_create(&labels)
                .set(i64::try_from(q.items).unwrap_or(i64::MAX));
            self.queue_oldest.get_or_create(&labels).set(q.oldest_secs);
        }
        self.upstream_up.clear();
        for (route, up) in &snap.routes {
            self.upstream_up
                .get_or_create(&vec![("route", route.clone())])
                .set(i64::from(*up == Some(true)));
        }
        self.upload_bytes
            .set(i64::try_from(snap.upload_bytes).unwrap_or(i64::MAX));
        if let Some(free) = snap.free_bytes {
            self.free_bytes.set(i64::try_from(free).unwrap_or(i64::MAX));
        }
        let mut out = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail.
        let _ = prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests;
