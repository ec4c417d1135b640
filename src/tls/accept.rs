//! A listener's accept loop: a connection budget taken before `accept`, a
//! handshake timeout, a limit per peer node, and one log line for every
//! refusal. What comes out is a [`PeerStream`] whose verified [`PeerInfo`]
//! tonic puts in every request's extensions.

use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;
use tracing::{debug, info, warn};

use super::server_config;
use crate::trust::{Identity, Trust, node_id_of};

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

/// The verified identity of the peer on a relay connection.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The node id from the peer's verified client certificate.
    pub node_id: String,
    /// The peer's socket address.
    pub addr: SocketAddr,
}

/// A TLS connection whose peer has been verified, holding its share of the
/// connection limits until it closes.
pub struct PeerStream {
    inner: tokio_rustls::server::TlsStream<TcpStream>,
    info: PeerInfo,
    _permit: tokio::sync::OwnedSemaphorePermit,
    _per_peer: PeerSlot,
}

impl std::fmt::Debug for PeerStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerStream")
            .field("info", &self.info)
            .finish()
    }
}

impl PeerInfo {
    /// The verified peer of a request that came over a mutual-TLS listener;
    /// `None` for a request that did not (the operator socket).
    pub fn of<T>(req: &tonic::Request<T>) -> Option<Self> {
        req.extensions().get::<Self>().cloned()
    }
}

impl Connected for PeerStream {
    type ConnectInfo = PeerInfo;
    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Counts connections per peer node; the slot gives its place back on drop.
struct PeerSlot {
    counts: PeerCounts,
    node: String,
}

impl PeerSlot {
    /// A place for one more connection of `node`, if it has room.
    fn take(counts: &PeerCounts, node: &str, limits: ListenLimits) -> Option<Self> {
        let mut all = counts.lock().unwrap_or_else(|e| e.into_inner());
        let n = all.entry(node.to_string()).or_insert(0);
        if *n >= limits.max_connections_per_peer {
            return None;
        }
        *n += 1;
        Some(Self {
            counts: counts.clone(),
            node: node.to_string(),
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&self.node) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.node);
            }
        }
    }
}

/// Limits for the relay listener.
#[derive(Debug, Clone, Copy)]
pub struct ListenLimits {
    /// Connections at once, all peers together (handshakes included).
    pub max_connections: usize,
    /// Connections at once from one node.
    pub max_connections_per_peer: usize,
    /// Time allowed for a TLS handshake.
    pub handshake_timeout: Duration,
}

/// Runs the accept loop on `listener` until `shutdown`, yielding verified
/// connections on the returned channel (which tonic serves).
pub fn spawn_acceptor(
    listener: TcpListener,
    identity: Arc<Identity>,
    trust: Arc<Trust>,
    limits: ListenLimits,
    shutdown: CancellationToken,
) -> mpsc::Receiver<Result<PeerStream, io::Error>> {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = Acceptor {
        identity,
        trust,
        limits,
        permits: Arc::new(Semaphore::new(limits.max_connections)),
        per_peer: Arc::default(),
        cached: None,
    };
    tokio::spawn(acceptor.run(listener, shutdown, tx));
    rx
}

/// Connections at once per node, shared by a listener's connections.
type PeerCounts = Arc<Mutex<HashMap<String, usize>>>;

/// One listener's accept loop and its budgets.
struct Acceptor {
    identity: Arc<Identity>,
    trust: Arc<Trust>,
    limits: ListenLimits,
    /// One per connection, handshakes included, taken before `accept`.
    permits: Arc<Semaphore>,
    per_peer: PeerCounts,
    /// The TLS acceptor for the current CA/CRL generation.
    cached: Option<(u64, TlsAcceptor)>,
}

impl Acceptor {
    async fn run(
        mut self,
        listener: TcpListener,
        shutdown: CancellationToken,
        tx: mpsc::Sender<Result<PeerStream, io::Error>>,
    ) {
        let mut backoff = ACCEPT_BACKOFF_MIN;
        loop {
            let permit = tokio::select! {
                p = self.permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
                () = shutdown.cancelled() => return,
            };
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
            let Some(tls) = self.tls_acceptor(peer) else {
                continue;
            };
            let (limits, per_peer, tx) = (self.limits, self.per_peer.clone(), tx.clone());
            tokio::spawn(async move {
                let Some((tls, node_id)) = handshake(tls, tcp, peer, limits).await else {
                    return;
                };
                let Some(slot) = PeerSlot::take(&per_peer, &node_id, limits) else {
                    warn!(%peer, node = %node_id, limit = limits.max_connections_per_peer,
                        "refused connection: node already has the maximum number of connections");
                    return;
                };
                debug!(%peer, node = %node_id, "mutual TLS connection established");
                let stream = PeerStream {
                    inner: tls,
                    info: PeerInfo {
                        node_id,
                        addr: peer,
                    },
                    _permit: permit,
                    _per_peer: slot,
                };
                let _ = tx.send(Ok(stream)).await;
            });
        }
    }

    /// The TLS acceptor for the current CA and CRL, rebuilt when they change.
    fn tls_acceptor(&mut self, peer: SocketAddr) -> Option<TlsAcceptor> {
        let snap = self.trust.snapshot();
        if let Some((generation, acc)) = &self.cached
            && *generation == snap.generation
        {
            return Some(acc.clone());
        }
        match server_config(&self.identity, &snap) {
            Ok(cfg) => {
                let acc = TlsAcceptor::from(Arc::new(cfg));
                self.cached = Some((snap.generation, acc.clone()));
                Some(acc)
            }
            Err(e) => {
                warn!(error = %e, "cannot build TLS configuration; refusing connection from {peer}");
                None
            }
        }
    }
}

/// Shortest and longest wait after a failed `accept`.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Runs the TLS handshake within the time limit; returns the connection
/// and the node its verified certificate names, or logs why not.
async fn handshake(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    limits: ListenLimits,
) -> Option<(tokio_rustls::server::TlsStream<TcpStream>, String)> {
    let _ = tcp.set_nodelay(true);
    let handshake = WithPeer {
        peer,
        inner: acceptor.accept(tcp),
    };
    let tls = match tokio::time::timeout(limits.handshake_timeout, handshake).await {
        Err(_) => {
            warn!(%peer, "refused TLS client: handshake not finished in {:?}", limits.handshake_timeout);
            return None;
        }
        Ok(Err(e)) => {
            log_handshake_error(peer, &e);
            return None;
        }
        Ok(Ok(tls)) => tls,
    };
    let node_id = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| node_id_of(c));
    // The verifier already insisted on a node id; this is a second lock on the door.
    if node_id.is_none() {
        warn!(%peer, "refused TLS client: no node id after handshake");
    }
    Some((tls, node_id?))
}

fn log_handshake_error(peer: SocketAddr, e: &io::Error) {
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    match inner {
        Some(rustls::Error::NoCertificatesPresented) => {
            warn!(%peer, reason = "no client certificate", "refused TLS client: no client certificate presented");
        }
        // Already logged, with the claimed identity, by the verifier.
        Some(rustls::Error::InvalidCertificate(_)) => {}
        Some(rustls::Error::PeerIncompatible(p)) => {
            warn!(%peer, reason = "incompatible", "refused TLS client: {p:?} (only TLS 1.3 is offered)");
        }
        Some(other) => warn!(%peer, error = %other, "refused TLS client: handshake failed"),
        None => info!(%peer, error = %e, "TLS handshake did not complete"),
    }
}
