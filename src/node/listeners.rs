//! The node's doors, bound at start and served once everything is bound:
//! - the operator socket (Unix; file permissions are the access control,
//!   and the mode is set before the socket appears under its name);
//! - optionally, the operator API over TCP with mutual TLS, for the
//!   certificates listed in `operator.allowed`;
//! - the relay listener (mutual TLS): children forward here, consumers read
//!   the inbox and record the office's decisions here; connections that ask
//!   for it are served apart, for urgent items (`urgent`).
//!
//! Every gRPC listener also serves the standard gRPC health service and
//! server reflection (`grpc.reflection.v1` and `v1alpha`, behind the same
//! mutual TLS), so standard tools can list and call the services. The
//! Prometheus endpoint, if configured, is bound here too and served by
//! [`crate::metrics`].

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::{TcpListener, UnixListener};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tracing::{error, warn};

use super::desk::DeskService;
use super::error::{Error, StartError};
use super::inbox::InboxService;
use super::operator::OperatorService;
use super::refusals::RefusalsLayer;
use super::relay::RelayService;
use super::who::Staff;
use crate::config::NodeConfig;
use crate::proto::{
    desk_server::DeskServer, inbox_server::InboxServer, operator_server::OperatorServer,
    relay_server::RelayServer,
};
use crate::tls::{self, ListenLimits, PeerInfo};
use crate::trust::{Keys, Trust};

/// The operator API's transport limit: the largest `max_report_bytes` and
/// default `max_attachment_bytes` together, plus room for the other fields.
/// Local operators get this generous limit so that a body over
/// `max_report_bytes` reaches the service and is refused with a message
/// naming the limit, rather than with a bare transport error.
const OPERATOR_MAX_MESSAGE: usize = 130 * 1024 * 1024;

/// A socket file that is removed when this is dropped: at the end of
/// serving, or if the node never got as far as serving.
#[derive(Debug)]
struct SocketFile(PathBuf);

impl SocketFile {
    /// Renames the file to `to`; the guard then follows it there.
    fn rename(mut self, to: &Path) -> std::io::Result<Self> {
        std::fs::rename(&self.0, to)?;
        // Nothing is left at the old name for this guard to remove.
        self.0 = PathBuf::new();
        Ok(Self(to.to_path_buf()))
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// The operator socket, bound, with its mode, under its name.
#[derive(Debug)]
pub(crate) struct OperatorSocket {
    listener: UnixListener,
    file: SocketFile,
}

/// Every listener of a node, bound.
#[derive(Debug)]
pub(crate) struct Bound {
    pub(crate) operator: OperatorSocket,
    pub(crate) operator_tcp: Option<(TcpListener, SocketAddr)>,
    pub(crate) relay: Option<(TcpListener, SocketAddr)>,
    /// The web desk (`[web]`), with its login token written.
    pub(crate) web: Option<crate::web::Door>,
    /// The metrics listener, and the bearer token scrapes must send, if
    /// `metrics.token_file` is set.
    pub(crate) metrics: Option<(TcpListener, SocketAddr, Option<String>)>,
}

/// Binds every listener the configuration names.
pub(crate) async fn bind(cfg: &NodeConfig) -> Result<Bound, StartError> {
    let operator = bind_operator_socket(&cfg.operator_socket(), cfg.socket_mode()?)?;
    let operator_tcp = match cfg.operator.listen {
        Some(addr) => Some(bind_tcp(addr, "operator.listen", "operator listener").await?),
        None => None,
    };
    let relay = match &cfg.relay {
        Some(r) => Some(bind_tcp(r.listen, "relay.listen", "relay listener").await?),
        None => None,
    };
    let web = match &cfg.web {
        Some(w) => Some(crate::web::Door::open(w, &cfg.data_dir).await?),
        None => None,
    };
    let metrics = match cfg.metrics.listen {
        Some(addr) => {
            // Read before binding: a node whose configured token cannot be
            // used serves no metrics at all, rather than serving them open.
            let token = match &cfg.metrics.token_file {
                Some(path) => Some(crate::secret::read_secret_file(path).map_err(|source| {
                    StartError::Secret {
                        field: "metrics.token_file",
                        source,
                    }
                })?),
                None => None,
            };
            let (listener, bound) = bind_tcp(addr, "metrics.listen", "metrics listener").await?;
            if token.is_none() && !addr.ip().is_loopback() {
                warn!(listen = %bound, "metrics are served to anyone who can reach this address: set metrics.token_file, or bind to loopback");
            }
            Some((listener, bound, token))
        }
        None => None,
    };
    Ok(Bound {
        operator,
        operator_tcp,
        relay,
        web,
        metrics,
    })
}

fn bind_operator_socket(socket: &Path, mode: u32) -> Result<OperatorSocket, StartError> {
    let bind_err = |what: String, source| StartError::Bind {
        field: "operator.socket",
        what,
        source,
    };
    if let Some(dir) = socket.parent() {
        crate::store::create_data_dir(dir)
            .map_err(|e| bind_err(format!("operator socket directory {}", dir.display()), e))?;
    }
    let named = format!("operator socket {}", socket.display());
    if socket.exists() {
        // A socket file left by a killed node; refuse to steal a live one.
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return Err(bind_err(
                named,
                std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    "another node is serving on it",
                ),
            ));
        }
        let _ = std::fs::remove_file(socket);
    }
    // Bound under a temporary name and given its mode before it is renamed
    // into place, so nobody can connect while it has the default mode.
    let staging = socket.with_extension(format!("binding-{}", std::process::id()));
    let _ = std::fs::remove_file(&staging);
    let listener = UnixListener::bind(&staging).map_err(|e| bind_err(named.clone(), e))?;
    let staged = SocketFile(staging);
    std::fs::set_permissions(&staged.0, std::fs::Permissions::from_mode(mode))
        .map_err(|e| bind_err(format!("mode of {named}"), e))?;
    let file = staged.rename(socket).map_err(|e| bind_err(named, e))?;
    Ok(OperatorSocket { listener, file })
}

pub(crate) async fn bind_tcp(
    addr: SocketAddr,
    field: &'static str,
    what: &str,
) -> Result<(TcpListener, SocketAddr), StartError> {
    let bind_err = |source| StartError::Bind {
        field,
        what: format!("{what} {addr}"),
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(bind_err)?;
    let local = listener.local_addr().map_err(bind_err)?;
    Ok((listener, local))
}

/// The standard gRPC health service (`grpc.health.v1.Health`), reporting
/// the node and each of `services` as serving while it runs.
pub(crate) async fn health_service(
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

/// The standard gRPC server reflection, v1 and v1alpha, describing every
/// zhibao service and health.
pub(crate) fn reflection_services() -> (
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
    tonic_reflection::server::v1alpha::ServerReflectionServer<
        impl tonic_reflection::server::v1alpha::ServerReflection,
    >,
) {
    let build = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    // Both descriptor sets are compiled in: building from them cannot fail
    // unless the build itself is broken, which the tests would show.
    let v1 = build().build_v1().expect("compiled-in descriptor sets");
    let v1alpha = build()
        .build_v1alpha()
        .expect("compiled-in descriptor sets");
    (v1, v1alpha)
}

/// Serves the operator API on its Unix socket until `shutdown`, each call
/// in the name of the local user `staff` finds by its uid; the socket file
/// goes when serving ends.
pub(crate) async fn serve_operator_socket(
    socket: OperatorSocket,
    service: Arc<OperatorService>,
    staff: Staff,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let health = health_service(&["zhibao.v1.Operator"]).await;
    let (reflection, reflection_alpha) = reflection_services();
    let svc = tonic::service::interceptor::InterceptedService::new(
        OperatorServer::from_arc(service).max_decoding_message_size(OPERATOR_MAX_MESSAGE),
        move |mut req: tonic::Request<()>| {
            let actor = staff.identify(&req)?;
            req.extensions_mut().insert(actor);
            Ok(req)
        },
    );
    tokio::spawn(async move {
        let OperatorSocket { listener, file } = socket;
        let res = Server::builder()
            .layer(RefusalsLayer::new("operator socket"))
            .add_service(svc)
            .add_service(health)
            .add_service(reflection)
            .add_service(reflection_alpha)
            .serve_with_incoming_shutdown(
                UnixListenerStream::new(listener),
                shutdown.cancelled_owned(),
            )
            .await;
        if let Err(e) = res {
            error!(error = %e, "operator API stopped");
        }
        drop(file);
    })
}

/// Serves the operator API over mutual TLS until `shutdown`, to the
/// certificates in `allowed` only.
pub(crate) fn serve_operator_tcp(
    listener: TcpListener,
    service: Arc<OperatorService>,
    allowed: Vec<String>,
    staff: Staff,
    doors: &Doors,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let incoming = doors.accept(listener, &shutdown);
    // Reflection here answers the same certificates as the operator API.
    let listed = {
        let allowed = allowed.clone();
        move |req: tonic::Request<()>| {
            let peer = PeerInfo::of(&req).ok_or(Error::NoPeer)?;
            if allowed.contains(&peer.node_id) {
                return Ok(req);
            }
            warn!(peer = %peer.node_id, addr = %peer.addr, "refused reflection call: certificate not in operator.allowed");
            Err(tonic::Status::from(Error::NotOperator(peer.node_id)))
        }
    };
    let (reflection, reflection_alpha) = reflection_services();
    let reflection =
        tonic::service::interceptor::InterceptedService::new(reflection, listed.clone());
    let reflection_alpha =
        tonic::service::interceptor::InterceptedService::new(reflection_alpha, listed);
    let svc = tonic::service::interceptor::InterceptedService::new(
        OperatorServer::from_arc(service).max_decoding_message_size(OPERATOR_MAX_MESSAGE),
        move |mut req: tonic::Request<()>| {
            let peer = PeerInfo::of(&req).ok_or(Error::NoPeer)?;
            if allowed.contains(&peer.node_id) {
                let actor = staff.by_certificate(&peer.node_id);
                req.extensions_mut().insert(actor);
                return Ok(req);
            }
            warn!(peer = %peer.node_id, addr = %peer.addr, "refused operator call: certificate not in operator.allowed");
            Err(Error::NotOperator(peer.node_id).into())
        },
    );
    tokio::spawn(async move {
        let res = Server::builder()
            .layer(RefusalsLayer::new("operator listener"))
            .add_service(svc)
            .add_service(reflection)
            .add_service(reflection_alpha)
            .serve_with_incoming_shutdown(ReceiverStream::new(incoming), shutdown.cancelled_owned())
            .await;
        if let Err(e) = res {
            error!(error = %e, "operator TCP listener stopped");
        }
    })
}

/// Serves `Relay`, `Inbox`, `Desk` and health over mutual TLS until
/// `shutdown`.
pub(crate) async fn serve_relay(
    listener: TcpListener,
    relay: Arc<RelayService>,
    inbox: Arc<InboxService>,
    desk: Arc<DeskService>,
    doors: &Doors,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let (routine, urgent) = super::urgent::split(doors.accept(listener, &shutdown));
    let (concurrency, streams) = (doors.concurrency, doors.streams);
    let relay_svc = RelayServer::from_arc(relay).max_decoding_message_size(doors.max_message);
    let inbox_svc = InboxServer::from_arc(inbox);
    let desk_svc = DeskServer::from_arc(desk);
    let health = health_service(&["zhibao.v1.Relay", "zhibao.v1.Inbox", "zhibao.v1.Desk"]).await;
    let keepalive = doors.keepalive;
    let (reflection, reflection_alpha) = reflection_services();
    let router = Server::builder()
        .concurrency_limit_per_connection(concurrency)
        .max_concurrent_streams(Some(streams))
        .http2_keepalive_interval(Some(keepalive.keepalive_interval))
        .http2_keepalive_timeout(Some(keepalive.keepalive_timeout))
        .layer(RefusalsLayer::new("relay listener"))
        .add_service(relay_svc)
        .add_service(inbox_svc)
        .add_service(desk_svc)
        .add_service(health)
        .add_service(reflection)
        .add_service(reflection_alpha);
    // The same services, for connections that asked to be served apart.
    let urgent = super::urgent::spawn({
        let (router, shutdown) = (router.clone(), shutdown.clone());
        async move {
            let res = router
                .serve_with_incoming_shutdown(
                    ReceiverStream::new(urgent),
                    shutdown.cancelled_owned(),
                )
                .await;
            if let Err(e) = res {
                error!(error = %e, "relay listener (urgent connections) stopped");
            }
        }
    });
    tokio::spawn(async move {
        let res = router
            .serve_with_incoming_shutdown(ReceiverStream::new(routine), shutdown.cancelled_owned())
            .await;
        if let Err(e) = res {
            error!(error = %e, "relay listener stopped");
        }
        urgent.await;
    })
}

/// What every mutual-TLS listener of a node shares: who it is, whom it
/// trusts, and its limits.
#[derive(Clone)]
pub(crate) struct Doors {
    pub(crate) keys: Arc<Keys>,
    pub(crate) trust: Arc<Trust>,
    pub(crate) limits: ListenLimits,
    /// Requests at once per connection.
    pub(crate) concurrency: usize,
    /// HTTP/2 streams at once per connection.
    pub(crate) streams: u32,
    /// Largest message on the relay listener.
    pub(crate) max_message: usize,
    /// HTTP/2 pings, so a silent peer is dropped.
    pub(crate) keepalive: tls::ConnectOptions,
    /// Told about every connection cut for a revoked peer.
    pub(crate) on_cut: tls::CutHook,
    /// Told about every connection refused at the handshake.
    pub(crate) on_refused: tls::RefusalHook,
}

impl std::fmt::Debug for Doors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Doors")
            .field("limits", &self.limits)
            .field("streams", &self.streams)
            .finish_non_exhaustive()
    }
}

impl Doors {
    fn accept(
        &self,
        listener: TcpListener,
        shutdown: &CancellationToken,
    ) -> tokio::sync::mpsc::Receiver<Result<tls::PeerStream, std::io::Error>> {
        tls::spawn_acceptor(
            listener,
            self.keys.clone(),
            self.trust.clone(),
            self.limits,
            Some(self.on_cut.clone()),
            self.on_refused.clone(),
            shutdown.clone(),
        )
    }
}
