//! The information office's web desk (`[web]`): the hub's inbox, reports,
//! decisions, solicitations, overdue items and figures in a browser.
//!
//! Off unless configured. It listens on **loopback only** and lets in a
//! browser that logs in with the node's login token: a random secret the
//! node writes at every start to `web.token_file` (mode 0600, default
//! `<data_dir>/web.token`), so whoever may read the node's files may use
//! its desk — the same rule as the operator socket. Staff elsewhere reach
//! it through `ssh -L`, which authenticates and encrypts; the README says
//! why this was chosen over client certificates in the browser.
//!
//! Everything it shows or does goes through the node's operator API
//! (`OperatorService`): listings, a report with its receipts and
//! decisions, attachments, solicitations, figures, bulletins — and
//! decisions through the same desk that signs them for `zhibao dispose`,
//! in the name of the member of staff who logged in. Live updates come
//! from the node's event feed as server-sent events.
//!
//! - `auth`: the login token, sessions, and the checks every request
//!   passes (loopback peer, session, same-origin posts, CSRF token);
//! - `html`: escaping, the page frame, labels in Chinese and English;
//! - `pages`: the handlers; `live`: the event stream.

mod auth;
mod html;
mod live;
mod pages;

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::ConfigError;
use crate::node::OperatorService;
use crate::node::error::StartError;

/// Browser connections held open at once (each tab keeps one for its live
/// updates); more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 64;

/// `[web]`: the office's web desk.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    /// Where it listens: a loopback address (`127.0.0.1:8443`, `[::1]:8443`).
    pub listen: SocketAddr,
    /// The login token's file, rewritten (mode 0600) at every start;
    /// default `<data_dir>/web.token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
}

impl WebConfig {
    /// Loopback only, and only where there is an office: a node with a
    /// relay listener (reports come to it from below).
    pub(crate) fn validate(&self, has_relay: bool) -> Result<(), ConfigError> {
        if !self.listen.ip().is_loopback() {
            return Err(ConfigError::Invalid {
                field: "web.listen",
                why: format!(
                    "{} is not a loopback address; the web desk listens on this machine only \
                     (127.0.0.1 or [::1]); staff elsewhere use `ssh -L 8443:127.0.0.1:8443 HOST`",
                    self.listen
                ),
            });
        }
        if !has_relay {
            return Err(ConfigError::Invalid {
                field: "web.listen",
                why: "the web desk is the office's, at a node that takes reports from below; \
                      this node has no [relay] listener"
                    .into(),
            });
        }
        Ok(())
    }

    /// The login token's file.
    pub fn token_path(&self, data_dir: &Path) -> PathBuf {
        self.token_file
            .clone()
            .unwrap_or_else(|| data_dir.join("web.token"))
    }
}

/// The web desk's listener, bound, with this start's login token written.
#[derive(Debug)]
pub(crate) struct Door {
    listener: TcpListener,
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    token: String,
    token_file: PathBuf,
}

impl Door {
    /// Binds `web.listen` and writes a new login token to `web.token_file`;
    /// either failing stops the node's start, naming the field.
    pub(crate) async fn open(cfg: &WebConfig, data_dir: &Path) -> Result<Self, StartError> {
        let (listener, addr) =
            crate::node::bind_web(cfg.listen, "web.listen", "web desk listener").await?;
        let token_file = cfg.token_path(data_dir);
        let token = auth::new_secret();
        auth::write_token(&token_file, &token).map_err(|source| StartError::Bind {
            field: "web.token_file",
            what: format!("web desk login token file {}", token_file.display()),
            source,
        })?;
        Ok(Self {
            listener,
            addr,
            token,
            token_file,
        })
    }
}

/// Serves the web desk until `shutdown`.
pub(crate) fn serve(
    door: Door,
    operator: Arc<OperatorService>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    info!(
        url = %format!("http://{}/", door.addr),
        token_file = %door.token_file.display(),
        "web desk listening; log in at /login with the token in the file"
    );
    let state = Arc::new(pages::Web::new(operator, door.token, shutdown.clone()));
    let app = pages::router(state);
    let listener = Limited {
        inner: door.listener,
        permits: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
    };
    tokio::spawn(async move {
        let served = axum::serve(listener, app.into_make_service_with_connect_info::<Peer>())
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(e) = served {
            warn!(error = %e, "web desk stopped");
        }
    })
}

/// A connection's peer address, for the gate's checks and the logs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer(pub(crate) SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, Limited>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, Limited>) -> Self {
        Self(*stream.remote_addr())
    }
}

/// The listener with a bound on open connections.
struct Limited {
    inner: TcpListener,
    permits: Arc<Semaphore>,
}

impl axum::serve::Listener for Limited {
    type Io = Counted;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            // The semaphore is never closed; if it were, serve unbounded
            // rather than stop.
            let permit = self.permits.clone().acquire_owned().await.ok();
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    return (
                        Counted {
                            stream,
                            _permit: permit,
                        },
                        addr,
                    );
                }
                Err(e) => {
                    // Out of descriptors and the like: wait, then go on.
                    warn!(error = %e, "web desk: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection holding one of the listener's places until it closes.
struct Counted {
    stream: TcpStream,
    _permit: Option<OwnedSemaphorePermit>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
