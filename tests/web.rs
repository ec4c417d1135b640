//! The office's web desk: who may use it (a session from the login token,
//! loopback only), escaping, cross-site posts, files only by item and
//! number, a listener that cannot bind — over plain HTTP; and in a real
//! browser (headless Chromium over the DevTools protocol): an emergency a
//! county submits appears without a reload, is adopted through the page,
//! and the county sees the decision; the page at phone size; the first
//! paint with 10,000 items in the inbox.
//!
//! The browser tests need Debian's `chromium` (`.ci/run` installs it);
//! without it they fail, saying how to install it.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{HUB, Region};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zhibao::class::Class;
use zhibao::config::NodeConfig;
use zhibao::node::RunningNode;
use zhibao::proto::{DispositionKind, EventKind};
use zhibao::web::WebConfig;

const WAIT: Duration = Duration::from_secs(30);
const COUNTY: &str = "county-a";
/// A county whose link is cut until its report is overdue.
const LATE: &str = "county-late";

/// Browser tests one at a time: two Chromiums on a small machine slow
/// each other past any patience.
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn hub_with_web(region: &Region) -> NodeConfig {
    let mut cfg = region.hub_config("127.0.0.1:0".parse().unwrap());
    cfg.web = Some(WebConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        token_file: None,
    });
    cfg
}

fn token(region: &Region) -> String {
    std::fs::read_to_string(region.data(HUB).join("web.token"))
        .unwrap()
        .trim()
        .to_string()
}

/// One HTTP/1.1 exchange; returns status, headers (lower-case names), body.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    if method == "POST" {
        req.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut raw))
        .await
        .expect("no answer in time")
        .unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
        .collect();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    (status, headers, String::from_utf8_lossy(&body).to_string())
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&raw[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[eol + 2..eol + 2 + size]);
        raw = &raw[eol + 2 + size + 2..];
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A logged-in session: its cookie and CSRF token.
async fn login(addr: SocketAddr, token: &str) -> (String, String) {
    let origin = format!("http://{addr}");
    let (status, headers, _) = http(
        addr,
        "POST",
        "/login",
        &[("Origin", &origin)],
        &format!("token={token}&name=%E7%8E%8B%E8%8A%B3"),
    )
    .await;
    assert_eq!(status, 303, "login");
    let cookie = header(&headers, "set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let (status, _, page) = http(addr, "GET", "/", &[("Cookie", &cookie)], "").await;
    assert_eq!(status, 200);
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    (cookie, csrf)
}

/// Submits at the county; returns the id once the hub has it.
async fn submit_delivered(
    county: &RunningNode,
    class: Class,
    title: &str,
    attachments: Vec<(String, Vec<u8>)>,
) -> String {
    let mut op = common::operator(county).await;
    let mut events = op.watch().await.unwrap();
    let id = op
        .submit_with(class, title, "两个村道路中断".into(), 0, attachments)
        .await
        .unwrap();
    common::await_event(&mut events, WAIT, |e| {
        e.kind == EventKind::Delivered as i32 && e.item_id == id
    })
    .await;
    id
}

#[tokio::test]
async fn the_desk_refuses_strangers_escapes_fields_and_refuses_cross_site_posts() {
    let region = Region::new(&[COUNTY, LATE]);
    let hub = zhibao::node::start(hub_with_web(&region)).await.unwrap();
    let web = hub.web_addr.unwrap();
    let county = region.start_node(COUNTY, hub.relay_addr.unwrap()).await;
    let title = r#"<script>alert("x")</script> 城关镇洪水"#;
    let id = submit_delivered(
        &county,
        Class::Emergency,
        title,
        vec![("现场.txt".into(), b"scan of the road".to_vec())],
    )
    .await;

    // The token file is the node user's only.
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(region.data(HUB).join("web.token"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // No session: 401, and a log line naming the peer.
    for path in ["/", &format!("/item/{id}"), "/events", "/stats"] {
        let (status, _, _) = http(web, "GET", path, &[], "").await;
        assert_eq!(status, 401, "{path} without a session");
    }
    let (status, _, _) = http(web, "GET", "/", &[("Cookie", "zb_session=forged")], "").await;
    assert_eq!(status, 401, "an unknown session");
    assert!(
        !common::log_lines_with(&["refused a request without a session", "peer=127.0.0.1:"])
            .is_empty()
    );
    let origin = format!("http://{web}");
    let (status, _, _) = http(
        web,
        "POST",
        "/login",
        &[("Origin", &origin)],
        "token=0123&name=x",
    )
    .await;
    assert_eq!(status, 401, "a wrong token");
    assert!(!common::log_lines_with(&["login with a wrong token", "peer=127.0.0.1:"]).is_empty());
    let (status, _, _) = http(
        web,
        "POST",
        "/login",
        &[("Origin", "http://evil.example")],
        &format!("token={}&name=x", token(&region)),
    )
    .await;
    assert_eq!(status, 403, "a login posted from another site");

    let (cookie, csrf) = login(web, &token(&region)).await;

    // Every field escaped: the title shows as text, in the list and the report.
    for path in ["/", &format!("/item/{id}")] {
        let (status, _, page) = http(web, "GET", path, &[("Cookie", &cookie)], "").await;
        assert_eq!(status, 200, "{path}");
        assert!(
            page.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; 城关镇洪水"),
            "{path}: the title as text"
        );
        assert!(!page.contains("<script>alert"), "{path}: no live markup");
    }

    // Cross-site posts and posts without the session's token are refused,
    // and nothing is decided.
    let dispose = format!("/item/{id}/dispose");
    let form = format!("csrf={csrf}&kind=adopted&text=daily");
    for (why, headers, body) in [
        (
            "another site's Origin",
            vec![
                ("Cookie", cookie.as_str()),
                ("Origin", "http://evil.example"),
            ],
            form.clone(),
        ),
        (
            "Sec-Fetch-Site: cross-site",
            vec![
                ("Cookie", cookie.as_str()),
                ("Sec-Fetch-Site", "cross-site"),
            ],
            form.clone(),
        ),
        (
            "no CSRF token",
            vec![("Cookie", cookie.as_str()), ("Origin", origin.as_str())],
            "kind=adopted&text=daily".to_string(),
        ),
        (
            "another CSRF token",
            vec![("Cookie", cookie.as_str()), ("Origin", origin.as_str())],
            "csrf=00ff&kind=adopted&text=daily".to_string(),
        ),
        (
            "no session",
            vec![("Origin", origin.as_str())],
            form.clone(),
        ),
    ] {
        let (status, _, _) = http(web, "POST", &dispose, &headers, &body).await;
        assert!(status == 403 || status == 401, "{why}: {status}");
    }
    let mut op = common::operator(&hub).await;
    assert!(op.status(&id).await.unwrap().dispositions.is_empty());
    assert!(!common::log_lines_with(&["cross-site form post", "evil.example"]).is_empty());

    // The same form from the page itself is taken, in the staff's name.
    let (status, headers, _) = http(
        web,
        "POST",
        &dispose,
        &[("Cookie", &cookie), ("Origin", &origin)],
        &form,
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(
        header(&headers, "location"),
        Some(format!("/item/{id}").as_str())
    );
    let st = op.status(&id).await.unwrap();
    let d = st.dispositions[0].body.clone().unwrap();
    assert_eq!(d.kind, DispositionKind::Adopted as i32);
    assert_eq!(d.staff, "王芳 (web desk)");
    // A decision the desk refuses comes back as a page saying why.
    let (status, _, page) = http(
        web,
        "POST",
        &dispose,
        &[("Cookie", &cookie), ("Origin", &origin)],
        &format!("csrf={csrf}&kind=returned&text=%3F&by=yesterday"),
    )
    .await;
    assert_eq!(status, 400);
    assert!(page.contains("补报时限"), "{page}");
    // One the node refuses: said in Chinese, the node's reason beside it.
    let (status, _, _) = http(
        web,
        "POST",
        &dispose,
        &[("Cookie", &cookie), ("Origin", &origin)],
        &format!("csrf={csrf}&kind=closed&text="),
    )
    .await;
    assert_eq!(status, 303, "closing the item");
    let (status, _, page) = http(
        web,
        "POST",
        &dispose,
        &[("Cookie", &cookie), ("Origin", &origin)],
        &format!("csrf={csrf}&kind=instruction&text=%E5%86%8D%E6%9F%A5"),
    )
    .await;
    assert_eq!(status, 409, "{page}");
    // The node's reason, in its Chinese words.
    assert!(page.contains("它已办结；不能再作处理决定"), "{page}");

    // Attachments by item and number only.
    let (status, headers, body) = http(
        web,
        "GET",
        &format!("/item/{id}/attachment/0?download=1"),
        &[("Cookie", &cookie)],
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body, "scan of the road");
    assert!(
        header(&headers, "content-disposition")
            .unwrap()
            .starts_with("attachment;")
    );
    for path in [
        format!("/item/{id}/attachment/1"),
        format!("/item/{id}/attachment/..%2F..%2F..%2F..%2Fetc%2Fpasswd"),
        format!("/item/{id}/attachment/../../../../etc/passwd"),
        "/item/..%2F..%2F..%2Fetc%2Fpasswd/attachment/0".into(),
        "/static/../../Cargo.toml".into(),
        "/static/..%2F..%2FCargo.toml".into(),
        "/static/desk.js/../../../Cargo.toml".into(),
        "/../../../../etc/passwd".into(),
    ] {
        let (status, _, body) = http(web, "GET", &path, &[("Cookie", &cookie)], "").await;
        assert!(
            (400..500).contains(&status),
            "{path}: {status} (no file outside what is asked)"
        );
        assert!(
            !body.contains("root:") && !body.contains("[package]"),
            "{path}"
        );
    }

    // The other pages answer.
    for path in [
        "/overdue",
        "/solicitations",
        "/stats",
        "/bulletin.html",
        "/?e=1&open=1",
    ] {
        let (status, _, _) = http(web, "GET", path, &[("Cookie", &cookie)], "").await;
        assert_eq!(status, 200, "{path}");
    }
    // English on request.
    let (_, _, page) = http(web, "GET", "/?lang=en", &[("Cookie", &cookie)], "").await;
    assert!(page.contains(">Inbox<") && page.contains("Emergency"));
}

#[tokio::test]
async fn a_web_listener_that_cannot_be_used_stops_the_start_naming_the_field() {
    let region = Region::new(&[COUNTY]);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cfg = hub_with_web(&region);
    cfg.web.as_mut().unwrap().listen = taken.local_addr().unwrap();
    let e = zhibao::node::start(cfg).await.unwrap_err();
    assert_eq!(e.field(), "web.listen", "{e}");
    assert!(e.to_string().contains("web desk"), "{e}");

    let mut cfg = hub_with_web(&region);
    cfg.web.as_mut().unwrap().listen = "0.0.0.0:0".parse().unwrap();
    let e = zhibao::node::start(cfg).await.unwrap_err();
    assert_eq!(e.field(), "web.listen", "{e}");
    assert!(e.to_string().contains("loopback"), "{e}");

    let mut cfg = region.node_config(COUNTY, "127.0.0.1:1".parse().unwrap());
    cfg.web = hub_with_web(&region).web;
    let e = zhibao::node::start(cfg).await.unwrap_err();
    assert_eq!(e.field(), "web.listen", "{e}");

    let mut cfg = hub_with_web(&region);
    cfg.web.as_mut().unwrap().token_file = Some(region.dir.path().join("no/such/dir/token"));
    let e = zhibao::node::start(cfg).await.unwrap_err();
    assert_eq!(e.field(), "web.token_file", "{e}");
}

#[tokio::test]
async fn in_a_browser_an_emergency_appears_live_and_is_adopted_through_the_page() {
    let _one = BROWSER.lock().await;
    let region = Region::new(&[COUNTY]);
    let hub = zhibao::node::start(hub_with_web(&region)).await.unwrap();
    let web = hub.web_addr.unwrap();
    let county = region.start_node(COUNTY, hub.relay_addr.unwrap()).await;
    // Something already there, with a title that would run if not escaped.
    submit_delivered(
        &county,
        Class::BadNews,
        "<img src=x onerror=\"window.pwned=1\"><script>window.pwned=1</script>",
        Vec::new(),
    )
    .await;

    let browser = cdp::Browser::launch().await;
    let page = browser.page(1280, 800).await;
    page.goto(&format!("http://{web}/login?token={}", token(&region)))
        .await;
    page.eval("document.getElementById('name').value = '王芳'")
        .await;
    page.click_and_wait("document.getElementById('login').click()")
        .await;
    assert_eq!(page.eval("location.pathname").await, json!("/"));
    assert_eq!(page.eval("typeof window.pwned").await, json!("undefined"));
    assert_eq!(
        page.eval("document.body.innerText.includes('<script>window.pwned=1</script>')")
            .await,
        json!(true),
        "the title shows as text"
    );
    // The live stream is open (the light turns on) before the county writes.
    page.wait_for("document.querySelector('#live-state.on')")
        .await;
    page.eval("window.stillTheSamePage = 42").await;

    let mut op = common::operator(&county).await;
    let mut events = op.watch().await.unwrap();
    let id = op
        .submit(
            Class::Emergency,
            "城关镇洪水 两村被困",
            "河水漫过道路，两个村被困。".into(),
            0,
        )
        .await
        .unwrap();
    page.wait_for(&format!(
        "document.querySelector('#class-emergency tr[data-id=\"{id}\"]')"
    ))
    .await;
    assert_eq!(
        page.eval("window.stillTheSamePage").await,
        json!(42),
        "shown without a reload"
    );
    common::await_event(&mut events, WAIT, |e| {
        e.kind == EventKind::Delivered as i32 && e.item_id == id
    })
    .await;
    let shot = artifact("web-desk.png");
    page.screenshot(&shot).await;

    // Open it and adopt it through the page.
    page.click_and_wait(&format!(
        "document.querySelector('tr[data-id=\"{id}\"] a').click()"
    ))
    .await;
    assert_eq!(
        page.eval("document.getElementById('title').innerText")
            .await,
        json!("重大紧急 城关镇洪水 两村被困")
    );
    page.eval("document.getElementById('outlet').value = '《情况专报》2026年第12期'")
        .await;
    page.click_and_wait("document.getElementById('do-adopted').click()")
        .await;
    page.wait_for("document.querySelector('#decisions li.kind-adopted')")
        .await;
    page.screenshot(&artifact("web-desk-item.png")).await;

    // The county's status shows the adoption, verified.
    let mut op = common::operator(&county).await;
    let mut events = op.watch().await.unwrap();
    let status = loop {
        let st = op.status(&id).await.unwrap();
        if !st.dispositions.is_empty() {
            break st;
        }
        common::await_event(&mut events, WAIT, |e| {
            e.kind == EventKind::Disposed as i32 && e.item_id == id
        })
        .await;
    };
    let d = &status.dispositions[0];
    let body = d.body.clone().unwrap();
    assert_eq!(body.kind, DispositionKind::Adopted as i32);
    assert_eq!(body.text, "《情况专报》2026年第12期");
    assert_eq!(body.staff, "王芳 (web desk)");
    assert_eq!(body.node, HUB);
    assert_eq!(status.decided, DispositionKind::Adopted as i32);
    assert!(d.verification.starts_with("valid"), "{}", d.verification);

    // A phone-sized window: nothing wider than the screen.
    page.viewport(390, 844, true).await;
    page.goto(&format!("http://{web}/")).await;
    assert_eq!(
        page.eval("document.documentElement.scrollWidth <= window.innerWidth")
            .await,
        json!(true),
        "no sideways scrolling on a phone"
    );
    page.screenshot(&artifact("web-desk-phone.png")).await;
    eprintln!("web desk screenshots: {}", shot.display());
}

#[tokio::test]
async fn with_ten_thousand_items_the_desk_paints_quickly() {
    const ITEMS: usize = 10_000;
    const WRITERS: usize = 32;
    let _one = BROWSER.lock().await;
    let region = Region::new(&[COUNTY]);
    let hub = zhibao::node::start(hub_with_web(&region)).await.unwrap();
    let web = hub.web_addr.unwrap();
    // Filled at the hub's own operator socket: each on disk when answered.
    let started = Instant::now();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let socket = hub.operator_socket.clone();
        writers.push(tokio::spawn(async move {
            let mut op = zhibao::client::Operator::connect(&socket).await.unwrap();
            for n in (w..ITEMS).step_by(WRITERS) {
                let class = match n % 20 {
                    0 => Class::Emergency,
                    1..=3 => Class::BadNews,
                    _ => Class::Routine,
                };
                op.submit(class, &format!("第{n}号 日常动态"), b"text".to_vec(), 0)
                    .await
                    .unwrap();
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let fill = started.elapsed();

    let browser = cdp::Browser::launch().await;
    let page = browser.page(1280, 800).await;
    page.goto(&format!("http://{web}/login?token={}", token(&region)))
        .await;
    page.click_and_wait("document.getElementById('login').click()")
        .await;
    // A fresh load of the inbox, timed by the browser from the start of
    // the navigation to its first contentful paint.
    let marks = page.goto_timed(&format!("http://{web}/")).await;
    let paint = (marks["firstContentfulPaint"] - marks["init"]) * 1000.0;
    let loaded = (marks["load"] - marks["init"]) * 1000.0;
    let rows = page
        .eval("document.querySelectorAll('#live tr[data-id]').length")
        .await;
    assert_eq!(rows, json!(150), "a page of each class");
    // Deep in the routine list.
    let t = Instant::now();
    page.goto(&format!("http://{web}/?r=20")).await;
    let deep = t.elapsed();
    assert_eq!(
        page.eval("document.querySelectorAll('#class-routine tr[data-id]').length")
            .await,
        json!(50)
    );
    eprintln!(
        "web desk with {ITEMS} items (filled in {fill:.1?}): first contentful paint {paint:.0} ms, \
         load {loaded:.0} ms; routine page 21 loaded in {deep:.0?}"
    );
    page.screenshot(&artifact("web-desk-10k.png")).await;
    // These were written at the hub itself: the page says they are not
    // the office's to decide, and offers no forms.
    page.click_and_wait("document.querySelector('#class-routine tr[data-id] a').click()")
        .await;
    assert_eq!(
        page.eval(
            "!!document.getElementById('not-decidable') && !document.getElementById('form-adopted')"
        )
        .await,
        json!(true)
    );
    assert!(paint > 0.0, "no first paint measured");
    assert!(
        paint < 5_000.0,
        "first paint took {paint} ms with {ITEMS} items"
    );
}

/// Where a test leaves something to look at: `target/NAME`.
fn artifact(name: &str) -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(&tmp).join(name)
}

/// A minimal client of the Chrome DevTools protocol over its WebSocket:
/// launch headless Chromium, open a page, navigate, evaluate, click,
/// take screenshots.
mod cdp {
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use base64::Engine;
    use futures::{SinkExt, StreamExt};
    use serde_json::{Value, json};
    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::process::{Child, Command};
    use tokio::sync::{broadcast, mpsc, oneshot};
    use tokio_tungstenite::tungstenite::Message;

    use super::WAIT;

    type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

    /// The browser process and the connection to it.
    pub struct Browser {
        _child: Child,
        _profile: tempfile::TempDir,
        conn: Arc<Conn>,
    }

    struct Conn {
        out: mpsc::UnboundedSender<Message>,
        pending: Pending,
        next: AtomicU64,
        events: broadcast::Sender<Value>,
    }

    impl Conn {
        async fn call(&self, session: Option<&str>, method: &str, params: Value) -> Value {
            let id = self.next.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = oneshot::channel();
            self.pending.lock().unwrap().insert(id, tx);
            let mut msg = json!({"id": id, "method": method, "params": params});
            if let Some(s) = session {
                msg["sessionId"] = json!(s);
            }
            self.out.send(Message::text(msg.to_string())).unwrap();
            let answer = tokio::time::timeout(WAIT, rx)
                .await
                .unwrap_or_else(|_| panic!("{method}: no answer from the browser"))
                .unwrap();
            if let Some(e) = answer.get("error") {
                panic!("{method}: {e}");
            }
            answer["result"].clone()
        }
    }

    /// The browser to run: `chromium` (Debian), or another on the PATH.
    fn find() -> Option<PathBuf> {
        let path = std::env::var_os("PATH")?;
        ["chromium", "chromium-browser", "google-chrome", "chrome"]
            .iter()
            .flat_map(|name| std::env::split_paths(&path).map(move |d| d.join(name)))
            .find(|p| p.is_file())
    }

    /// The browser, installed first if it is missing (one test at a time).
    fn find_or_install() -> Option<PathBuf> {
        static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bin) = find() {
            return Some(bin);
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/install-browser.sh");
        let _ = std::process::Command::new("bash").arg(script).status();
        find()
    }

    impl Browser {
        pub async fn launch() -> Self {
            let bin = find_or_install().unwrap_or_else(|| {
                panic!(
                    "this test drives a real browser and none was found, and \
                     scripts/install-browser.sh could not install one: install headless Chromium \
                     with `sudo apt-get install -y chromium fonts-wqy-zenhei` (Debian/Ubuntu)"
                )
            });
            let profile = tempfile::tempdir().unwrap();
            let mut child = Command::new(bin)
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-dev-shm-usage",
                    "--remote-debugging-port=0",
                    "--remote-allow-origins=*",
                ])
                .arg(format!("--user-data-dir={}", profile.path().display()))
                .arg("about:blank")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("cannot start chromium");
            let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
            let url = tokio::time::timeout(WAIT, async {
                while let Some(line) = lines.next_line().await.unwrap() {
                    if let Some(url) = line.strip_prefix("DevTools listening on ") {
                        return url.trim().to_string();
                    }
                }
                panic!("chromium exited before listening for DevTools");
            })
            .await
            .expect("chromium did not start in time");
            // Its later chatter is read and dropped, so it never blocks.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
                .await
                .expect("cannot connect to chromium's DevTools");
            let (mut sink, mut source) = ws.split();
            let (out, mut to_send) = mpsc::unbounded_channel::<Message>();
            tokio::spawn(async move {
                while let Some(m) = to_send.recv().await {
                    if sink.send(m).await.is_err() {
                        return;
                    }
                }
            });
            let pending: Pending = Arc::default();
            let (events, _) = broadcast::channel(1024);
            let conn = Arc::new(Conn {
                out,
                pending: pending.clone(),
                next: AtomicU64::new(1),
                events: events.clone(),
            });
            tokio::spawn(async move {
                while let Some(Ok(m)) = source.next().await {
                    let Message::Text(text) = m else { continue };
                    let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
                        continue;
                    };
                    if let Some(id) = v.get("id").and_then(Value::as_u64) {
                        if let Some(tx) = pending.lock().unwrap().remove(&id) {
                            let _ = tx.send(v);
                        }
                    } else {
                        let _ = events.send(v);
                    }
                }
            });
            Self {
                _child: child,
                _profile: profile,
                conn,
            }
        }

        /// A new tab of `width`×`height`.
        pub async fn page(&self, width: u32, height: u32) -> Page {
            let target = self
                .conn
                .call(None, "Target.createTarget", json!({"url": "about:blank"}))
                .await;
            let attached = self
                .conn
                .call(
                    None,
                    "Target.attachToTarget",
                    json!({"targetId": target["targetId"], "flatten": true}),
                )
                .await;
            let page = Page {
                conn: self.conn.clone(),
                session: attached["sessionId"].as_str().unwrap().to_string(),
            };
            page.call("Page.enable", json!({})).await;
            page.call("Runtime.enable", json!({})).await;
            page.viewport(width, height, false).await;
            page
        }
    }

    /// One tab.
    pub struct Page {
        conn: Arc<Conn>,
        session: String,
    }

    impl Page {
        async fn call(&self, method: &str, params: Value) -> Value {
            self.conn.call(Some(&self.session), method, params).await
        }

        pub async fn viewport(&self, width: u32, height: u32, mobile: bool) {
            self.call(
                "Emulation.setDeviceMetricsOverride",
                json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
            )
            .await;
        }

        /// Waits for this tab's next `load` after `start` is done.
        async fn loaded_after(&self, start: impl std::future::Future<Output = ()>) {
            let mut events = self.conn.events.subscribe();
            start.await;
            tokio::time::timeout(WAIT, async {
                loop {
                    let e = events.recv().await.unwrap();
                    if e["method"] == "Page.loadEventFired" && e["sessionId"] == self.session {
                        return;
                    }
                }
            })
            .await
            .expect("the page did not load in time");
        }

        /// Navigates to `url`; returns the page's lifecycle marks (`init`,
        /// `firstContentfulPaint`, `load`, …), in seconds on one clock.
        pub async fn goto_timed(&self, url: &str) -> HashMap<String, f64> {
            self.call("Page.setLifecycleEventsEnabled", json!({"enabled": true}))
                .await;
            let mut events = self.conn.events.subscribe();
            let r = self.call("Page.navigate", json!({"url": url})).await;
            let frame = r["frameId"].clone();
            let mut marks = HashMap::new();
            tokio::time::timeout(WAIT, async {
                while !(marks.contains_key("load") && marks.contains_key("firstContentfulPaint")) {
                    let e = events.recv().await.unwrap();
                    if e["method"] == "Page.lifecycleEvent"
                        && e["sessionId"] == self.session
                        && e["params"]["frameId"] == frame
                    {
                        let name = e["params"]["name"].as_str().unwrap_or("").to_string();
                        if name == "init" {
                            marks.clear();
                        }
                        marks.insert(name, e["params"]["timestamp"].as_f64().unwrap_or(0.0));
                    }
                }
            })
            .await
            .expect("no first paint and load in time");
            marks
        }

        pub async fn goto(&self, url: &str) {
            self.loaded_after(async {
                let r = self.call("Page.navigate", json!({"url": url})).await;
                assert!(r.get("errorText").is_none(), "navigate {url}: {r}");
            })
            .await;
        }

        /// Runs `js` (which navigates) and waits for the new page's load.
        pub async fn click_and_wait(&self, js: &str) {
            self.loaded_after(async {
                self.eval(js).await;
            })
            .await;
        }

        /// The value of `js`, promises awaited.
        pub async fn eval(&self, js: &str) -> Value {
            let r = self
                .call(
                    "Runtime.evaluate",
                    json!({"expression": js, "awaitPromise": true, "returnByValue": true}),
                )
                .await;
            if let Some(e) = r.get("exceptionDetails") {
                panic!("{js}: {e}");
            }
            r["result"]["value"].clone()
        }

        /// Waits until `js` is truthy, looking again whenever the page's
        /// document changes.
        pub async fn wait_for(&self, js: &str) {
            let script = format!(
                "new Promise(done => {{ const ok = () => !!({js}); if (ok()) return done(true); \
                 const o = new MutationObserver(() => {{ if (ok()) {{ o.disconnect(); done(true); }} }}); \
                 o.observe(document, {{subtree: true, childList: true, attributes: true}}); }})"
            );
            tokio::time::timeout(WAIT, self.eval(&script))
                .await
                .unwrap_or_else(|_| panic!("not seen in time: {js}"));
        }

        pub async fn screenshot(&self, path: &Path) {
            let r = self
                .call("Page.captureScreenshot", json!({"format": "png"}))
                .await;
            let png = base64::engine::general_purpose::STANDARD
                .decode(r["data"].as_str().unwrap())
                .unwrap();
            std::fs::write(path, png).unwrap();
        }
    }
}
