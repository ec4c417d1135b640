//! Who may use the web desk, checked on every request.
//!
//! - The peer must be on this machine (the listener is on loopback; a
//!   request from anywhere else is 403 and a log line naming it).
//! - Every page but the login page and the two static files needs a
//!   session: a cookie (`HttpOnly`, `SameSite=Strict`) given for the
//!   node's login token and a name. None or an unknown one: 401 and a log
//!   line naming the peer.
//! - The browser must have asked for this machine (`Host`: a loopback
//!   address or `localhost`), so another site's name pointed at 127.0.0.1
//!   gets nothing (403).
//! - Every POST must come from this site: an `Origin` (or
//!   `Sec-Fetch-Site`) naming another is 403, and each form carries the
//!   session's CSRF token, checked by the handler ([`Session::check_csrf`]).

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ring::rand::SecureRandom;
use tracing::warn;

use super::html::{self, Lang};
use super::pages::Web;

/// The session cookie's name.
const COOKIE: &str = "zb_session";
/// The language cookie's name.
const LANG_COOKIE: &str = "zb_lang";
/// How long a session lasts.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at once; the oldest goes first.
const MAX_SESSIONS: usize = 256;

/// 32 random bytes, in hex.
pub(super) fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    // The system's random source failing leaves nothing safe to do.
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .unwrap_or_else(|_| panic!("the system random source failed"));
    crate::digest::hex(&bytes)
}

/// Writes the login token, readable by the node's user only. An old file
/// is replaced, so its mode is ours.
pub(super) fn write_token(path: &Path, token: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    writeln!(file, "{token}")?;
    file.sync_all()
}

/// One logged-in browser.
#[derive(Debug, Clone)]
pub(super) struct Session {
    /// The member of staff, as decisions record them.
    pub(super) name: String,
    /// The token every form of this session carries.
    pub(super) csrf: String,
    expires: Instant,
}

impl Session {
    /// Whether a form's CSRF token is this session's.
    pub(super) fn check_csrf(&self, given: &str) -> bool {
        crate::secret::same_secret(&self.csrf, given)
    }
}

/// The logged-in browsers.
#[derive(Debug, Default)]
pub(super) struct Sessions(Mutex<HashMap<String, Session>>);

impl Sessions {
    /// A new session for `name`; returns its cookie value.
    pub(super) fn open(&self, name: String) -> String {
        let id = new_secret();
        let session = Session {
            name,
            csrf: new_secret(),
            expires: Instant::now() + SESSION_TTL,
        };
        let mut all = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        all.retain(|_, s| s.expires > now);
        if all.len() >= MAX_SESSIONS
            && let Some(oldest) = all
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
        {
            all.remove(&oldest);
        }
        all.insert(id.clone(), session);
        id
    }

    fn get(&self, id: &str) -> Option<Session> {
        let all = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        all.get(id).filter(|s| s.expires > Instant::now()).cloned()
    }

    /// Ends a session.
    pub(super) fn close(&self, id: &str) {
        let mut all = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        all.remove(id);
    }
}

/// A cookie's value from a request's headers.
pub(super) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The `Set-Cookie` value for a new session.
pub(super) fn session_cookie(id: &str) -> String {
    format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict")
}

/// The `Set-Cookie` value that ends a session in the browser.
pub(super) fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// What a handler knows about the request: who, in which language.
#[derive(Debug, Clone)]
pub(super) struct Ctx {
    /// The session (none on the login page).
    pub(super) session: Option<Session>,
    /// The session's cookie value, to end it.
    pub(super) session_id: Option<String>,
    /// The language of the page.
    pub(super) lang: Lang,
    /// The peer.
    pub(super) peer: SocketAddr,
}

/// The language asked for: `?lang=` first, then the cookie, else Chinese.
fn lang_of(req: &Request) -> (Lang, bool) {
    let asked = req.uri().query().and_then(|q| {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "lang")
            .map(|(_, v)| v)
    });
    match asked {
        Some("en") => (Lang::En, true),
        Some("zh") => (Lang::Zh, true),
        _ => match cookie(req.headers(), LANG_COOKIE) {
            Some("en") => (Lang::En, false),
            _ => (Lang::Zh, false),
        },
    }
}

/// Whether the browser asked for this machine by name (`Host`): a page of
/// another site whose name was pointed at 127.0.0.1 (DNS rebinding) asks
/// for its own name and is refused.
fn local_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    if let Ok(addr) = host.parse::<SocketAddr>() {
        return addr.ip().is_loopback();
    }
    let name = host.rsplit_once(':').map_or(host, |(name, _)| name);
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether a POST comes from a page of this site: its `Origin` (browsers
/// send it on every POST) names this host, and `Sec-Fetch-Site`, if sent,
/// does not say another site.
fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    if let Some(origin) = headers.get(header::ORIGIN) {
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        let Some(host) = host else {
            return false;
        };
        if origin != format!("http://{host}") {
            return false;
        }
    }
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        None | Some("same-origin" | "none") => true,
        Some(_) => false,
    }
}

/// The checks every request passes; leaves a [`Ctx`] for the handlers.
pub(super) async fn gate(
    State(web): State<Arc<Web>>,
    ConnectInfo(super::Peer(peer)): ConnectInfo<super::Peer>,
    mut req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path().to_string();
    if !peer.ip().is_loopback() {
        warn!(%peer, %path, "web desk: refused a request from another machine (the desk is local only)");
        return html::refusal(
            StatusCode::FORBIDDEN,
            "The web desk takes requests from this machine only.",
            "网页工作台只接受本机的请求。",
        );
    }
    if !local_host(req.headers()) {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string();
        warn!(%peer, %path, %host, "web desk: refused a request for another host name (DNS rebinding?)");
        return html::refusal(
            StatusCode::FORBIDDEN,
            "The web desk answers to 127.0.0.1, [::1] or localhost only.",
            "网页工作台只接受 127.0.0.1、[::1] 或 localhost 的访问。",
        );
    }
    let (lang, lang_asked) = lang_of(&req);
    if req.method() == Method::POST && !same_origin(req.headers()) {
        let origin = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string();
        warn!(%peer, %path, %origin, "web desk: refused a cross-site form post");
        return html::refusal(
            StatusCode::FORBIDDEN,
            "Refused: this form was not sent from the desk's own pages.",
            "拒绝：该表单不是从工作台本站页面提交的。",
        );
    }
    let open = path == "/login" || path.starts_with("/static/");
    let session_id = cookie(req.headers(), COOKIE).map(str::to_string);
    let session = session_id.as_deref().and_then(|id| web.sessions.get(id));
    if session.is_none() && !open {
        warn!(%peer, %path, "web desk: refused a request without a session (log in at /login)");
        return html::login_needed(lang);
    }
    req.extensions_mut().insert(Ctx {
        session,
        session_id,
        lang,
        peer,
    });
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    if lang_asked
        && let Ok(v) = format!(
            "{LANG_COOKIE}={}; Path=/; SameSite=Strict",
            if lang == Lang::En { "en" } else { "zh" }
        )
        .parse()
    {
        headers.append(header::SET_COOKIE, v);
    }
    headers
        .entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(header::HeaderValue::from_static("nosniff"));
    headers
        .entry(header::X_FRAME_OPTIONS)
        .or_insert(header::HeaderValue::from_static("SAMEORIGIN"));
    headers
        .entry(header::REFERRER_POLICY)
        .or_insert(header::HeaderValue::from_static("same-origin"));
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(header::HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; \
             form-action 'self'; frame-ancestors 'self'",
        ));
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(header::HeaderValue::from_static("no-store"));
    response.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, header::HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn posts_from_this_site_only() {
        let ok = headers(&[
            ("host", "127.0.0.1:8443"),
            ("origin", "http://127.0.0.1:8443"),
        ]);
        assert!(same_origin(&ok));
        // A client that sends no Origin (curl) still needs the CSRF token.
        assert!(same_origin(&headers(&[("host", "127.0.0.1:8443")])));
        for bad in [
            headers(&[
                ("host", "127.0.0.1:8443"),
                ("origin", "http://evil.example"),
            ]),
            headers(&[
                ("host", "127.0.0.1:8443"),
                ("origin", "http://127.0.0.1:9999"),
            ]),
            headers(&[("host", "127.0.0.1:8443"), ("origin", "null")]),
            headers(&[("host", "127.0.0.1:8443"), ("sec-fetch-site", "cross-site")]),
            headers(&[("host", "127.0.0.1:8443"), ("sec-fetch-site", "same-site")]),
            headers(&[("origin", "http://127.0.0.1:8443")]),
        ] {
            assert!(!same_origin(&bad), "{bad:?}");
        }
    }

    #[test]
    fn only_this_machine_by_name() {
        for good in [
            "127.0.0.1:8443",
            "[::1]:8443",
            "localhost:8443",
            "LOCALHOST",
            "127.0.0.1",
        ] {
            assert!(local_host(&headers(&[("host", good)])), "{good}");
        }
        for bad in [
            "evil.example:8443",
            "10.0.0.1:8443",
            "localhost.evil.example",
            "",
        ] {
            assert!(!local_host(&headers(&[("host", bad)])), "{bad}");
        }
        assert!(!local_host(&HeaderMap::new()));
    }

    #[test]
    fn new_secrets_differ() {
        assert_ne!(new_secret(), new_secret());
        assert_eq!(new_secret().len(), 64);
    }

    #[test]
    fn sessions_are_bounded() {
        let s = Sessions::default();
        let first = s.open("a".into());
        for _ in 0..MAX_SESSIONS {
            s.open("b".into());
        }
        assert!(s.get(&first).is_none(), "the oldest went");
        let id = s.open("c".into());
        assert_eq!(s.get(&id).unwrap().name, "c");
        s.close(&id);
        assert!(s.get(&id).is_none());
    }
}
