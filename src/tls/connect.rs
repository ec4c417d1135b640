//! Connecting to an upstream: TCP, then TLS 1.3 with our certificate,
//! expecting the upstream to be the node we meant to reach, then HTTP/2
//! with keepalive pings that find a silently dead link within seconds.
//!
//! In TLS 1.3 a client finishes its handshake before the server has judged
//! the client's certificate; a server that refuses it says so with an alert
//! right after. So the connection waits for the server's first bytes (its
//! HTTP/2 preface) before it is handed to HTTP/2, and a refusal comes back
//! as [`Refused`] naming the alert — "the upstream refuses our certificate:
//! revoked" — rather than as a broken pipe on the first request.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::{AlertDescription, ClientConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// How a connection upstream is made and kept.
#[derive(Debug, Clone, Copy)]
pub struct ConnectOptions {
    /// Time allowed for TCP and TLS (and the upstream's first bytes).
    pub connect_timeout: Duration,
    /// An HTTP/2 ping this often, also while idle.
    pub keepalive_interval: Duration,
    /// A ping not answered within this ends the connection.
    pub keepalive_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(2),
            keepalive_timeout: Duration::from_secs(3),
        }
    }
}

/// The upstream refused this node during the TLS handshake.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the upstream refuses this node's certificate: {}", describe(.0))]
pub struct Refused(pub AlertDescription);

impl Refused {
    /// Whether a retry may succeed without anything changing here (the
    /// upstream's own trouble) — as opposed to a verdict on our
    /// certificate, which stands until it is renewed.
    pub fn is_verdict(&self) -> bool {
        matches!(
            self.0,
            AlertDescription::CertificateRevoked
                | AlertDescription::CertificateExpired
                | AlertDescription::BadCertificate
                | AlertDescription::UnsupportedCertificate
                | AlertDescription::UnknownCA
                | AlertDescription::AccessDenied
                | AlertDescription::CertificateUnknown
        )
    }

    /// The refusal somewhere in `e`'s chain of sources, if there is one.
    pub fn find<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a Self> {
        let mut cur = Some(e);
        while let Some(e) = cur {
            if let Some(r) = e.downcast_ref::<Self>() {
                return Some(r);
            }
            // An io::Error's `source` is its payload's source, not the
            // payload itself: look at the payload.
            if let Some(r) = e
                .downcast_ref::<io::Error>()
                .and_then(io::Error::get_ref)
                .and_then(|p| p.downcast_ref::<Self>())
            {
                return Some(r);
            }
            cur = e.source();
        }
        None
    }
}

fn describe(alert: &AlertDescription) -> &'static str {
    match alert {
        AlertDescription::CertificateRevoked => "revoked",
        AlertDescription::CertificateExpired => "expired",
        AlertDescription::UnknownCA => "not issued by its CA",
        AlertDescription::BadCertificate | AlertDescription::CertificateUnknown => {
            "not accepted (names no node, or fails its checks)"
        }
        AlertDescription::AccessDenied => "access denied",
        _ => "the TLS handshake failed",
    }
}

/// Opens a gRPC channel to `addr` over mutual TLS, expecting node `expect`.
pub async fn connect_channel(
    addr: &str,
    config: Arc<ClientConfig>,
    expect: &str,
    options: ConnectOptions,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let server_name = ServerName::try_from(expect.to_string())
        .unwrap_or_else(|_| ServerName::try_from("invalid.invalid").expect("static name"));
    let target = addr.to_string();
    let connector = tower::service_fn(move |_uri: http::Uri| {
        let config = config.clone();
        let server_name = server_name.clone();
        let target = target.clone();
        async move {
            let tcp = TcpStream::connect(&target).await?;
            tcp.set_nodelay(true)?;
            let tls = TlsConnector::from(config).connect(server_name, tcp).await?;
            let tls = first_bytes(tls, options.connect_timeout).await?;
            Ok::<_, io::Error>(TokioIo::new(tls))
        }
    });
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(options.connect_timeout)
        .http2_keep_alive_interval(options.keepalive_interval)
        .keep_alive_timeout(options.keepalive_timeout)
        .keep_alive_while_idle(true)
        .connect_with_connector(connector)
        .await
}

/// Waits for the server's first bytes; an alert instead is a [`Refused`].
async fn first_bytes(mut tls: TlsStream<TcpStream>, limit: Duration) -> io::Result<Prefixed> {
    let mut buf = vec![0u8; 256];
    let read = tokio::time::timeout(limit, tls.read(&mut buf)).await;
    match read {
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the upstream said nothing after the TLS handshake",
        )),
        Ok(Ok(0)) => Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "the upstream closed the connection after the TLS handshake",
        )),
        Ok(Ok(n)) => {
            buf.truncate(n);
            Ok(Prefixed {
                head: buf,
                at: 0,
                inner: tls,
            })
        }
        Ok(Err(e)) => {
            let alert = e
                .get_ref()
                .and_then(|i| i.downcast_ref::<rustls::Error>())
                .and_then(|r| match r {
                    rustls::Error::AlertReceived(a) => Some(*a),
                    _ => None,
                });
            Err(match alert {
                Some(a) => io::Error::new(io::ErrorKind::PermissionDenied, Refused(a)),
                None => e,
            })
        }
    }
}

/// A TLS stream whose first bytes were read ahead and are given back first.
#[derive(Debug)]
struct Prefixed {
    head: Vec<u8>,
    at: usize,
    inner: TlsStream<TcpStream>,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.at < self.head.len() {
            let n = (self.head.len() - self.at).min(buf.remaining());
            let at = self.at;
            buf.put_slice(&self.head[at..at + n]);
            self.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
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
