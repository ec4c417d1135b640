//! Idle strangers do not crowd out counties: 2,000 TCP connections that
//! never start a TLS handshake are held open against the hub, and a county
//! still connects and delivers. The time it takes, with and without them,
//! is printed (`cargo test --test strangers -- --nocapture`) for the README;
//! it is measured, not asserted.

mod common;

use std::time::{Duration, Instant};

use common::Region;
use zhibao::envelope;

const IDLE: usize = 2_000;
const PATIENCE: Duration = Duration::from_secs(30);

/// Connects as county-a and delivers one item; returns how long it took.
async fn county_delivers(region: &Region, addr: std::net::SocketAddr) -> Duration {
    let started = Instant::now();
    let mut client = common::relay_as(&region.pki(), "county-a", &region.pki(), addr).await;
    let item = envelope::sign(&common::report("county-a"), &region.identity("county-a"));
    tokio::time::timeout(PATIENCE, client.deliver(item))
        .await
        .expect("the county got in within the patience")
        .expect("the county's item was taken");
    started.elapsed()
}

#[tokio::test]
async fn a_county_gets_in_while_two_thousand_idle_sockets_are_held() {
    let region = Region::new(&["county-a"]);
    let hub = region.start_hub().await;
    let addr = hub.relay_addr.unwrap();
    let alone = county_delivers(&region, addr).await;

    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    let crowded = county_delivers(&region, addr).await;
    eprintln!(
        "county connect + TLS handshake + delivery: {:.1} ms alone, {:.1} ms with {IDLE} idle sockets held",
        alone.as_secs_f64() * 1e3,
        crowded.as_secs_f64() * 1e3
    );
    drop(idle);
    hub.shutdown(PATIENCE).await;
}
