//! The metrics endpoint: plain HTTP/1.1 on its own listener (off unless
//! `[metrics] listen` is set), `GET /metrics` answered with the text
//! exposition, anything else 404. Bounded like every door: a few
//! connections at once, a request's head within a few seconds. With
//! `metrics.token_file` set, a scrape without that bearer token (RFC 6750)
//! is answered 401 and logged with the scraper's address.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{CONTENT_TYPE, Metrics, Snapshot};

/// Scrapers served at once; more wait in the listen backlog.
const CONNECTIONS: usize = 8;
/// Time for a scraper to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Time for one whole connection (a scrape takes milliseconds).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// A scraper refused again and again (from one address) is logged once a
/// minute, with how many refusals were left out.
static REFUSALS: std::sync::LazyLock<crate::telemetry::Throttles> =
    std::sync::LazyLock::new(|| crate::telemetry::Throttles::new(Duration::from_secs(60)));

/// Reads the store and routes for a scrape.
pub type Source = Arc<dyn Fn() -> BoxFuture<'static, Snapshot> + Send + Sync>;

/// Serves `GET /metrics` on `listener` until `shutdown`; with `token`,
/// only to scrapes that send it as `Authorization: Bearer <token>`.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    source: Source,
    token: Option<Arc<str>>,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(CONNECTIONS));
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p,
            () = shutdown.cancelled() => return,
        };
        // The semaphore is never closed.
        let Ok(permit) = permit else { return };
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, "metrics listener failed to accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => return,
        };
        let (metrics, source, token) = (metrics.clone(), source.clone(), token.clone());
        let service = hyper::service::service_fn(move |req| {
            let refused = token.as_deref().is_some_and(|t| !bearer_is(&req, t));
            let (metrics, source) = (metrics.clone(), source.clone());
            async move {
                if refused {
                    if let Some(left_out) = REFUSALS.allow(&peer.ip().to_string()) {
                        warn!(%peer, left_out, "metrics scrape refused: no bearer token, or not metrics.token_file's");
                    }
                    return Ok(unauthorized());
                }
                answer(req, metrics, source).await
            }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEAD_TIMEOUT)
            .keep_alive(true)
            .serve_connection(TokioIo::new(tcp), service);
        let token = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            tokio::select! {
                r = tokio::time::timeout(CONNECTION_TIMEOUT, conn) => match r {
                    Ok(Err(e)) => debug!(%peer, error = %e, "metrics connection ended"),
                    Err(_) => debug!(%peer, "metrics connection cut: open too long"),
                    Ok(Ok(())) => {}
                },
                () = token.cancelled() => {}
            }
        });
    }
}

/// Whether `req` carries `Authorization: Bearer <token>` (the scheme's
/// name in any case, as RFC 7235 allows).
fn bearer_is(req: &Request<Incoming>, token: &str) -> bool {
    let Some(value) = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    match value.split_once(' ') {
        Some((scheme, given)) if scheme.eq_ignore_ascii_case("bearer") => {
            crate::secret::same_secret(given.trim(), token)
        }
        _ => false,
    }
}

/// 401, asking for the bearer token.
fn unauthorized() -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(
        b"a bearer token is required (metrics.token_file)\n",
    )));
    *resp.status_mut() = StatusCode::UNAUTHORIZED;
    let headers = resp.headers_mut();
    headers.insert(
        hyper::header::WWW_AUTHENTICATE,
        hyper::header::HeaderValue::from_static("Bearer realm=\"zhibao metrics\""),
    );
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

async fn answer(
    req: Request<Incoming>,
    metrics: Arc<Metrics>,
    source: Source,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status, content_type, body: String| {
        let mut resp = Response::new(Full::new(Bytes::from(body)));
        *resp.status_mut() = status;
        resp.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(content_type),
        );
        resp
    };
    if req.uri().path() != "/metrics" {
        return Ok(reply(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "only /metrics is served here\n".into(),
        ));
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "use GET\n".into(),
        ));
    }
    let snapshot = source().await;
    let body = tokio::task::spawn_blocking(move || metrics.encode(&snapshot))
        .await
        .unwrap_or_default();
    Ok(reply(StatusCode::OK, CONTENT_TYPE, body))
}
