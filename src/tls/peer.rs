//! A verified peer and its connection: who it is ([`PeerInfo`], in every
//! request's extensions), what it holds of the listener's budgets, and how
//! it is cut when its certificate stops being good.
//!
//! Every established connection is registered with its certificate. When
//! the CA or CRL changes, or the CRL goes stale, `Live::recheck` checks
//! each one again and cuts those whose certificate no longer passes: the
//! connection fails its next read and write, so hyper closes it and every
//! stream on it ends — inbox subscriptions, `Forward` streams in both
//! directions, operator calls. Nothing more is sent to a revoked peer.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::SystemTime;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::transport::server::Connected;
use tracing::warn;

use super::accept::ListenLimits;
use crate::trust::Trust;

/// The verified identity of the peer on a mutual-TLS connection.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The node id from the peer's verified client certificate.
    pub node_id: String,
    /// The peer's socket address.
    pub addr: SocketAddr,
    /// Whether the peer asked for this connection to be served apart, as
    /// one for urgent items only (it offered [`super::URGENT_ALPN`]).
    pub urgent: bool,
}

impl PeerInfo {
    /// The verified peer of a request that came over a mutual-TLS listener;
    /// `None` for a request that did not (the operator socket).
    pub fn of<T>(req: &tonic::Request<T>) -> Option<Self> {
        req.extensions().get::<Self>().cloned()
    }
}

/// Told about every connection cut because its peer's certificate no
/// longer passes: the peer, and why.
pub type CutHook = std::sync::Arc<dyn Fn(&PeerInfo, &str) + Send + Sync>;

/// One registered connection.
#[derive(Debug)]
struct Entry {
    info: PeerInfo,
    cert: Vec<u8>,
    cut: CancellationToken,
}

/// The established connections of one listener, by registration number.
#[derive(Debug, Default)]
pub(super) struct Live {
    next: AtomicU64,
    all: Mutex<HashMap<u64, Entry>>,
}

impl Live {
    /// Registers a connection; it stays registered until its ticket drops.
    pub(super) fn register(
        self: &Arc<Self>,
        info: PeerInfo,
        cert: Vec<u8>,
    ) -> (Ticket, CancellationToken) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let cut = CancellationToken::new();
        let entry = Entry {
            info,
            cert,
            cut: cut.clone(),
        };
        self.all
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, entry);
        (
            Ticket {
                live: self.clone(),
                id,
            },
            cut,
        )
    }

    /// Checks every connection's certificate against the trust in force
    /// and cuts those that no longer pass, telling `on_cut` about each.
    /// Returns how many were cut.
    pub(super) fn recheck(&self, trust: &Trust, on_cut: Option<&CutHook>) -> usize {
        let now = SystemTime::now();
        let all = self.all.lock().unwrap_or_else(|e| e.into_inner());
        let mut cut = 0;
        for entry in all.values() {
            if entry.cut.is_cancelled() {
                continue;
            }
            if let Err(why) = trust.check_cert(&entry.cert, now) {
                warn!(peer = %entry.info.node_id, addr = %entry.info.addr, reason = %why,
                    "closing connection: the peer's certificate no longer passes");
                entry.cut.cancel();
                if let Some(hook) = on_cut {
                    hook(&entry.info, &why.to_string());
                }
                cut += 1;
            }
        }
        cut
    }
}

/// A connection's place in [`Live`]; gives it back on drop.
#[derive(Debug)]
pub(super) struct Ticket {
    live: Arc<Live>,
    id: u64,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.live
            .all
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

/// Counts connections per peer node, shared by a listener's connections.
pub(super) type PeerCounts = Arc<Mutex<HashMap<String, usize>>>;

/// One connection's place in its node's count; gives it back on drop.
#[derive(Debug)]
pub(super) struct PeerSlot {
    counts: PeerCounts,
    node: String,
}

impl PeerSlot {
    /// A place for one more connection of `node`, if it has room.
    pub(super) fn take(counts: &PeerCounts, node: &str, limits: ListenLimits) -> Option<Self> {
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

/// A TLS connection whose peer has been verified, holding its share of the
/// listener's budgets until it closes, and failing every read and write
/// from the moment it is cut.
pub struct PeerStream {
    inner: tokio_rustls::server::TlsStream<TcpStream>,
    info: PeerInfo,
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
    _holds: (tokio::sync::OwnedSemaphorePermit, PeerSlot, Ticket),
}

impl PeerStream {
    pub(super) fn new(
        inner: tokio_rustls::server::TlsStream<TcpStream>,
        info: PeerInfo,
        cut: CancellationToken,
        holds: (tokio::sync::OwnedSemaphorePermit, PeerSlot, Ticket),
    ) -> Self {
        Self {
            inner,
            info,
            cut: Box::pin(cut.cancelled_owned()),
            _holds: holds,
        }
    }

    /// Whether the peer asked for an urgent connection ([`PeerInfo::urgent`]).
    pub fn urgent(&self) -> bool {
        self.info.urgent
    }

    /// An error once the connection has been cut (registering to be woken
    /// when it is, so a connection waiting to read notices at once).
    fn check_cut(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.cut.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the peer's certificate no longer passes",
            )),
            Poll::Pending => Ok(()),
        }
    }
}

use std::future::Future as _;

impl std::fmt::Debug for PeerStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerStream")
            .field("info", &self.info)
            .finish_non_exhaustive()
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
        self.check_cut(cx)?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check_cut(cx)?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check_cut(cx)?;
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
        self.check_cut(cx)?;
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
