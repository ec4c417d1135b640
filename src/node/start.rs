//! Starting a node, as a sequence that can fail cleanly, and stopping it in
//! the reverse order.
//!
//! [`start`]: configuration → identity and trust → store → listeners bound
//! → servers → forwarders and the deadline watch. Every step that can fail
//! comes before anything is spawned: if one fails, what the earlier steps
//! made (the store, bound sockets, the operator socket file) is dropped and
//! closed with it, and nothing keeps running. [`RunningNode::shutdown`]
//! stops the forwarders and the watch first (nothing more goes up), then
//! the servers (open streams drain), then waits for the store to close.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::consumers::{self, Consumers};
use super::custody::Custody;
use super::deadlines::DeadlineWatch;
use super::desk::{Desk, DeskService};
use super::error::StartError;
use super::events::Events;
use super::followup::FollowUpWatch;
use super::forward::Forwarder;
use super::inbox::InboxService;
use super::inflight::{self, InFlight};
use super::listeners::{self, Bound, Doors};
use super::live::Live;
use super::operator::OperatorService;
use super::reconfigure::{Reconfigure, Reconfigured};
use super::relay::RelayService;
use super::reload;
use super::retention::Retainer;
use super::review::{ReviewWatch, Reviews};
use super::routes::Routes;
use super::upload;
use super::who::Staff;
use crate::audit::{AuditKind, Entry};
use crate::clock::Clock;
use crate::config::{ConfigError, NodeConfig};
use crate::store::Store;
use crate::tls::{self, ListenLimits};
use crate::trust::{Identity, Keys, LoadError, SignerError, Trust};

/// Starts a node from a configuration; returns once every listener is
/// bound, so the caller can use the addresses at once.
///
/// # Errors
/// The first step that fails, naming what it could not use.
pub async fn start(cfg: NodeConfig) -> Result<RunningNode, StartError> {
    cfg.validate()?;
    let (keys, trust) = load_trust(&cfg)?;
    let store = open_store(&cfg)?;
    let bound = match listeners::bind(&cfg).await {
        Ok(bound) => bound,
        Err(e) => {
            // Closed before the error is told, so the same data directory
            // can be opened again at once.
            store.close().await;
            return Err(e);
        }
    };
    Ok(spawn(cfg, keys, trust, store, bound).await)
}

/// Our identity and the region's trust anchors, checked against each other.
fn load_trust(cfg: &NodeConfig) -> Result<(Arc<Keys>, Arc<Trust>), StartError> {
    tls::install_crypto_provider();
    let load = |source: LoadError| StartError::Load {
        field: cfg.tls.field_of(source.path()),
        source,
    };
    refuse_ca_key(cfg)?;
    let identity = Identity::load(&cfg.tls.cert, &cfg.tls.key).map_err(load)?;
    if identity.node_id() != cfg.node_id {
        return Err(StartError::IdentityMismatch {
            path: cfg.tls.cert.clone(),
            found: identity.node_id().to_string(),
            expected: cfg.node_id.clone(),
        });
    }
    let trust = Trust::load(&cfg.tls.ca, cfg.tls.crl.as_deref())
        .map_err(load)?
        .with_crl_grace(Duration::from_secs(cfg.tls.crl_grace_secs));
    // Our own certificate must be one the region accepts. A stale CRL does
    // not stop the start: the node refuses relay traffic (with an alarm)
    // until a fresh CRL arrives, by file or down from its upstream.
    let probe = b"self-check";
    match trust.verify_signed(
        identity.cert(),
        probe,
        &identity.sign(probe),
        SystemTime::now(),
    ) {
        Ok(_) | Err(SignerError::StaleCrl { .. }) => {}
        Err(source) => {
            return Err(StartError::NotTrusted {
                path: cfg.tls.cert.clone(),
                source,
            });
        }
    }
    if cfg.relay.is_some() {
        // A listener's TLS configuration that cannot be built fails now.
        tls::server_config(&identity, &trust.snapshot())?;
    }
    let keys = Keys::new(identity, &cfg.tls.cert, &cfg.tls.key);
    Ok((Arc::new(keys), Arc::new(trust)))
}

/// A node's certificate folder must not hold the region CA's private key:
/// whoever takes the node must not get the power to mint nodes.
fn refuse_ca_key(cfg: &NodeConfig) -> Result<(), StartError> {
    for file in [&cfg.tls.cert, &cfg.tls.key] {
        let dir = file.parent().unwrap_or(std::path::Path::new("."));
        let ca_key = dir.join(crate::trust::CA_KEY);
        if ca_key.exists() {
            return Err(StartError::CaKeyPresent { path: ca_key });
        }
    }
    Ok(())
}

fn open_store(cfg: &NodeConfig) -> Result<Store, StartError> {
    let path = cfg.data_dir.join("store.redb");
    let options = crate::store::Options {
        min_free_bytes: cfg.limits.min_free_disk_bytes,
        log_segment_bytes: cfg.limits.log_segment_bytes,
    };
    let store = Store::open_with(&path, Clock::System, options)
        .map_err(|source| StartError::Store { path, source })?;
    warn_if_open_to_others(&cfg.data_dir);
    Ok(store)
}

/// A data directory made before zhibao made it (or changed since) may let
/// other users read the reports: said at every start, not refused (the
/// directory's owner decides, and systemd's unit makes it 0750).
fn warn_if_open_to_others(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(dir) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o007 != 0 {
            warn!(
                dir = %dir.display(),
                mode = format!("{mode:o}"),
                "data directory is open to other users: they may read the reports (chmod o-rwx)"
            );
        }
    }
}

/// The parts every service and task is made of, built once at start.
struct Parts {
    cfg: NodeConfig,
    keys: Arc<Keys>,
    trust: Arc<Trust>,
    store: Store,
    routes: Arc<Routes>,
    events: Events,
    custody: Arc<Custody>,
    clock: Clock,
    /// Largest message on the relay listener and upstream streams.
    max_message: usize,
    /// Rung to make the reload task look at the files now.
    reload_now: Arc<tokio::sync::Notify>,
    /// Review before sending (把关), shared by the operator API and its watch.
    reviews: Arc<Reviews>,
    /// Retention passes, scheduled and asked for by command.
    retainer: Arc<Retainer>,
    /// The settings SIGHUP can change, shared with their users.
    reconfigure: Arc<Reconfigure>,
    /// The node's Prometheus metrics (served if `[metrics] listen` is set).
    metrics: Arc<crate::metrics::Metrics>,
}

/// Spawns the servers, then the forwarders and the watch. Cannot fail.
async fn spawn(
    cfg: NodeConfig,
    keys: Arc<Keys>,
    trust: Arc<Trust>,
    store: Store,
    bound: Bound,
) -> RunningNode {
    let clock = Clock::System;
    let routes_named = cfg.upstream.iter().map(|u| u.node_id.as_str());
    let metrics = Arc::new(crate::metrics::Metrics::new(routes_named));
    store.count_commits(metrics.clone());
    let events = Events::with_metrics(clock, metrics.clone());
    let routes = Arc::new(Routes::new(&cfg.upstream));
    let custody = Arc::new(Custody::new(
        store.clone(),
        keys.clone(),
        routes.clone(),
        events.clone(),
        cfg.deadlines.clone(),
        cfg.limits.send_while_storing,
    ));
    let reviews = Arc::new(Reviews {
        policy: cfg.review,
        store: store.clone(),
        custody: custody.clone(),
        keys: keys.clone(),
        routes: routes.clone(),
        events: events.clone(),
        clock,
        limits: cfg.limits.clone(),
        deadlines: custody.deadlines(),
        wake: tokio::sync::Notify::new(),
    });
    let retainer = Arc::new(Retainer::new(
        store.clone(),
        clock,
        cfg.retention.rule(!cfg.upstream.is_empty()),
        &cfg.data_dir,
        cfg.deadlines.offset_ms().unwrap_or(0),
    ));
    let reconfigure = Arc::new(Reconfigure {
        in_force: std::sync::Mutex::new(cfg.clone()),
        deadlines: custody.deadlines(),
        staff: Staff::from_config(&cfg),
        rules: Live::new(cfg.office.rules()),
        office: Live::new(cfg.office.clone()),
        routes: routes.clone(),
        upstream: tokio::sync::watch::channel(cfg.upstream.clone()).0,
    });
    let parts = Parts {
        reviews,
        retainer,
        reconfigure,
        metrics,
        // Room for the largest report or the largest chunk (1 MiB), plus framing.
        max_message: cfg.limits.max_report_bytes.max(1 << 20) + 64 * 1024,
        cfg,
        keys,
        trust,
        store,
        routes,
        events,
        custody,
        clock,
        reload_now: Arc::default(),
    };
    let (servers, addrs) = servers(&parts, bound).await;
    let work = work(&parts);
    let cfg = parts.cfg;
    info!(
        node = %cfg.node_id,
        relay = ?addrs.relay,
        metrics = ?addrs.metrics,
        operator = %cfg.operator_socket().display(),
        upstream = ?cfg.upstream.iter().map(|u| format!("{}@{} ({:?})", u.node_id, u.addr, u.role)).collect::<Vec<_>>(),
        "node started"
    );
    RunningNode {
        web_addr: addrs.web,
        metrics_addr: addrs.metrics,
        relay_addr: addrs.relay,
        operator_addr: addrs.operator,
        operator_socket: cfg.operator_socket(),
        node_id: cfg.node_id,
        store_closed: parts.store.closed(),
        store: Some(parts.store.clone()),
        reload_now: parts.reload_now,
        reconfigure: parts.reconfigure,
        stages: vec![servers, work],
    }
}

/// Where the TCP listeners ended up.
struct Addrs {
    relay: Option<SocketAddr>,
    operator: Option<SocketAddr>,
    web: Option<SocketAddr>,
    metrics: Option<SocketAddr>,
}

/// The operator API on its socket and, if configured, over mTLS; the
/// relay listener with the inbox, if configured.
async fn servers(parts: &Parts, bound: Bound) -> (Stage, Addrs) {
    let cfg = &parts.cfg;
    let mut stage = Stage::new("servers");
    let doors = Doors {
        keys: parts.keys.clone(),
        trust: parts.trust.clone(),
        limits: ListenLimits {
            max_connections: cfg.limits.max_connections,
            max_connections_per_peer: cfg.limits.max_connections_per_peer,
            max_handshakes: cfg.limits.max_handshakes,
            handshake_timeout: Duration::from_secs(cfg.limits.handshake_timeout_secs),
        },
        concurrency: cfg.limits.max_in_flight.max(16),
        streams: cfg.limits.max_streams_per_connection,
        max_message: parts.max_message,
        keepalive: cfg.limits.connect_options(),
        on_refused: {
            let metrics = parts.metrics.clone();
            tls::RefusalHook::new(move |why| metrics.tls_refused(why))
        },
        on_cut: {
            let store = parts.store.clone();
            Arc::new(move |peer: &crate::tls::PeerInfo, why: &str| {
                store.log_soon(
                    Entry::new(AuditKind::RevokedPeer, "")
                        .with_peer(&peer.node_id)
                        .with_detail(why),
                );
            })
        },
    };
    let desk = Arc::new(Desk {
        keys: parts.keys.clone(),
        custody: parts.custody.clone(),
        store: parts.store.clone(),
        events: parts.events.clone(),
        clock: parts.clock,
        one_at_a_time: tokio::sync::Mutex::new(()),
        rules: parts.reconfigure.rules.clone(),
    });
    let office = Arc::new(super::office::Office {
        keys: parts.keys.clone(),
        trust: parts.trust.clone(),
        store: parts.store.clone(),
        events: parts.events.clone(),
        clock: parts.clock,
        config: parts.reconfigure.office.clone(),
        utc_offset_ms: cfg.deadlines.offset_ms().unwrap_or(0),
        has_children: cfg.relay.is_some(),
        one_at_a_time: tokio::sync::Mutex::new(()),
    });
    let watch = super::office::SolicitationWatch {
        office: office.clone(),
    };
    stage
        .tasks
        .push(tokio::spawn(watch.run(stage.token.clone())));
    let operator = Arc::new(OperatorService {
        office,
        desk: desk.clone(),
        keys: parts.keys.clone(),
        trust: parts.trust.clone(),
        custody: parts.custody.clone(),
        store: parts.store.clone(),
        routes: parts.routes.clone(),
        events: parts.events.clone(),
        limits: cfg.limits.clone(),
        deadlines: parts.custody.deadlines(),
        clock: parts.clock,
        shutdown: stage.token.clone(),
        reviews: parts.reviews.clone(),
        retainer: parts.retainer.clone(),
    });
    let token = stage.token.clone();
    let staff = parts.reconfigure.staff.clone();
    let task =
        listeners::serve_operator_socket(bound.operator, operator.clone(), staff.clone(), token)
            .await;
    stage.tasks.push(task);
    let mut addrs = Addrs {
        relay: None,
        operator: None,
        web: bound.web.as_ref().map(|door| door.addr),
        metrics: None,
    };
    if let Some(door) = bound.web {
        let task = crate::web::serve(door, operator.clone(), stage.token.clone());
        stage.tasks.push(task);
    }
    if let Some((listener, addr, token)) = bound.metrics {
        addrs.metrics = Some(addr);
        let source = super::scrape::source(parts.store.clone(), parts.routes.clone(), parts.clock);
        let serve = crate::metrics::serve(
            listener,
            parts.metrics.clone(),
            source,
            token.map(Arc::from),
            stage.token.clone(),
        );
        stage.tasks.push(tokio::spawn(serve));
    }
    if let Some((listener, addr)) = bound.operator_tcp {
        addrs.operator = Some(addr);
        let allowed = cfg.operator.allowed.clone();
        let token = stage.token.clone();
        let task = listeners::serve_operator_tcp(listener, operator, allowed, staff, &doors, token);
        stage.tasks.push(task);
    }
    if let Some((listener, addr)) = bound.relay {
        addrs.relay = Some(addr);
        let relay = Arc::new(RelayService {
            trust: parts.trust.clone(),
            custody: parts.custody.clone(),
            store: parts.store.clone(),
            max_held_notices: cfg.limits.max_held_notices,
            limits: cfg.limits.report_limits(),
            window: cfg.limits.max_in_flight,
            upload_quota: upload::Quota {
                uploads: cfg.limits.max_uploads_per_peer,
                bytes: cfg.limits.max_upload_bytes_per_peer,
            },
            inflight: InFlight::new(inflight::Bounds {
                bytes: cfg.limits.max_bytes_in_flight_per_peer,
                items: cfg.limits.max_items_in_flight_per_peer,
                node_bytes: cfg.limits.max_bytes_in_flight,
            }),
            signatures: crate::trust::signature::Batcher::default(),
            shutdown: stage.token.clone(),
        });
        let consumers: Vec<String> = cfg.relay.iter().flat_map(|r| r.consumers.clone()).collect();
        let desk = Arc::new(DeskService {
            desk,
            node_id: cfg.node_id.clone(),
            consumers: consumers.clone(),
        });
        let durable = Arc::new(Consumers::new(
            parts.store.clone(),
            parts.custody.clone(),
            consumers::Bounds {
                ack_wait: Duration::from_secs(cfg.limits.inbox_ack_wait_secs),
                max_unacked: cfg.limits.inbox_max_unacked,
            },
            stage.token.clone(),
        ));
        let inbox = Arc::new(InboxService {
            node_id: cfg.node_id.clone(),
            consumers,
            store: parts.store.clone(),
            custody: parts.custody.clone(),
            durable,
            shutdown: stage.token.clone(),
        });
        let token = stage.token.clone();
        let task = listeners::serve_relay(listener, relay, inbox, desk, &doors, token).await;
        stage.tasks.push(task);
    }
    (stage, addrs)
}

/// The trust reload, one forwarder per route, and the deadline watch.
fn work(parts: &Parts) -> Stage {
    let cfg = &parts.cfg;
    let mut stage = Stage::new("forwarders and watch");
    let reload = reload::Reload {
        trust: parts.trust.clone(),
        keys: parts.keys.clone(),
        events: parts.events.clone(),
        now: parts.reload_now.clone(),
        utc_offset_ms: cfg.deadlines.offset_ms().unwrap_or(0),
    };
    stage
        .tasks
        .push(tokio::spawn(reload.run(stage.token.clone())));
    let make = {
        let (store, keys, trust) = (parts.store.clone(), parts.keys.clone(), parts.trust.clone());
        let (routes, events) = (parts.routes.clone(), parts.events.clone());
        let (window, max_message) = (cfg.limits.max_in_flight, parts.max_message);
        let max_backoff = Duration::from_secs(cfg.limits.max_backoff_secs);
        let connect = cfg.limits.connect_options();
        let publishers: Arc<[String]> = cfg.office.publishers.clone().into();
        let utc_offset_ms = cfg.deadlines.offset_ms().unwrap_or(0);
        move |route| Forwarder {
            route,
            store: store.clone(),
            keys: keys.clone(),
            trust: trust.clone(),
            routes: routes.clone(),
            events: events.clone(),
            window,
            max_message,
            max_backoff,
            connect,
            publishers: publishers.clone(),
            utc_offset_ms,
        }
    };
    stage.tasks.push(tokio::spawn(super::forward::supervise(
        make,
        parts.reconfigure.upstream.subscribe(),
        stage.token.clone(),
    )));
    let checkpoints = super::audit::checkpoints(
        parts.store.clone(),
        parts.keys.clone(),
        parts.clock,
        Duration::from_secs(cfg.limits.audit_checkpoint_secs),
        (cfg.limits.audit_retention_days > 0)
            .then(|| Duration::from_secs(cfg.limits.audit_retention_days.saturating_mul(86_400))),
        stage.token.clone(),
    );
    stage.tasks.push(tokio::spawn(checkpoints));
    if cfg.relay.is_some() {
        let idle = Duration::from_secs(cfg.limits.upload_idle_secs);
        let reclaim = upload::reclaim(parts.store.clone(), parts.clock, idle, stage.token.clone());
        stage.tasks.push(tokio::spawn(reclaim));
    }
    let followup = FollowUpWatch {
        store: parts.store.clone(),
        events: parts.events.clone(),
        clock: parts.clock,
    };
    stage
        .tasks
        .push(tokio::spawn(followup.run(stage.token.clone())));
    stage.tasks.push(tokio::spawn(
        parts.retainer.clone().run(stage.token.clone()),
    ));
    let review = ReviewWatch {
        reviews: parts.reviews.clone(),
    };
    stage
        .tasks
        .push(tokio::spawn(review.run(stage.token.clone())));
    if !cfg.upstream.is_empty() {
        let watch = DeadlineWatch::new(
            parts.store.clone(),
            parts.routes.clone(),
            parts.events.clone(),
            parts.clock,
        )
        .with_keys(parts.keys.clone())
        .with_utc_offset(cfg.deadlines.offset_ms().unwrap_or(0));
        stage
            .tasks
            .push(tokio::spawn(watch.run(stage.token.clone())));
    }
    stage
}

/// Tasks started together and stopped together.
#[derive(Debug)]
struct Stage {
    name: &'static str,
    token: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Stage {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            token: CancellationToken::new(),
            tasks: Vec::new(),
        }
    }

    /// Tells the stage's tasks to stop and waits for them until `deadline`,
    /// then aborts what is left.
    async fn stop(self, node: &str, deadline: Instant) {
        self.token.cancel();
        let aborts: Vec<_> = self.tasks.iter().map(JoinHandle::abort_handle).collect();
        let all = futures::future::join_all(self.tasks);
        if tokio::time::timeout_at(deadline, all).await.is_err() {
            warn!(%node, stage = self.name, "shutdown grace period over; stopping what is left");
            for a in aborts {
                a.abort();
            }
        }
    }
}

/// A node that has bound its listeners and is serving.
#[derive(Debug)]
pub struct RunningNode {
    /// The web desk's address (`[web] listen`), if it has one.
    pub web_addr: Option<SocketAddr>,
    /// The relay listener's address, if it has one.
    pub relay_addr: Option<SocketAddr>,
    /// The operator socket path.
    pub operator_socket: PathBuf,
    /// The TCP (mTLS) operator listener's address, if it has one.
    pub operator_addr: Option<SocketAddr>,
    /// The Prometheus metrics listener's address, if it has one.
    pub metrics_addr: Option<SocketAddr>,
    /// The node id.
    pub node_id: String,
    /// In start order; stopped in reverse.
    stages: Vec<Stage>,
    reload_now: Arc<tokio::sync::Notify>,
    reconfigure: Arc<Reconfigure>,
    /// For items queued on a route SIGHUP removed; let go at shutdown, so
    /// the store can close.
    store: Option<Store>,
    store_closed: tokio::sync::watch::Receiver<bool>,
}

impl RunningNode {
    /// Looks at the CA, CRL, certificate and key files now (SIGHUP), rather
    /// than at the next periodic look; what changed and is good is used.
    pub fn reload(&self) {
        self.reload_now.notify_one();
    }

    /// Takes a configuration read again (SIGHUP): applies what can change
    /// while running, logs what changed and what needs a restart. See
    /// `super::reconfigure` for which fields are which.
    ///
    /// # Errors
    /// The configuration in force with the new values would not validate;
    /// nothing changed.
    pub async fn reconfigure(&self, new: &NodeConfig) -> Result<Reconfigured, ConfigError> {
        let done = self.reconfigure.apply(new)?;
        let routes = &self.reconfigure.routes;
        let to: Vec<(u8, Vec<String>)> = crate::class::Class::ALL
            .iter()
            .map(|c| (c.lane(), routes.initial(*c)))
            .collect();
        let Some(store) = &self.store else {
            return Ok(done);
        };
        for route in &done.removed_routes {
            match store.reroute(route.clone(), to.clone()).await {
                Ok(n) => {
                    info!(route = %route, items = n, "SIGHUP: route removed; its queued items go on the routes their class starts on")
                }
                Err(e) => {
                    warn!(route = %route, error = %e, "SIGHUP: route removed, but its queued items could not be moved; they stay queued on it")
                }
            }
        }
        Ok(done)
    }

    /// Stops the node in the reverse order of its start: forwarders and
    /// the watch, then the servers (connections drain), then the store.
    /// Waits at most `grace` in all before closing what is left.
    pub async fn shutdown(mut self, grace: Duration) {
        let deadline = Instant::now() + grace;
        while let Some(stage) = self.stages.pop() {
            stage.stop(&self.node_id, deadline).await;
        }
        // The store closes when its last handle is gone; wait for that so
        // the same data directory can be opened again at once.
        self.store = None;
        let mut closed = self.store_closed.clone();
        if tokio::time::timeout_at(deadline, closed.wait_for(|c| *c))
            .await
            .is_err()
        {
            warn!(node = %self.node_id, "store still open after shutdown");
        }
    }
}

impl Drop for RunningNode {
    /// A node dropped without [`RunningNode::shutdown`] still stops.
    fn drop(&mut self) {
        for stage in &self.stages {
            stage.token.cancel();
        }
    }
}
