//! A running zhibao node: listeners, store, forwarder, and their shutdown.
//!
//! [`start`] loads identity and trust, opens the store, binds the relay
//! listener (mTLS) and the operator socket, starts the forwarder if the node
//! has an upstream, and returns once everything is bound — so tests and the
//! demo can use the addresses at once; [`RunningNode::shutdown`] drains it
//! within a grace period.

mod forward;
mod inbox;
mod operator;
mod relay;
mod watch;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use prost::Message;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::class::Class;
use crate::config::{ConfigError, NodeConfig, Role};
use crate::envelope::{Verified, VerifyError};
use crate::proto::{
    Event, EventKind, ReceiptKind, SignedReceipt, SignedReport, inbox_server::InboxServer,
    operator_server::OperatorServer, relay_server::RelayServer,
};
use crate::store::{self, Destination, ItemRecord, PutOutcome, Store};
use crate::tls::{self, ListenLimits};
use crate::trust::{Identity, LoadError, Trust};

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Certificates or keys could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The certificate names another node than `node_id`.
    #[error("certificate {path} names node {found:?} but node_id is {expected:?}")]
    IdentityMismatch {
        /// The certificate file.
        path: PathBuf,
        /// The node id in it.
        found: String,
        /// The configured node id.
        expected: String,
    },
    /// Our own certificate is not one the region accepts.
    #[error("{path}: not valid for this region: {source}")]
    NotTrusted {
        /// The certificate file.
        path: PathBuf,
        /// Why.
        source: crate::trust::SignerError,
    },
    /// The store could not be opened.
    #[error("store {path}: {source}")]
    Store {
        /// The store file.
        path: PathBuf,
        /// Why.
        source: store::Error,
    },
    /// A listener could not be bound.
    #[error("bind {what}: {source}")]
    Bind {
        /// Which listener.
        what: String,
        /// Why.
        source: std::io::Error,
    },
    /// TLS configuration failed.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// The operator API's transport limit: the largest `max_report_bytes` and
/// default `max_attachment_bytes` together, plus room for the other fields.
const OPERATOR_MAX_MESSAGE: usize = 130 * 1024 * 1024;

/// State shared by every service and task of one node.
pub(crate) struct Shared {
    pub(crate) cfg: NodeConfig,
    pub(crate) identity: Arc<Identity>,
    pub(crate) trust: Arc<Trust>,
    pub(crate) store: Store,
    /// Per route, items sent and not yet answered (for `status`).
    pub(crate) in_flight: Mutex<HashMap<String, HashSet<String>>>,
    /// Per route, whether its last session is up (absent = not tried yet).
    pub(crate) routes_up: Mutex<HashMap<String, bool>>,
    /// Live events for `zhibao watch`.
    pub(crate) events: broadcast::Sender<Event>,
    pub(crate) shutdown: CancellationToken,
}

/// Why an item was not taken into custody.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AcceptError {
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(
        "item {id} is already stored with different content (stored digest {stored}, offered {offered})"
    )]
    Conflict {
        id: String,
        stored: String,
        offered: String,
    },
}

impl From<AcceptError> for tonic::Status {
    fn from(e: AcceptError) -> Self {
        match e {
            AcceptError::Verify(v) => v.into(),
            AcceptError::Store(s) => s.into(),
            AcceptError::Conflict { .. } => Self::already_exists(e.to_string()),
        }
    }
}

impl Shared {
    /// The receipt deadline of an item created at `created_ms`: the one it
    /// asks for, never later than its class allows here.
    pub(crate) fn deadline_ms(&self, class: Class, created_ms: i64, asked_ms: i64) -> i64 {
        let class_deadline = self.cfg.deadlines.deadline_ms(class, created_ms);
        if asked_ms > 0 {
            asked_ms.min(class_deadline)
        } else {
            class_deadline
        }
    }

    /// The routes a new item of `class` starts on: every primary, and for an
    /// emergency every route at once.
    pub(crate) fn initial_routes(&self, class: Class) -> Vec<String> {
        self.cfg
            .upstream
            .iter()
            .filter(|u| class == Class::Emergency || u.role == Role::Primary)
            .map(|u| u.node_id.clone())
            .collect()
    }

    /// The routes an item is escalated to: alternates and skip-level hubs.
    pub(crate) fn escalation_routes(&self) -> Vec<String> {
        self.cfg
            .upstream
            .iter()
            .filter(|u| u.role != Role::Primary)
            .map(|u| u.node_id.clone())
            .collect()
    }

    /// Tells `zhibao watch` subscribers about something.
    pub(crate) fn emit(
        &self,
        kind: EventKind,
        item_id: &str,
        priority: Option<Class>,
        route: &str,
        message: String,
    ) {
        let _ = self.events.send(Event {
            kind: kind as i32,
            item_id: item_id.to_string(),
            priority: priority.map_or(0, |c| c.to_proto() as i32),
            route: route.to_string(),
            message,
            at_unix_ms: crate::envelope::now_ms(),
        });
    }

    /// Whether `id` is on the wire to any route right now.
    pub(crate) fn is_in_flight(&self, id: &str) -> bool {
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .any(|set| set.contains(id))
    }

    /// Takes a verified item into custody: stores it durably (or finds it
    /// already stored), then signs the receipt for it.
    pub(crate) async fn accept(
        &self,
        signed: &SignedReport,
        verified: &Verified,
        from: &str,
    ) -> Result<(ItemRecord, SignedReceipt), AcceptError> {
        let report = &verified.report;
        let record = ItemRecord {
            signed: signed.encode_to_vec(),
            lane: u32::from(verified.class.lane()),
            created_ms: report.created_unix_ms,
            deadline_ms: self.deadline_ms(
                verified.class,
                report.created_unix_ms,
                report.deadline_unix_ms,
            ),
            sha256: verified.sha256.to_vec(),
            from: from.to_string(),
            ..Default::default()
        };
        let dest = if self.cfg.upstream.is_empty() {
            Destination::Inbox
        } else {
            Destination::Queue(self.initial_routes(verified.class))
        };
        let stored = match self.store.put(report.id.clone(), record, dest).await? {
            PutOutcome::Stored(r) => {
                self.emit(
                    EventKind::Submitted,
                    &report.id,
                    Some(verified.class),
                    "",
                    format!("from {from}: {}", report.title),
                );
                r
            }
            PutOutcome::Duplicate(r) => {
                info!(id = %report.id, %from, "duplicate item; answering with the original receipt");
                r
            }
            PutOutcome::Conflict(old) => {
                let e = AcceptError::Conflict {
                    id: report.id.clone(),
                    stored: crate::envelope::hex(&old.sha256),
                    offered: crate::envelope::hex(&verified.sha256),
                };
                error!(alarm = "id-conflict", %from, origin = %report.origin, "ALARM: {e}");
                self.emit(
                    EventKind::Alarm,
                    &report.id,
                    Some(verified.class),
                    "",
                    e.to_string(),
                );
                return Err(e);
            }
        };
        Ok((stored.clone(), self.receipt_for(&report.id, &stored)))
    }

    /// The receipt this node gives for a stored item (deterministic).
    pub(crate) fn receipt_for(&self, id: &str, rec: &ItemRecord) -> SignedReceipt {
        let mut sha = [0u8; 32];
        if rec.sha256.len() == 32 {
            sha.copy_from_slice(&rec.sha256);
        }
        let kind = if rec.state() == Some(store::RecordState::Delivered) {
            ReceiptKind::Delivery
        } else {
            ReceiptKind::Custody
        };
        let on_time = rec.stored_ms <= rec.deadline_ms;
        crate::receipt::issue(&self.identity, id, &sha, rec.stored_ms, kind, on_time)
    }

    pub(crate) fn now() -> SystemTime {
        SystemTime::now()
    }
}

/// A node that has bound its listeners and is serving.
#[derive(Debug)]
pub struct RunningNode {
    /// The relay listener's address, if it has one.
    pub relay_addr: Option<SocketAddr>,
    /// The operator socket path.
    pub operator_socket: PathBuf,
    /// The TCP (mTLS) operator listener's address, if it has one.
    pub operator_addr: Option<SocketAddr>,
    /// The node id.
    pub node_id: String,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    store_closed: tokio::sync::watch::Receiver<bool>,
}

impl RunningNode {
    /// Stops the node: listeners close, streams end, the forwarder stops,
    /// the store is closed. Waits at most `grace` for connections to drain.
    pub async fn shutdown(mut self, grace: Duration) {
        self.shutdown.cancel();
        let tasks = std::mem::take(&mut self.tasks);
        let aborts: Vec<_> = tasks.iter().map(JoinHandle::abort_handle).collect();
        if tokio::time::timeout(grace, futures::future::join_all(tasks))
            .await
            .is_err()
        {
            warn!(node = %self.node_id, "shutdown grace period over; closing remaining connections");
            for a in aborts {
                a.abort();
            }
        }
        // The store closes when its last handle is gone; wait for that so
        // the same data directory can be opened again at once.
        let mut closed = self.store_closed.clone();
        if tokio::time::timeout(grace, closed.wait_for(|c| *c))
            .await
            .is_err()
        {
            warn!(node = %self.node_id, "store still open after shutdown");
        }
    }
}

/// Starts a node from a validated configuration.
pub async fn start(cfg: NodeConfig) -> Result<RunningNode, StartError> {
    cfg.validate()?;
    tls::install_crypto_provider();
    let identity = Arc::new(Identity::load(&cfg.tls.cert, &cfg.tls.key)?);
    if identity.node_id() != cfg.node_id {
        return Err(StartError::IdentityMismatch {
            path: cfg.tls.cert.clone(),
            found: identity.node_id().to_string(),
            expected: cfg.node_id.clone(),
        });
    }
    let trust = Arc::new(Trust::load(&cfg.tls.ca, cfg.tls.crl.as_deref())?);
    // Our own certificate must be one the region accepts.
    trust
        .verify_signed(
            identity.cert(),
            b"self-check",
            &identity.sign(b"self-check"),
            SystemTime::now(),
        )
        .map_err(|source| StartError::NotTrusted {
            path: cfg.tls.cert.clone(),
            source,
        })?;
    let store_path = cfg.data_dir.join("store.redb");
    let (store, store_closed) =
        Store::open_watched(&store_path).map_err(|source| StartError::Store {
            path: store_path.clone(),
            source,
        })?;

    let shutdown = CancellationToken::new();
    let shared = Arc::new(Shared {
        cfg: cfg.clone(),
        identity: identity.clone(),
        trust: trust.clone(),
        store,
        in_flight: Mutex::new(HashMap::new()),
        routes_up: Mutex::new(HashMap::new()),
        events: broadcast::channel(1024).0,
        shutdown: shutdown.clone(),
    });
    let mut tasks = Vec::new();
    // Room for the largest report or the largest chunk (1 MiB), plus framing.
    let max_msg = cfg.limits.max_report_bytes.max(1 << 20) + 64 * 1024;

    // Operator socket: file permissions are the access control.
    let socket = cfg.operator_socket();
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).map_err(|source| StartError::Bind {
            what: format!("operator socket directory {}", dir.display()),
            source,
        })?;
    }
    if socket.exists() {
        // A socket file left by a killed node; refuse to steal a live one.
        if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            return Err(StartError::Bind {
                what: format!("operator socket {}", socket.display()),
                source: std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    "another node is serving on it",
                ),
            });
        }
        let _ = std::fs::remove_file(&socket);
    }
    // Bound under a temporary name and given its mode before it is renamed
    // into place, so nobody can connect while it has the default mode.
    let staging = socket.with_extension(format!("binding-{}", std::process::id()));
    let _ = std::fs::remove_file(&staging);
    let bind_err = |what: &str, source| StartError::Bind {
        what: format!("operator socket {what}{}", socket.display()),
        source,
    };
    let unix = UnixListener::bind(&staging).map_err(|e| bind_err("", e))?;
    std::fs::set_permissions(
        &staging,
        std::fs::Permissions::from_mode(cfg.socket_mode()?),
    )
    .map_err(|e| bind_err("mode ", e))?;
    std::fs::rename(&staging, &socket).map_err(|e| bind_err("", e))?;
    {
        // Local operators get a generous transport limit so that a body over
        // `max_report_bytes` reaches the service and is refused with a
        // message naming the limit, rather than a bare transport error.
        let svc = OperatorServer::new(operator::OperatorService::new(shared.clone()))
            .max_decoding_message_size(OPERATOR_MAX_MESSAGE);
        let health_svc = health_service(&["zhibao.v1.Operator"]).await;
        let token = shutdown.clone();
        let socket_path = socket.clone();
        tasks.push(tokio::spawn(async move {
            let res = tonic::transport::Server::builder()
                .add_service(svc)
                .add_service(health_svc)
                .serve_with_incoming_shutdown(
                    UnixListenerStream::new(unix),
                    token.cancelled_owned(),
                )
                .await;
            if let Err(e) = res {
                error!(error = %e, "operator API stopped");
            }
            let _ = std::fs::remove_file(&socket_path);
        }));
    }

    // Optional operator API over TCP, mutual TLS, for listed certificates.
    let mut operator_addr = None;
    if let Some(listen) = cfg.operator.listen {
        let (listener, addr) = bind_tcp(listen, "operator listener").await?;
        operator_addr = Some(addr);
        let incoming = tls::spawn_acceptor(
            listener,
            identity.clone(),
            trust.clone(),
            listen_limits(&cfg),
            shutdown.clone(),
        );
        let allowed = cfg.operator.allowed.clone();
        let svc = tonic::service::interceptor::InterceptedService::new(
            OperatorServer::new(operator::OperatorService::new(shared.clone()))
                .max_decoding_message_size(OPERATOR_MAX_MESSAGE),
            move |req: tonic::Request<()>| {
                let peer = req.extensions().get::<tls::PeerInfo>();
                match peer {
                    Some(p) if allowed.contains(&p.node_id) => Ok(req),
                    Some(p) => {
                        warn!(peer = %p.node_id, addr = %p.addr, "refused operator call: certificate not in operator.allowed");
                        Err(tonic::Status::permission_denied(format!(
                            "node {:?} may not use this node's operator API",
                            p.node_id
                        )))
                    }
                    None => Err(tonic::Status::unauthenticated(
                        "no verified client certificate",
                    )),
                }
            },
        );
        let token = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            let res = tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming_shutdown(
                    ReceiverStream::new(incoming),
                    token.cancelled_owned(),
                )
                .await;
            if let Err(e) = res {
                error!(error = %e, "operator TCP listener stopped");
            }
        }));
    }

    // Relay listener (children and inbox consumers), mutual TLS.
    let mut relay_addr = None;
    if let Some(relay) = &cfg.relay {
        let (listener, addr) = bind_tcp(relay.listen, "relay listener").await?;
        relay_addr = Some(addr);
        // Check the TLS configuration now, so a bad one fails at start.
        tls::server_config(&identity, &trust.snapshot())?;
        let limits = listen_limits(&cfg);
        let incoming = tls::spawn_acceptor(
            listener,
            identity.clone(),
            trust.clone(),
            limits,
            shutdown.clone(),
        );
        let relay_svc = RelayServer::new(relay::RelayService::new(shared.clone()))
            .max_decoding_message_size(max_msg);
        let inbox_svc = InboxServer::new(inbox::InboxService::new(shared.clone()));
        let health_svc = health_service(&["zhibao.v1.Relay", "zhibao.v1.Inbox"]).await;
        let token = shutdown.clone();
        let concurrency = cfg.limits.max_in_flight.max(16);
        tasks.push(tokio::spawn(async move {
            let res = tonic::transport::Server::builder()
                .concurrency_limit_per_connection(concurrency)
                .max_concurrent_streams(u32::try_from(concurrency).ok())
                .http2_keepalive_interval(Some(Duration::from_secs(20)))
                .http2_keepalive_timeout(Some(Duration::from_secs(10)))
                .add_service(relay_svc)
                .add_service(inbox_svc)
                .add_service(health_svc)
                .serve_with_incoming_shutdown(
                    ReceiverStream::new(incoming),
                    token.cancelled_owned(),
                )
                .await;
            if let Err(e) = res {
                error!(error = %e, "relay listener stopped");
            }
        }));
    }

    // Reload CA and CRL when their files change.
    {
        let trust = trust.clone();
        let token = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = token.cancelled() => return,
                }
                match trust.reload_if_changed() {
                    Ok(true) => info!("region CA/CRL changed; reloaded"),
                    Ok(false) => {}
                    Err(e) => warn!(error = %e, "CA/CRL changed but cannot be loaded; keeping the previous one"),
                }
            }
        }));
    }

    for up in &cfg.upstream {
        tasks.push(tokio::spawn(
            forward::Forwarder::new(shared.clone(), up.clone()).run(),
        ));
    }
    if !cfg.upstream.is_empty() {
        tasks.push(tokio::spawn(watch::run(shared.clone())));
    }

    info!(
        node = %cfg.node_id,
        relay = ?relay_addr,
        operator = %socket.display(),
        upstream = ?cfg.upstream.iter().map(|u| format!("{}@{} ({:?})", u.node_id, u.addr, u.role)).collect::<Vec<_>>(),
        "node started"
    );
    drop(shared);
    Ok(RunningNode {
        relay_addr,
        operator_addr,
        operator_socket: socket,
        node_id: cfg.node_id,
        shutdown,
        tasks,
        store_closed,
    })
}

/// The standard gRPC health service (`grpc.health.v1.Health`), reporting
/// the node and each of its services as serving while it runs.
async fn health_service(
    services: &[&str],
) -> tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health> {
    let (reporter, service) = tonic_health::server::health_reporter();
    for name in services {
        reporter
            .set_service_status(name, tonic_health::ServingStatus::Serving)
            .await;
    }
    service
}

async fn bind_tcp(addr: SocketAddr, what: &str) -> Result<(TcpListener, SocketAddr), StartError> {
    let bind_err = |source| StartError::Bind {
        what: format!("{what} {addr}"),
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(bind_err)?;
    let local = listener.local_addr().map_err(bind_err)?;
    Ok((listener, local))
}

fn listen_limits(cfg: &NodeConfig) -> ListenLimits {
    ListenLimits {
        max_connections: cfg.limits.max_connections,
        max_connections_per_peer: cfg.limits.max_connections_per_peer,
        handshake_timeout: Duration::from_secs(cfg.limits.handshake_timeout_secs),
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        // Without signal handlers the process can still be killed; run on.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = int.recv() => info!("SIGINT received"),
        _ = term.recv() => info!("SIGTERM received"),
    }
}
