//! Crash tests with the real binary: SIGKILL a node or the hub at a bad
//! moment, restart it, and check every acknowledged item is delivered once.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::{Daemon, HUB, Region};
use prost::Message;
use zhibao::class::Class;
use zhibao::client::Operator;
use zhibao::proto::{ItemState, Report};
use zhibao::trust;

const WAIT: Duration = Duration::from_secs(30);

fn write_config(
    region: &Region,
    name: &str,
    relay: Option<SocketAddr>,
    upstream: Option<SocketAddr>,
) -> PathBuf {
    let pki = region.pki();
    let (cert, key) = trust::node_paths(&pki, name);
    let mut text = format!(
        "node_id = \"{name}\"\ndata_dir = \"{}\"\n\n[tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\ncrl = \"{}\"\n\n[limits]\nmax_backoff_secs = 1\n",
        region.data(name).display(),
        pki.join(trust::CA_CERT).display(),
        cert.display(),
        key.display(),
        pki.join(trust::CRL).display(),
    );
    if let Some(addr) = relay {
        text.push_str(&format!("\n[relay]\nlisten = \"{addr}\"\n"));
    }
    if let Some(addr) = upstream {
        text.push_str(&format!(
            "\n[upstream]\nnode_id = \"{HUB}\"\naddr = \"{addr}\"\n"
        ));
    }
    let path = region.dir.path().join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// A loopback port nothing listens on (yet).
fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

async fn inbox_counts(region: &Region, addr: SocketAddr) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for signed in common::inbox_items(region, addr).await {
        let r = Report::decode(signed.report.as_slice()).unwrap();
        *counts.entry(r.id).or_insert(0) += 1;
    }
    counts
}

#[tokio::test]
async fn node_killed_with_queued_items_delivers_them_all_once_after_restart() {
    let region = Region::new(&["county-a"]);
    let hub_addr = free_port();
    let config = write_config(&region, "county-a", None, Some(hub_addr));

    // The hub is not up: everything the node acknowledges stays queued.
    let node = Daemon::start(&config);
    let mut op = Operator::connect(&node.socket).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..60 {
        let class = Class::ALL[i % 3];
        ids.push(
            op.submit(class, &format!("item {i}"), vec![b'x'; 512], 0)
                .await
                .unwrap(),
        );
    }
    drop(op);
    node.kill9();

    let node = Daemon::start(&config);
    let mut op = Operator::connect(&node.socket).await.unwrap();
    for id in &ids {
        let st = op.status(id).await.unwrap();
        assert_eq!(
            st.state,
            ItemState::Queued as i32,
            "{id} survived the kill, still queued"
        );
    }
    let hub = region.restart_hub(hub_addr).await;
    for id in &ids {
        let st = op.wait_receipt(id, WAIT).await.unwrap();
        assert_eq!(st.state, ItemState::Receipted as i32, "{id}");
        assert!(st.receipt_verification.starts_with("valid"));
    }
    let counts = inbox_counts(&region, hub_addr).await;
    assert_eq!(counts.len(), ids.len());
    for id in &ids {
        assert_eq!(counts.get(id), Some(&1), "{id}");
    }
    hub.shutdown(WAIT).await;
    drop(node);
}

#[tokio::test]
async fn hub_killed_mid_stream_loses_nothing_and_duplicates_nothing() {
    let region = Region::new(&["county-a"]);
    let hub_addr = free_port();
    let hub_config = write_config(&region, HUB, Some(hub_addr), None);
    let hub = Daemon::start(&hub_config);
    assert_eq!(hub.relay, Some(hub_addr));

    let node = region.start_node("county-a", hub_addr).await;
    let mut op = common::operator(&node).await;
    // Submit continuously from another task while the hub is killed.
    let (first_tx, first_rx) = tokio::sync::oneshot::channel();
    let mut submitter = common::operator(&node).await;
    let feeding = tokio::spawn(async move {
        let mut ids = Vec::new();
        let mut first_tx = Some(first_tx);
        for i in 0..600 {
            let id = submitter
                .submit(Class::ALL[i % 3], &format!("item {i}"), vec![b'y'; 256], 0)
                .await
                .unwrap();
            if let Some(tx) = first_tx.take() {
                tx.send(id.clone()).unwrap();
            }
            ids.push(id);
        }
        ids
    });
    // Kill the hub as soon as it has taken one, while the rest stream in.
    let first = first_rx.await.unwrap();
    op.wait_receipt(&first, WAIT).await.unwrap();
    hub.kill9();
    let ids = feeding.await.unwrap();
    let receipted_before = {
        let mut n = 0;
        for id in &ids {
            if op.status(id).await.unwrap().state == ItemState::Receipted as i32 {
                n += 1;
            }
        }
        n
    };
    eprintln!(
        "{receipted_before} of {} receipted before the kill",
        ids.len()
    );

    let hub = Daemon::start(&hub_config);
    for id in &ids {
        let st = op.wait_receipt(id, WAIT).await.unwrap();
        assert_eq!(st.state, ItemState::Receipted as i32, "{id}");
    }
    let counts = inbox_counts(&region, hub_addr).await;
    assert_eq!(counts.len(), ids.len(), "every item reached the inbox");
    assert!(counts.values().all(|n| *n == 1), "an item was stored twice");
    node.shutdown(WAIT).await;
    drop(hub);
}

/// `config` with the store's log in segments of 64 KiB, so a few hundred
/// reports span many.
fn small_segments(config: PathBuf) -> PathBuf {
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replacen("[limits]\n", "[limits]\nlog_segment_bytes = 65536\n", 1);
    std::fs::write(&config, text).unwrap();
    config
}

/// The log segments after the first in a node's data directory.
fn later_segments(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("store.redb.log."))
                .is_some_and(|n| n.parse::<u64>().is_ok())
        })
        .count()
}

/// Item `i`'s body, about 1.5 KiB.
fn body(i: usize) -> Vec<u8> {
    format!("report {i} ").repeat(150).into_bytes()
}

/// Submits items `range` (classes in turn, [`body`]) and adds their ids
/// to `ids`.
async fn submit_items(op: &mut Operator, range: std::ops::Range<usize>, ids: &mut Vec<String>) {
    for i in range {
        ids.push(
            op.submit(Class::ALL[i % 3], &format!("item {i}"), body(i), 0)
                .await
                .unwrap(),
        );
    }
}

#[tokio::test]
async fn reports_kept_across_log_segments_survive_kill9_of_both_nodes() {
    let region = Region::new(&["county-a"]);
    let hub_addr = free_port();
    let hub_config = small_segments(write_config(&region, HUB, Some(hub_addr), None));
    let node_config = small_segments(write_config(&region, "county-a", None, Some(hub_addr)));
    let hub = Daemon::start(&hub_config);
    let node = Daemon::start(&node_config);
    let mut op = Operator::connect(&node.socket).await.unwrap();
    let mut ids = Vec::new();
    // Delivered, then queued at the county while the hub is down: both
    // nodes' logs move on to new segments as they go.
    submit_items(&mut op, 0..100, &mut ids).await;
    for id in &ids {
        op.wait_receipt(id, WAIT).await.unwrap();
    }
    hub.kill9();
    submit_items(&mut op, 100..200, &mut ids).await;
    drop(op);
    node.kill9();

    // Both come back from their logs; the county sends what it queued,
    // reading each report back from the segment it was written to.
    let hub = Daemon::start(&hub_config);
    let node = Daemon::start(&node_config);
    let mut op = Operator::connect(&node.socket).await.unwrap();
    submit_items(&mut op, 200..250, &mut ids).await;
    for id in &ids {
        let st = op.wait_receipt(id, WAIT).await.unwrap();
        assert_eq!(st.state, ItemState::Receipted as i32, "{id}");
        assert!(st.receipt_verification.starts_with("valid"), "{id}");
    }
    let mut seen = HashMap::new();
    for signed in common::inbox_items(&region, hub_addr).await {
        let r = Report::decode(signed.report.as_slice()).unwrap();
        let i: usize = r.title.strip_prefix("item ").unwrap().parse().unwrap();
        assert_eq!(r.body, body(i), "{} came through whole", r.id);
        *seen.entry(r.id).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), ids.len(), "every item reached the inbox");
    assert!(seen.values().all(|n| *n == 1), "an item was stored twice");
    for name in ["county-a", HUB] {
        assert!(
            later_segments(&region.data(name)) >= 2,
            "{name}'s log went on in new segments"
        );
    }
    drop(node);
    drop(hub);
}
