//! A listener's accept loop and its budgets.
//!
//! Strangers and peers are budgeted apart: a connection still in its TLS
//! handshake counts against a small budget of pending handshakes (when it
//! is full, the oldest pending one is dropped for the newest, so thousands
//! of idle sockets never keep a county waiting) with a short timeout; only
//! an authenticated connection counts against the connection budget and
//! its node's share of it. While the CRL is stale, nobody gets in. Every
//! refusal is logged naming the peer; floods are logged once a minute with
//! a count. What comes out is a [`PeerStream`] whose verified [`PeerInfo`]
//! tonic puts in every request's extensions.

use std::cell::Cell;
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::peer::{CutHook, Live, PeerCounts, PeerInfo, PeerSlot, PeerStream};
use rustls::ServerConfig;

use super::server_config;
use crate::telemetry::Throttle;
use crate::trust::{Freshness, Keys, Trust, node_id_of};

thread_local! {
    /// The peer whose handshake is being polled on this thread, so the
    /// certificate verifier (which rustls calls synchronously inside that
    /// poll) can name it in its log line.
    static HANDSHAKE_PEER: Cell<Option<SocketAddr>> = const { Cell::new(None) };
}

/// The peer whose handshake is being polled on this thread, if any.
pub(super) fn handshake_peer() -> Option<SocketAddr> {
    HANDSHAKE_PEER.with(Cell::get)
}

/// Polls a handshake future with [`HANDSHAKE_PEER`] set.
struct WithPeer<F> {
    peer: SocketAddr,
    inner: F,
}

impl<F: Future + Unpin> Future for WithPeer<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let peer = self.peer;
        HANDSHAKE_PEER.with(|p| p.set(Some(peer)));
        let out = Pin::new(&mut self.inner).poll(cx);
        HANDSHAKE_PEER.with(|p| p.set(None));
        out
    }
}

/// Told the reason of every connection refused at the TLS handshake or
/// right after it (the node counts them in its metrics).
#[derive(Clone, Default)]
pub struct RefusalHook(Option<Arc<dyn Fn(&'static str) + Send + Sync>>);

impl RefusalHook {
    /// A hook calling `f` with each refusal's reason.
    pub fn new(f: impl Fn(&'static str) + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(f)))
    }

    fn tell(&self, reason: &'static str) {
        if let Some(f) = &self.0 {
            f(reason);
        }
    }
}

impl std::fmt::Debug for RefusalHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RefusalHook")
            .field(&self.0.is_some())
            .finish()
    }
}

/// Budgets and time limits of a mutual-TLS listener.
#[derive(Debug, Clone, Copy)]
pub struct ListenLimits {
    /// Established (authenticated) connections at once, all peers.
    pub max_connections: usize,
    /// Established connections at once from one node.
    pub max_connections_per_peer: usize,
    /// Connections still in their TLS handshake at once. Strangers get
    /// only this: when it is full, the oldest pending handshake is dropped
    /// for the newest, so idle sockets never hold the door shut.
    pub max_handshakes: usize,
    /// Time allowed for a TLS handshake.
    pub handshake_timeout: Duration,
}

/// Runs the accept loop on `listener` until `shutdown`, yielding verified
/// connections on the returned channel (which tonic serves), and cuts
/// established connections whose certificate stops passing.
pub fn spawn_acceptor(
    listener: TcpListener,
    keys: Arc<Keys>,
    trust: Arc<Trust>,
    limits: ListenLimits,
    on_cut: Option<CutHook>,
    on_refused: RefusalHook,
    shutdown: CancellationToken,
) -> mpsc::Receiver<Result<PeerStream, io::Error>> {
    let (tx, rx) = mpsc::channel(64);
    let live = Arc::new(Live::default());
    tokio::spawn(recheck(
        live.clone(),
        trust.clone(),
        on_cut,
        shutdown.clone(),
    ));
    let acceptor = Acceptor {
        keys,
        trust,
        limits,
        established: Arc::new(Semaphore::new(limits.max_connections)),
        per_peer: Arc::default(),
        silent: Arc::new(Pending::telling(on_refused.clone())),
        shaking: Arc::new(Pending::telling(on_refused.clone())),
        on_refused,
        live,
        cached: None,
    };
    tokio::spawn(acceptor.run(listener, shutdown, tx));
    rx
}

/// Cuts established connections whose certificate no longer passes: when
/// the CA or CRL changes, and while the CRL is stale.
async fn recheck(
    live: Arc<Live>,
    trust: Arc<Trust>,
    on_cut: Option<CutHook>,
    shutdown: CancellationToken,
) {
    let mut changes = trust.changes();
    let mut tick = tokio::time::interval(RECHECK_STALE);
    loop {
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            _ = tick.tick() => {
                if !trust.freshness(SystemTime::now()).is_stale() {
                    continue;
                }
            }
            () = shutdown.cancelled() => return,
        }
        let cut = live.recheck(&trust, on_cut.as_ref());
        if cut > 0 {
            info!(
                cut,
                "connections of peers whose certificate no longer passes closed"
            );
        }
    }
}

/// How often established connections are checked again while the CRL is
/// stale (every check fails then: relay traffic stops).
const RECHECK_STALE: Duration = Duration::from_secs(2);

/// Handshakes in progress, oldest first, each with the token that drops it.
#[derive(Debug, Default)]
struct Pending {
    next: std::sync::atomic::AtomicU64,
    queue: Mutex<VecDeque<(u64, CancellationToken)>>,
    refused: RefusalHook,
}

impl Pending {
    fn telling(refused: RefusalHook) -> Self {
        Self {
            refused,
            ..Self::default()
        }
    }

    /// Adds a handshake, dropping the oldest if `max` are in progress.
    fn add(&self, max: usize) -> (u64, CancellationToken, bool) {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let token = CancellationToken::new();
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let evicted = queue.len() >= max.max(1);
        if evicted && let Some((_, oldest)) = queue.pop_front() {
            oldest.cancel();
        }
        queue.push_back((id, token.clone()));
        (id, token, evicted)
    }

    /// A handshake is over, one way or another.
    fn done(&self, id: u64) {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = queue.iter().position(|(i, _)| *i == id) {
            queue.remove(at);
        }
    }

    /// Runs one step of a handshake in this pool: `None` if it is dropped
    /// for a newer one or does not finish within `limit` (both logged).
    async fn run<T>(
        &self,
        peer: SocketAddr,
        limits: ListenLimits,
        limit: Duration,
        step: impl Future<Output = T>,
    ) -> Option<T> {
        let (id, dropped, evicted) = self.add(limits.max_handshakes);
        if evicted && let Some(left_out) = EVICTED.allow() {
            warn!(%peer, limit = limits.max_handshakes, left_out,
                "too many TLS handshakes at once: the oldest pending one was dropped for this one");
        }
        let out = tokio::select! {
            r = tokio::time::timeout(limit, step) => r.ok(),
            () = dropped.cancelled() => None,
        };
        self.done(id);
        if out.is_none() {
            let why = if dropped.is_cancelled() {
                "evicted"
            } else {
                "timeout"
            };
            self.refused.tell(why);
        }
        if out.is_none()
            && !dropped.is_cancelled()
            && let Some(left_out) = SLOW.allow()
        {
            warn!(%peer, left_out, "refused TLS client: handshake not finished in time");
        }
        out
    }
}

/// One listener's accept loop and its budgets.
struct Acceptor {
    keys: Arc<Keys>,
    trust: Arc<Trust>,
    limits: ListenLimits,
    /// One per authenticated connection, taken after its handshake.
    established: Arc<Semaphore>,
    per_peer: PeerCounts,
    /// Connections that have not sent their ClientHello yet.
    silent: Arc<Pending>,
    /// Connections in the rest of their handshake.
    shaking: Arc<Pending>,
    live: Arc<Live>,
    /// The TLS configuration for the current (CA/CRL, keys) generations.
    cached: Option<((u64, u64), Arc<ServerConfig>)>,
    on_refused: RefusalHook,
}

/// Repeated refusals are logged once a minute, with a count.
static EVICTED: Throttle = Throttle::new(Duration::from_secs(60));
static STALE: Throttle = Throttle::new(Duration::from_secs(60));
static FULL: Throttle = Throttle::new(Duration::from_secs(60));
static SLOW: Throttle = Throttle::new(Duration::from_secs(60));

impl Acceptor {
    async fn run(
        mut self,
        listener: TcpListener,
        shutdown: CancellationToken,
        tx: mpsc::Sender<Result<PeerStream, io::Error>>,
    ) {
        let mut backoff = ACCEPT_BACKOFF_MIN;
        loop {
            let (tcp, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => { backoff = ACCEPT_BACKOFF_MIN; x }
                    Err(e) => {
                        // Usually EMFILE: back off rather than spin or exit.
                        warn!(error = %e, "listener failed to accept a connection");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                        continue;
                    }
                },
                () = shutdown.cancelled() => return,
            };
            if let Freshness::Stale { expired } = self.trust.freshness(SystemTime::now()) {
                self.on_refused.tell("crl_stale");
                if let Some(left_out) = STALE.allow() {
                    warn!(%peer, expired, left_out, "refused connection: the region CRL is stale; waiting for a fresh one");
                }
                continue;
            }
            let Some(config) = self.tls_config(peer) else {
                continue;
            };
            tokio::spawn(self.admit(config, tcp, peer, tx.clone()));
        }
    }

    /// Completes one connection: handshake (unless dropped for a newer
    /// one), budgets, registration; hands it to tonic.
    fn admit(
        &self,
        config: Arc<ServerConfig>,
        tcp: TcpStream,
        peer: SocketAddr,
        tx: mpsc::Sender<Result<PeerStream, io::Error>>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let (limits, per_peer) = (self.limits, self.per_peer.clone());
        let pools = (self.silent.clone(), self.shaking.clone());
        let (established, live) = (self.established.clone(), self.live.clone());
        let trust = self.trust.clone();
        let refused = self.on_refused.clone();
        async move {
            let Some((tls, node_id, cert, urgent)) =
                handshake(config, tcp, peer, limits, pools, &refused).await
            else {
                return;
            };
            // The CA or CRL may have changed while the handshake ran (and
            // the recheck of live connections ran before this one was one).
            if let Err(why) = trust.check_cert(&cert, SystemTime::now()) {
                refused.tell("certificate_no_longer_valid");
                warn!(%peer, node = %node_id, reason = %why, "refused connection: the peer's certificate no longer passes");
                return;
            }
            let Ok(permit) = established.try_acquire_owned() else {
                refused.tell("max_connections");
                if let Some(left_out) = FULL.allow() {
                    warn!(%peer, node = %node_id, limit = limits.max_connections, left_out,
                        "refused connection: the listener has its maximum of connections");
                }
                return;
            };
            let Some(slot) = PeerSlot::take(&per_peer, &node_id, limits) else {
                refused.tell("max_connections_per_peer");
                warn!(%peer, node = %node_id, limit = limits.max_connections_per_peer,
                    "refused connection: node already has the maximum number of connections");
                return;
            };
            debug!(%peer, node = %node_id, "mutual TLS connection established");
            let info = PeerInfo {
                node_id,
                addr: peer,
                urgent,
            };
            let (ticket, cut) = live.register(info.clone(), cert);
            let stream = PeerStream::new(tls, info, cut, (permit, slot, ticket));
            let _ = tx.send(Ok(stream)).await;
        }
    }

    /// The TLS configuration for the current CA and CRL, rebuilt when they
    /// change.
    fn tls_config(&mut self, peer: SocketAddr) -> Option<Arc<ServerConfig>> {
        let snap = self.trust.snapshot();
        let generation = (snap.generation, *self.keys.changes().borrow());
        if let Some((cached, cfg)) = &self.cached
            && *cached == generation
        {
            return Some(cfg.clone());
        }
        match server_config(&self.keys.current(), &snap) {
            Ok(cfg) => {
                let cfg = Arc::new(cfg);
                self.cached = Some((generation, cfg.clone()));
                Some(cfg)
            }
            Err(e) => {
                warn!(%peer, error = %e, "refused TLS client: cannot build the TLS configuration");
                None
            }
        }
    }
}

/// Shortest and longest wait after a failed `accept`.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// A stranger has this long to send its ClientHello (within the whole
/// handshake time limit).
const HELLO_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs the TLS handshake in two steps, each in its own pool of pending
/// handshakes (a newcomer drops the oldest when a pool is full) and within
/// the time limit: waiting for the ClientHello, then the rest. Returns the
/// connection, the node its verified certificate names and that
/// certificate, or logs why not.
async fn handshake(
    config: Arc<ServerConfig>,
    tcp: TcpStream,
    peer: SocketAddr,
    limits: ListenLimits,
    (silent, shaking): (Arc<Pending>, Arc<Pending>),
    refused: &RefusalHook,
) -> Option<(
    tokio_rustls::server::TlsStream<TcpStream>,
    String,
    Vec<u8>,
    bool,
)> {
    let _ = tcp.set_nodelay(true);
    let started = tokio::time::Instant::now();
    let hello = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp);
    let hello_limit = HELLO_TIMEOUT.min(limits.handshake_timeout);
    let start = match silent.run(peer, limits, hello_limit, hello).await? {
        Ok(start) => start,
        Err(e) => {
            refused.tell(log_handshake_error(peer, &e));
            return None;
        }
    };
    // Asked for before the handshake goes on, so the connection can be
    // served apart from its first byte on (see `node::urgent`).
    let urgent = start
        .client_hello()
        .alpn()
        .is_some_and(|mut offered| offered.any(|p| p == super::URGENT_ALPN));
    let rest = WithPeer {
        peer,
        inner: start.into_stream(config),
    };
    let left = limits.handshake_timeout.saturating_sub(started.elapsed());
    let tls = match shaking.run(peer, limits, left, rest).await? {
        Ok(tls) => tls,
        Err(e) => {
            refused.tell(log_handshake_error(peer, &e));
            return None;
        }
    };
    let cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec());
    let node_id = cert.as_deref().and_then(node_id_of);
    // The verifier already insisted on a node id; this is a second lock on the door.
    let (Some(node_id), Some(cert)) = (node_id, cert) else {
        warn!(%peer, "refused TLS client: no node id after handshake");
        refused.tell("no_node_id");
        return None;
    };
    Some((tls, node_id, cert, urgent))
}

/// Logs why a handshake failed; returns the reason's metric label.
fn log_handshake_error(peer: SocketAddr, e: &io::Error) -> &'static str {
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    match inner {
        Some(rustls::Error::NoCertificatesPresented) => {
            warn!(%peer, reason = "no client certificate", "refused TLS client: no client certificate presented");
            "no_client_certificate"
        }
        // Already logged, with the claimed identity, by the verifier.
        Some(rustls::Error::InvalidCertificate(why)) => match why {
            rustls::CertificateError::Revoked => "revoked",
            rustls::CertificateError::Expired | rustls::CertificateError::ExpiredContext { .. } => {
                "expired"
            }
            rustls::CertificateError::UnknownIssuer => "unknown_issuer",
            _ => "bad_certificate",
        },
        Some(rustls::Error::PeerIncompatible(p)) => {
            warn!(%peer, reason = "incompatible", detail = ?p, "refused TLS client: it cannot speak TLS 1.3 (only TLS 1.3 is offered)");
            "incompatible"
        }
        Some(other) => {
            warn!(%peer, error = %other, "refused TLS client: handshake failed");
            "handshake_failed"
        }
        None => {
            if let Some(left_out) = SLOW.allow() {
                info!(%peer, error = %e, left_out, "TLS handshake did not complete");
            }
            "incomplete"
        }
    }
}
