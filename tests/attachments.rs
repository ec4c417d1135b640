//! Large attachments travel in chunks, interleaved by class, resumable:
//! an urgent item never waits behind a bulk upload.

mod common;

use std::time::{Duration, Instant};

use common::{HUB, LinkProxy, Region, Shape};
use zhibao::class::Class;
use zhibao::config::{NodeConfig, Role, UpstreamConfig};
use zhibao::proto::{EventKind, ItemState};

const WAIT: Duration = Duration::from_secs(30);

fn county(region: &Region, upstream: std::net::SocketAddr) -> NodeConfig {
    let mut cfg = NodeConfig::for_node("county-a", &region.pki(), &region.data("county-a"));
    cfg.upstream = vec![UpstreamConfig {
        node_id: HUB.into(),
        addr: upstream.to_string(),
        role: Role::Primary,
    }];
    cfg.limits.max_backoff_secs = 1;
    cfg
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[tokio::test]
async fn emergency_overtakes_a_20_mib_upload_on_a_1_mbit_link() {
    let region = Region::new(&["county-a"]);
    let hub = region.start_hub().await;
    let link = LinkProxy::shaped(
        hub.relay_addr.unwrap(),
        Shape {
            bits_per_sec: Some(1_000_000),
            latency: Duration::ZERO,
        },
    )
    .await;
    let node = zhibao::node::start(county(&region, link.addr))
        .await
        .unwrap();
    let mut op = common::operator(&node).await;
    let mut events = op.watch().await.unwrap();

    let scan = pattern(20 * 1024 * 1024);
    let routine = op
        .submit_with(
            Class::Routine,
            "survey scans",
            b"see attachment".to_vec(),
            0,
            vec![("scan.tif".into(), scan)],
        )
        .await
        .unwrap();
    common::await_event(&mut events, WAIT, |e| {
        e.kind == EventKind::Upload as i32 && e.item_id == routine
    })
    .await;

    let started = Instant::now();
    let emergency = op
        .submit(Class::Emergency, "chemical spill", b"evacuate".to_vec(), 0)
        .await
        .unwrap();
    let st = op.wait_receipt(&emergency, WAIT).await.unwrap();
    let took = started.elapsed();
    eprintln!("emergency receipted {took:?} after submission, behind a 20 MiB upload at 1 Mbit/s");
    assert_eq!(st.state, ItemState::Receipted as i32);
    // The one timed assertion the issue asks for: urgent within 2 s on a 1 Mbit/s link.
    assert!(
        took < Duration::from_secs(2),
        "emergency took {took:?} behind the upload"
    );
    let bulk = op.status(&routine).await.unwrap();
    assert_ne!(
        bulk.state,
        ItemState::Receipted as i32,
        "the 20 MiB upload should still be going"
    );
    node.shutdown(Duration::from_secs(5)).await;
    hub.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn interrupted_upload_resumes_from_the_last_stored_chunk() {
    let region = Region::new(&["county-a"]);
    let hub = region.start_hub().await;
    let hub_addr = hub.relay_addr.unwrap();
    let link = LinkProxy::shaped(
        hub_addr,
        Shape {
            bits_per_sec: Some(16_000_000),
            latency: Duration::ZERO,
        },
    )
    .await;
    let mut cfg = county(&region, link.addr);
    cfg.limits.chunk_bytes = 16 * 1024;
    let node = zhibao::node::start(cfg).await.unwrap();
    let mut op = common::operator(&node).await;
    let mut events = op.watch().await.unwrap();

    let photo = pattern(4 * 1024 * 1024 + 123);
    let id = op
        .submit_with(
            Class::BadNews,
            "bridge photos",
            b"attached".to_vec(),
            0,
            vec![("bridge.jpg".into(), photo.clone())],
        )
        .await
        .unwrap();
    // Progress is reported every 64 chunks; cut the link at the first report past zero.
    common::await_event(&mut events, WAIT, |e| {
        e.kind == EventKind::Upload as i32 && e.item_id == id && !e.message.ends_with("chunk 0")
    })
    .await;
    link.cut();
    common::await_event(&mut events, WAIT, |e| e.kind == EventKind::RouteDown as i32).await;
    link.restore();
    let resumed = common::await_event(&mut events, WAIT, |e| {
        e.kind == EventKind::Upload as i32 && e.item_id == id && e.message.contains("resuming")
    })
    .await;
    let at: u32 = resumed.message.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(at >= 64, "resumed at chunk {at}, not from zero");
    assert!(
        !common::log_lines_with(&["resuming upload from the last stored chunk", &id]).is_empty()
    );

    let st = op.wait_receipt(&id, WAIT).await.unwrap();
    assert_eq!(st.state, ItemState::Receipted as i32);
    // What reached the hub is the attachment, byte for byte.
    let (cert, key) = zhibao::trust::node_paths(&region.pki(), HUB);
    let ca = region.pki().join(zhibao::trust::CA_CERT);
    let mut inbox = zhibao::client::Inbox::connect(&hub_addr.to_string(), HUB, &ca, &cert, &key)
        .await
        .unwrap();
    assert_eq!(inbox.attachment(&id, 0).await.unwrap(), photo);
    node.shutdown(Duration::from_secs(5)).await;
    hub.shutdown(Duration::from_secs(5)).await;
}
