use std::time::{Duration, SystemTime};

use super::*;

fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.lines().find(|l| l.starts_with(prefix))
}

#[test]
fn counts_by_label_and_encodes_the_prometheus_text_format() {
    let m = Metrics::new(["hub", "region-b"]);
    m.event(EventKind::Submitted, Some(Class::Emergency), "");
    m.event(EventKind::Submitted, Some(Class::Emergency), "");
    m.event(EventKind::Submitted, Some(Class::Routine), "");
    m.event(EventKind::Submitted, None, ""); // no class: not an item
    m.event(EventKind::Escalated, Some(Class::BadNews), "");
    m.event(EventKind::RouteUp, None, "hub");
    m.event(EventKind::RouteUp, None, "hub");
    m.event(EventKind::RouteUp, None, "hub");
    m.receipt(true);
    m.refused(None, tonic::Code::InvalidArgument);
    m.tls_refused("revoked");
    let now = SystemTime::now();
    let stored = now - Duration::from_millis(300);
    let stored_ms = stored
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    m.receipt_latency(0, stored_ms, now);
    m.store_commit(7, Duration::from_micros(150));
    let text = m.encode(&Snapshot {
        queues: vec![QueueGauge {
            route: "hub".into(),
            class: Class::Routine,
            items: 5,
            oldest_secs: 1.5,
        }],
        routes: vec![("hub".into(), Some(true)), ("region-b".into(), None)],
        upload_bytes: 4096,
        free_bytes: Some(1 << 30),
    });
    let has = |l: &str| assert!(text.lines().any(|x| x == l), "no line {l:?} in\n{text}");
    has("# TYPE zhibao_items_accepted_total counter");
    has(r#"zhibao_items_accepted_total{class="emergency"} 2"#);
    has(r#"zhibao_items_accepted_total{class="routine"} 1"#);
    has(r#"zhibao_items_accepted_total{class="bad_news"} 0"#);
    has(r#"zhibao_escalations_total{class="bad_news"} 1"#);
    // Up three times: the first is a connect, then two reconnects.
    has(r#"zhibao_upstream_reconnects_total{route="hub"} 2"#);
    has(r#"zhibao_upstream_reconnects_total{route="region-b"} 0"#);
    has(r#"zhibao_receipts_total{kind="delivery"} 1"#);
    has(r#"zhibao_receipts_total{kind="custody"} 0"#);
    has(r#"zhibao_items_refused_total{class="unknown",reason="invalid_argument"} 1"#);
    has(r#"zhibao_tls_handshakes_refused_total{reason="revoked"} 1"#);
    has("# TYPE zhibao_receipt_latency_seconds histogram");
    has(r#"zhibao_receipt_latency_seconds_count{class="emergency"} 1"#);
    has(r#"zhibao_receipt_latency_seconds_bucket{class="emergency",le="0.25"} 0"#);
    has(r#"zhibao_receipt_latency_seconds_bucket{class="emergency",le="0.5"} 1"#);
    has(r#"zhibao_receipt_latency_seconds_count{class="routine"} 0"#);
    has("zhibao_store_commit_batch_size_sum 7.0");
    has(r#"zhibao_store_commit_duration_seconds_bucket{le="0.00025"} 1"#);
    has(r#"zhibao_queue_items{route="hub",class="routine"} 5"#);
    has(r#"zhibao_queue_oldest_age_seconds{route="hub",class="routine"} 1.5"#);
    has(r#"zhibao_upstream_up{route="hub"} 1"#);
    has(r#"zhibao_upstream_up{route="region-b"} 0"#);
    has("zhibao_attachment_bytes_in_flight 4096");
    has("zhibao_store_free_bytes 1073741824");
    assert!(line(&text, "# HELP zhibao_store_free_bytes ").is_some());
}

#[test]
fn a_scrape_shows_only_the_queues_of_now() {
    let m = Metrics::new([]);
    let q = |items| Snapshot {
        queues: vec![QueueGauge {
            route: "hub".into(),
            class: Class::Emergency,
            items,
            oldest_secs: 0.0,
        }],
        ..Snapshot::default()
    };
    assert!(
        m.encode(&q(3))
            .contains(r#"zhibao_queue_items{route="hub",class="emergency"} 3"#)
    );
    let empty = m.encode(&Snapshot::default());
    assert!(!empty.contains("zhibao_queue_items{"), "{empty}");
}
