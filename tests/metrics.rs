//! The Prometheus endpoint: off unless configured, the standard text
//! format (parsed with a Prometheus text parser), counters that move when
//! items flow, and a listener that cannot bind named by its field.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::Region;
use prometheus_parse::{Scrape, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zhibao::class::Class;
use zhibao::config::{Role, UpstreamConfig};
use zhibao::node;

const WAIT: Duration = Duration::from_secs(20);

/// `GET path` over plain HTTP/1.1: (status, content type, body).
async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let (status, head, body) = get_with(addr, path, "").await;
    let content_type = header(&head, "content-type").unwrap_or_default();
    (status, content_type, body)
}

/// `GET path` with `extra` header lines: (status, head, body).
async fn get_with(addr: SocketAddr, path: &str, extra: &str) -> (u16, String, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_string(), body.to_string())
}

/// The value of header `name` (in any case) in a response's head.
fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

/// The node's metrics, parsed.
async fn scrape(addr: SocketAddr) -> Scrape {
    let (status, content_type, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text format")
}

/// The value of sample `name` with exactly the labels `labels` (0 if absent).
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let want: HashMap<&str, &str> = labels.iter().copied().collect();
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| {
            s.labels.len() == want.len() && want.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
        .map(|s| match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => panic!("{name} is not a single value"),
        })
        .next()
        .unwrap_or(0.0)
}

/// Scrapes until `done` holds (the counters move as the node works).
async fn scrape_until(addr: SocketAddr, done: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = scrape(addr).await;
        if done(&s) {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "metrics never got there"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `promtool check metrics` on `text`, if promtool is installed.
fn promtool_check_metrics(text: &str) {
    use std::io::Write;
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        return; // not installed
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Items submitted by the tests below: how many of each class.
const SENT: [(Class, u32); 3] = [
    (Class::Emergency, 2),
    (Class::BadNews, 1),
    (Class::Routine, 3),
];

/// Submits `sent` and waits for each item's receipt; their ids.
async fn submit_receipted(op: &mut zhibao::client::Operator, sent: &[(Class, u32)]) -> Vec<String> {
    let mut ids = Vec::new();
    for &(class, n) in sent {
        for i in 0..n {
            let id = op
                .submit(class, &format!("{class} {i}"), b"body".to_vec(), 0)
                .await
                .unwrap();
            ids.push(id);
        }
    }
    for id in &ids {
        op.wait_receipt(id, WAIT).await.unwrap();
    }
    ids
}

fn local() -> Option<SocketAddr> {
    Some("127.0.0.1:0".parse().unwrap())
}

#[tokio::test]
async fn counters_move_as_items_flow_and_parse_as_prometheus_text() {
    let region = Region::new(&["county-a"]);
    let mut hub_cfg = region.hub_config("127.0.0.1:0".parse().unwrap());
    hub_cfg.metrics.listen = local();
    let hub = node::start(hub_cfg).await.unwrap();
    let hub_metrics = hub.metrics_addr.expect("the hub serves metrics");
    let mut county_cfg = region.node_config("county-a", hub.relay_addr.unwrap());
    county_cfg.metrics.listen = local();
    let county = node::start(county_cfg).await.unwrap();
    let county_metrics = county.metrics_addr.expect("the county serves metrics");

    // Before anything flows: every family is there, at zero.
    let before = scrape(hub_metrics).await;
    for family in [
        "zhibao_items_accepted_total",
        "zhibao_receipts_total",
        "zhibao_store_free_bytes",
        "zhibao_receipt_latency_seconds",
    ] {
        assert!(before.docs.contains_key(family), "no HELP for {family}");
    }
    assert_eq!(
        value(
            &before,
            "zhibao_items_accepted_total",
            &[("class", "emergency")]
        ),
        0.0
    );

    let mut op = common::operator(&county).await;
    let ids = submit_receipted(&mut op, &SENT).await;

    let total = ids.len() as f64;
    let hub_seen = scrape_until(hub_metrics, |s| {
        Class::ALL
            .iter()
            .map(|c| value(s, "zhibao_items_accepted_total", &[("class", c.name())]))
            .sum::<f64>()
            == total
    })
    .await;
    let county_seen = scrape_until(county_metrics, |s| {
        value(s, "zhibao_receipts_total", &[("kind", "delivery")]) == total
    })
    .await;
    for (class, n) in SENT {
        let class = [("class", class.name())];
        let n = f64::from(n);
        // Accepted at the hub from the county, and at the county from its operator.
        assert_eq!(value(&hub_seen, "zhibao_items_accepted_total", &class), n);
        assert_eq!(
            value(&county_seen, "zhibao_items_accepted_total", &class),
            n
        );
        // One submit → receipt time per item, at the county.
        assert_eq!(
            value(&county_seen, "zhibao_receipt_latency_seconds_count", &class),
            n
        );
    }
    // The county's route is up, its queue drained; the hub keeps the items.
    assert_eq!(
        value(
            &county_seen,
            "zhibao_upstream_up",
            &[("route", common::HUB)]
        ),
        1.0
    );
    assert_eq!(
        value(
            &county_seen,
            "zhibao_receipts_total",
            &[("kind", "custody")]
        ),
        0.0
    );
    assert!(value(&hub_seen, "zhibao_store_commit_duration_seconds_count", &[]) >= 1.0);
    assert!(value(&hub_seen, "zhibao_store_commit_batch_size_sum", &[]) >= total);
    assert!(value(&hub_seen, "zhibao_store_free_bytes", &[]) > 0.0);
    assert_eq!(
        value(
            &hub_seen,
            "zhibao_items_refused_total",
            &[("class", "emergency"), ("reason", "unauthenticated")]
        ),
        0.0
    );

    // Refusals, by claimed class and code: an operator's report over the
    // size limit at the county, a report whose origin is not its signer
    // from a child at the hub.
    let too_big = op
        .submit(Class::Routine, "too big", vec![b'x'; 2 << 20], 0)
        .await;
    assert!(too_big.is_err());
    let mut child = common::relay_as(
        &region.pki(),
        "county-a",
        &region.pki(),
        hub.relay_addr.unwrap(),
    )
    .await;
    let mut forged = common::report("county-b");
    forged.origin = "county-b".into();
    let signed = zhibao::envelope::sign(&forged, &region.identity("county-a"));
    let refused = child.deliver(signed).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let county_refused = scrape(county_metrics).await;
    assert_eq!(
        value(
            &county_refused,
            "zhibao_items_refused_total",
            &[("class", "routine"), ("reason", "resource_exhausted")]
        ),
        1.0
    );
    let hub_refused = scrape(hub_metrics).await;
    assert_eq!(
        value(
            &hub_refused,
            "zhibao_items_refused_total",
            &[("class", "emergency"), ("reason", "permission_denied")]
        ),
        1.0
    );

    // A client without a certificate is counted by its reason.
    let roots = {
        let mut r = rustls::RootCertStore::empty();
        r.add(region.trust().snapshot().ca.clone()).unwrap();
        Arc::new(r)
    };
    let no_cert = rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
        .with_root_certificates(roots)
        .with_no_client_auth();
    if let Ok(mut client) = common::relay_with(hub.relay_addr.unwrap(), no_cert).await {
        let signed =
            zhibao::envelope::sign(&common::report("county-a"), &region.identity("county-a"));
        assert!(client.deliver(signed).await.is_err());
    }
    scrape_until(hub_metrics, |s| {
        value(
            s,
            "zhibao_tls_handshakes_refused_total",
            &[("reason", "no_client_certificate")],
        ) >= 1.0
    })
    .await;

    // Where promtool is installed (Debian's `prometheus`), its linter
    // must pass the exposition too; `cargo test` does not need it.
    let (_, _, body) = get(hub_metrics, "/metrics").await;
    promtool_check_metrics(&body);

    // Only /metrics is served.
    assert_eq!(get(hub_metrics, "/").await.0, 404);

    county.shutdown(WAIT).await;
    hub.shutdown(WAIT).await;
}

#[tokio::test]
async fn a_cut_off_county_shows_its_queues_overdue_items_escalations_and_routes_down() {
    let region = Region::new(&["county-a"]);
    // Nothing listens at either route's address.
    let dead = |_| {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let mut cfg = region.node_config("county-a", "127.0.0.1:9".parse().unwrap());
    cfg.upstream = [("hub", Role::Primary), ("alt-hub", Role::Alternate)]
        .iter()
        .enumerate()
        .map(|(i, (name, role))| UpstreamConfig {
            node_id: (*name).into(),
            addr: dead(i),
            role: *role,
        })
        .collect();
    cfg.deadlines.emergency_secs = 1;
    cfg.deadlines.bad_news_secs = 1;
    cfg.metrics.listen = local();
    let county = node::start(cfg).await.unwrap();
    let addr = county.metrics_addr.unwrap();
    let mut op = common::operator(&county).await;
    for (class, n) in [
        (Class::Emergency, 1),
        (Class::BadNews, 1),
        (Class::Routine, 2),
    ] {
        for i in 0..n {
            op.submit(class, &format!("{class} {i}"), b"body".to_vec(), 0)
                .await
                .unwrap();
        }
    }
    let seen = scrape_until(addr, |s| {
        value(s, "zhibao_items_overdue_total", &[("class", "emergency")]) == 1.0
            && value(s, "zhibao_items_overdue_total", &[("class", "bad_news")]) == 1.0
            && value(s, "zhibao_escalations_total", &[("class", "bad_news")]) >= 1.0
            && value(s, "zhibao_escalations_total", &[("class", "routine")]) == 2.0
    })
    .await;
    let queue = |route, class| [("route", route), ("class", class)];
    assert_eq!(
        value(&seen, "zhibao_queue_items", &queue("hub", "emergency")),
        1.0
    );
    // An emergency goes on every route at once.
    assert_eq!(
        value(&seen, "zhibao_queue_items", &queue("alt-hub", "emergency")),
        1.0
    );
    assert_eq!(
        value(&seen, "zhibao_queue_items", &queue("hub", "routine")),
        2.0
    );
    // With no primary route reachable, routine items go to the alternate too.
    assert_eq!(
        value(&seen, "zhibao_queue_items", &queue("alt-hub", "routine")),
        2.0
    );
    assert!(
        value(
            &seen,
            "zhibao_queue_oldest_age_seconds",
            &queue("hub", "emergency")
        ) >= 1.0
    );
    assert_eq!(
        value(&seen, "zhibao_items_overdue_total", &[("class", "routine")]),
        0.0
    );
    for route in ["hub", "alt-hub"] {
        assert_eq!(value(&seen, "zhibao_upstream_up", &[("route", route)]), 0.0);
    }
    assert_eq!(
        value(&seen, "zhibao_receipts_total", &[("kind", "custody")]),
        0.0
    );
    county.shutdown(WAIT).await;
}

/// An operator's item submitted while the county's route has nothing else
/// to do goes up while the county's own commit of it goes to the disk:
/// counted as sent early, receipted as ever, and named in the county's
/// custody log as accepted, then sent, then receipted (and delivered).
#[tokio::test]
async fn an_item_sent_up_before_its_commit_ends_is_counted_receipted_and_logged_in_order() {
    submit_one_at_a_time(true).await;
}

/// With `limits.send_while_storing = false`, no item goes up before it is
/// stored at the county, and each is receipted and logged as ever.
#[tokio::test]
async fn told_not_to_a_county_sends_nothing_up_before_it_is_stored() {
    submit_one_at_a_time(false).await;
}

/// Items submitted one at a time at a county whose route is up and idle,
/// each receipted; with `early`, until one has gone up while it was being
/// stored, else five, none of which may have.
async fn submit_one_at_a_time(early_allowed: bool) {
    use prost::Message;
    use zhibao::audit::{AuditKind, AuditRecord};

    let region = Region::new(&["county-a"]);
    let hub = region.start_hub().await;
    let mut county_cfg = region.node_config("county-a", hub.relay_addr.unwrap());
    county_cfg.metrics.listen = local();
    county_cfg.limits.send_while_storing = early_allowed;
    let county = node::start(county_cfg).await.unwrap();
    let county_metrics = county.metrics_addr.unwrap();
    let route = [("route", common::HUB)];
    scrape_until(county_metrics, |s| {
        value(s, "zhibao_upstream_up", &route) == 1.0
    })
    .await;

    // The route is idle between one item's receipt and the next submit,
    // but for the moment its session takes to see the receipt stored: one
    // of a few items goes early.
    let mut op = common::operator(&county).await;
    let mut ids = Vec::new();
    let mut early = 0.0;
    let most = if early_allowed { 20 } else { 5 };
    while early < 1.0 && ids.len() < most {
        let id = op
            .submit(
                Class::Routine,
                &format!("item {}", ids.len()),
                b"x".to_vec(),
                0,
            )
            .await
            .unwrap();
        op.wait_receipt(&id, WAIT).await.unwrap();
        ids.push(id);
        early = value(
            &scrape(county_metrics).await,
            "zhibao_items_sent_early_total",
            &route,
        );
    }
    if early_allowed {
        assert!(early >= 1.0, "none of {} items went early", ids.len());
    } else {
        assert_eq!(early, 0.0, "an item went early though told not to");
    }

    // Each item's records in the county's custody log, in order.
    let mut log = op.audit().await.unwrap();
    let mut kinds: HashMap<String, Vec<i32>> = HashMap::new();
    while let Some(batch) = log.message().await.unwrap() {
        for bytes in batch.records {
            let r = AuditRecord::decode(bytes.as_slice()).unwrap();
            kinds.entry(r.item_id).or_default().push(r.kind);
        }
    }
    let want = [
        AuditKind::Accepted as i32,
        AuditKind::Forwarded as i32,
        AuditKind::Receipted as i32,
        // The hub's receipt is its delivery receipt: the item is in its inbox.
        AuditKind::Delivered as i32,
    ];
    for id in &ids {
        assert_eq!(kinds.get(id).map(Vec::as_slice), Some(&want[..]), "{id}");
    }
    county.shutdown(WAIT).await;
    hub.shutdown(WAIT).await;
}

#[tokio::test]
async fn a_node_without_metrics_configured_has_no_listener() {
    let region = Region::new(&[]);
    let hub = region.start_hub().await;
    assert!(hub.metrics_addr.is_none());
    hub.shutdown(WAIT).await;
}

#[tokio::test]
async fn a_metrics_listener_that_cannot_bind_stops_the_start_naming_the_field() {
    let region = Region::new(&[]);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cfg = region.hub_config("127.0.0.1:0".parse().unwrap());
    cfg.metrics.listen = Some(taken.local_addr().unwrap());
    let e = node::start(cfg).await.expect_err("the port is taken");
    assert_eq!(e.field(), "metrics.listen");
    let text = e.to_string();
    assert!(text.contains("`metrics.listen`"), "{text}");
    assert!(text.contains("metrics listener"), "{text}");
}

#[tokio::test]
async fn with_a_token_file_only_scrapes_that_bear_the_token_are_answered() {
    let region = Region::new(&[]);
    let token_file = region.dir.path().join("metrics.token");
    std::fs::write(&token_file, "t0ken-of-the-scraper\n").unwrap();
    let mut cfg = region.hub_config("127.0.0.1:0".parse().unwrap());
    cfg.metrics.listen = local();
    cfg.metrics.token_file = Some(token_file);
    let hub = node::start(cfg).await.unwrap();
    let addr = hub.metrics_addr.expect("the hub serves metrics");

    for (extra, why) in [
        ("", "no Authorization header"),
        ("Authorization: Bearer wrong\r\n", "another token"),
        ("Authorization: Bearer t0ken-of-the-scrape\r\n", "a prefix"),
        (
            "Authorization: Basic dDBrZW4tb2YtdGhlLXNjcmFwZXI=\r\n",
            "another scheme",
        ),
    ] {
        let (status, head, body) = get_with(addr, "/metrics", extra).await;
        assert_eq!(status, 401, "{why}: {body}");
        assert_eq!(
            header(&head, "www-authenticate").as_deref(),
            Some("Bearer realm=\"zhibao metrics\""),
            "{why}"
        );
        assert!(!body.contains("zhibao_"), "{why}: nothing of the metrics");
    }
    for scheme in ["Bearer", "bearer"] {
        let extra = format!("Authorization: {scheme} t0ken-of-the-scraper\r\n");
        let (status, _, body) = get_with(addr, "/metrics", &extra).await;
        assert_eq!(status, 200, "{scheme}: {body}");
        assert!(body.contains("zhibao_items_accepted_total"), "{body}");
    }
    hub.shutdown(WAIT).await;
}

#[tokio::test]
async fn a_token_file_that_cannot_be_used_stops_the_start_naming_the_field() {
    let region = Region::new(&[]);
    let empty = region.dir.path().join("empty.token");
    std::fs::write(&empty, "\n").unwrap();
    for (path, says) in [
        (region.dir.path().join("absent.token"), "absent.token"),
        (empty, "holds no secret"),
    ] {
        let mut cfg = region.hub_config("127.0.0.1:0".parse().unwrap());
        cfg.metrics.listen = local();
        cfg.metrics.token_file = Some(path);
        let e = node::start(cfg).await.expect_err("no usable token");
        assert_eq!(e.field(), "metrics.token_file");
        let text = e.to_string();
        assert!(text.contains(says), "{text}");
    }
    // A token with no listener to guard is a mistake in the file, too.
    let mut cfg = region.hub_config("127.0.0.1:0".parse().unwrap());
    cfg.metrics.token_file = Some(region.dir.path().join("absent.token"));
    let e = node::start(cfg).await.expect_err("nothing to guard");
    assert_eq!(e.field(), "metrics.token_file");
}

/// The YAML documents of a file of the repository.
fn deploy_yaml(path: &str) -> Vec<yaml_rust2::Yaml> {
    let text = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap();
    yaml_rust2::YamlLoader::load_from_str(&text).expect("valid YAML")
}

#[test]
fn the_alert_rules_are_yaml_with_the_promised_alerts() {
    let docs = deploy_yaml("deploy/prometheus/alerts.yml");
    let groups = docs[0]["groups"].as_vec().expect("a list of groups");
    let rules: Vec<_> = groups
        .iter()
        .flat_map(|g| g["rules"].as_vec().expect("rules").iter())
        .collect();
    let names: Vec<&str> = rules.iter().filter_map(|r| r["alert"].as_str()).collect();
    for want in [
        "ZhibaoEmergencyOverdue",
        "ZhibaoRouteDown",
        "ZhibaoDiskNearlyFull",
    ] {
        assert!(names.contains(&want), "no alert {want} in {names:?}");
    }
    for r in &rules {
        let expr = r["expr"].as_str().expect("every rule has an expr");
        assert!(expr.contains("zhibao"), "{expr}");
    }
}

#[test]
fn the_scrape_configuration_sends_a_bearer_token_from_a_file() {
    let docs = deploy_yaml("deploy/prometheus/scrape.yml");
    let job = &docs[0]["scrape_configs"][0];
    assert_eq!(job["job_name"].as_str(), Some("zhibao"));
    assert_eq!(job["authorization"]["type"].as_str(), Some("Bearer"));
    assert!(job["authorization"]["credentials_file"].as_str().is_some());
}

#[test]
fn the_grafana_dashboard_is_json_using_our_metrics() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/zhibao.json"),
    )
    .unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let panels = dash["panels"].as_array().expect("panels");
    assert!(panels.len() >= 6);
    for p in panels {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().expect("a PromQL expression");
            assert!(expr.contains("zhibao_"), "{expr}");
        }
    }
}

/// The names of this process's threads.
fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .collect()
}

/// A county forwards emergencies and bad news on a connection of their
/// own, which the hub serves apart, on a thread of its own; routine items
/// keep to the routine stream. (A runtime of more than one thread: under
/// one, there is no thread to set apart.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urgent_items_go_up_a_connection_the_hub_serves_apart() {
    let region = Region::new(&["county-a"]);
    let mut hub_cfg = region.hub_config("127.0.0.1:0".parse().unwrap());
    hub_cfg.metrics.listen = local();
    let hub = node::start(hub_cfg).await.unwrap();
    let hub_metrics = hub.metrics_addr.expect("the hub serves metrics");
    let county = region.start_node("county-a", hub.relay_addr.unwrap()).await;
    let mut op = common::operator(&county).await;
    submit_receipted(&mut op, &SENT).await;
    // Its urgent items came on a connection served by the hub's thread for
    // them, which is running by now.
    assert!(
        thread_names().iter().any(|n| n == "zhibao-urgent"),
        "no thread for urgent connections: {:?}",
        thread_names()
    );
    let seen = scrape(hub_metrics).await;
    for (class, n) in SENT {
        let on_urgent = if class.is_urgent() { f64::from(n) } else { 0.0 };
        assert_eq!(
            value(
                &seen,
                "zhibao_urgent_connection_items_total",
                &[("class", class.name())]
            ),
            on_urgent,
            "{class}"
        );
        assert_eq!(
            value(
                &seen,
                "zhibao_items_accepted_total",
                &[("class", class.name())]
            ),
            f64::from(n),
            "{class}"
        );
    }
}
