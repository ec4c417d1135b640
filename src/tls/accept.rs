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
    counts: Arc<Mutex<HashMap<String, usize>>>,
    node: String,
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
    tokio::spawn(async move {
        let permits = Arc::new(Semaphore::new(limits.max_connections));
        let per_peer = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
        let mut cached: Option<(u64, TlsAcceptor)> = None;
        let mut backoff = Duration::from_millis(5);
        loop {
            let permit = tokio::select! {
                p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
                () = shutdown.cancelled() => return,
            };
            let (tcp, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => { backoff = Duration::from_millis(5); x }
                    Err(e) => {
                        // Usually EMFILE: back off rather than spin or exit.
                        warn!(error = %e, "relay listener failed to accept a connection");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        continue;
                    }
                },
                () = shutdown.cancelled() => return,
            };
            let snap = trust.snapshot();
            let acceptor = match &cached {
                Some((generation, acc)) if *generation == snap.generation => acc.clone(),
                _ => match server_config(&identity, &snap) {
                    Ok(cfg) => {
                        let acc = TlsAcceptor::from(Arc::new(cfg));
                        cached = Some((snap.generation, acc.clone()));
                        acc
                    }
                    Err(e) => {
                        warn!(error = %e, "cannot build TLS configuration; refusing connection from {peer}");
                        continue;
                    }
                },
            };
            let tx = tx.clone();
            let per_peer = per_peer.clone();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let handshake = WithPeer {
                    peer,
                    inner: acceptor.accept(tcp),
                };
                let tls = match tokio::time::timeout(limits.handshake_timeout, handshake).await {
                    Err(_) => {
                        warn!(%peer, "refused TLS client: handshake not finished in {:?}", limits.handshake_timeout);
                        return;
                    }
                    Ok(Err(e)) => {
                        log_handshake_error(peer, &e);
                        return;
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
                let Some(node_id) = node_id else {
                    warn!(%peer, "refused TLS client: no node id after handshake");
                    return;
                };
                let slot = {
                    let mut counts = per_peer.lock().unwrap_or_else(|e| e.into_inner());
                    let n = counts.entry(node_id.clone()).or_insert(0);
                    if *n >= limits.max_connections_per_peer {
                        warn!(%peer, node = %node_id, limit = limits.max_connections_per_peer,
                            "refused connection: node already has the maximum number of connections");
                        return;
                    }
                    *n += 1;
                    PeerSlot {
                        counts: per_peer.clone(),
                        node: node_id.clone(),
                    }
                };
                debug!(%peer, node = %node_id, "relay connection established");
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
    });
    rx
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
