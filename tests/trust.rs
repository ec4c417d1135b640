//! Fail closed on trust material: a configured CA, CRL, certificate or key
//! that is missing, malformed, not the region's or expired stops the node
//! at start, naming the field; at run time a CRL that disappears or goes bad
//! keeps the last good one in force and raises an alarm.

mod common;

use std::time::Duration;

use common::Region;
use zhibao::config::NodeConfig;
use zhibao::{envelope, pki, trust};

const PATIENCE: Duration = Duration::from_secs(15);

async fn assert_logged(needles: &[&str]) {
    assert!(
        common::eventually(PATIENCE, || !common::log_lines_with(needles).is_empty()).await,
        "no log line with {needles:?}"
    );
}

/// Whether the revoked county-r is refused, at the handshake or the call.
async fn refused_delivery(region: &Region, addr: std::net::SocketAddr) -> bool {
    let identity = region.identity("county-r");
    let trust = zhibao::trust::Trust::load(&region.pki().join(trust::CA_CERT), None).unwrap();
    let cfg = zhibao::tls::client_config(&identity, &trust.snapshot(), common::HUB).unwrap();
    let Ok(mut client) = common::relay_with(addr, cfg).await else {
        return true;
    };
    let item = envelope::sign(&common::report("county-r"), &identity);
    client.deliver(item).await.is_err()
}

fn hub(region: &Region) -> NodeConfig {
    region.hub_config("127.0.0.1:0".parse().unwrap())
}

/// Starting with `cfg` fails, naming `field`; nothing is left running.
async fn refused(cfg: NodeConfig, field: &str, says: &str) {
    let socket = cfg.operator_socket();
    let err = match zhibao::node::start(cfg).await {
        Ok(node) => {
            node.shutdown(PATIENCE).await;
            panic!("started although `{field}` is bad");
        }
        Err(e) => e,
    };
    assert_eq!(err.field(), field, "{err}");
    let text = err.to_string();
    assert!(text.contains(field) && text.contains(says), "{text}");
    assert!(!socket.exists(), "a refused node left its operator socket");
}

#[tokio::test]
async fn a_configured_crl_that_is_missing_stops_the_node() {
    let region = Region::new(&[]);
    std::fs::remove_file(region.pki().join(trust::CRL)).unwrap();
    refused(hub(&region), "tls.crl", "does not exist").await;
}

#[tokio::test]
async fn a_crl_from_another_ca_or_not_a_crl_stops_the_node() {
    let region = Region::new(&[]);
    let other = tempfile::tempdir().unwrap();
    pki::init(&other.path().join("certs"), "elsewhere", "hub", &[]).unwrap();
    std::fs::copy(
        other.path().join("certs").join(trust::CRL),
        region.pki().join(trust::CRL),
    )
    .unwrap();
    refused(hub(&region), "tls.crl", "not by the region CA").await;

    std::fs::write(
        region.pki().join(trust::CRL),
        "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n",
    )
    .unwrap();
    refused(hub(&region), "tls.crl", "CRL").await;
}

#[tokio::test]
async fn a_missing_ca_certificate_or_key_stops_the_node() {
    let region = Region::new(&["county-a"]);
    let mut cfg = hub(&region);
    cfg.tls.ca = region.pki().join("nowhere.pem");
    refused(cfg, "tls.ca", "nowhere.pem").await;

    let mut cfg = hub(&region);
    cfg.tls.cert = region.pki().join("nowhere.pem");
    refused(cfg, "tls.cert", "nowhere.pem").await;

    let mut cfg = hub(&region);
    cfg.tls.key = trust::node_paths(&region.pki(), "county-a").1;
    refused(cfg, "tls.key", "does not match").await;
}

#[tokio::test]
async fn an_expired_own_certificate_or_one_from_another_ca_stops_the_node() {
    let region = Region::new(&[]);
    let mut opts = pki::IssueOptions::default();
    opts.not_before -= time::Duration::days(30);
    opts.not_after = opts.not_before + time::Duration::days(1);
    pki::issue_with(&region.pki(), "old-hub", &opts).unwrap();
    let mut cfg = NodeConfig::for_node("old-hub", &region.pki(), &region.data("old-hub"));
    cfg.relay = hub(&region).relay;
    refused(cfg, "tls.cert", "expired").await;

    let other = tempfile::tempdir().unwrap();
    pki::init(&other.path().join("certs"), "elsewhere", "hub", &[]).unwrap();
    let mut cfg = hub(&region);
    (cfg.tls.cert, cfg.tls.key) = trust::node_paths(&other.path().join("certs"), "hub");
    refused(cfg, "tls.cert", "not valid for this region").await;
}

#[tokio::test]
async fn an_own_certificate_whose_key_may_not_sign_stops_the_node() {
    let region = Region::new(&[]);
    let opts = pki::IssueOptions {
        may_sign: false,
        ..Default::default()
    };
    pki::issue_with(&region.pki(), "ka-hub", &opts).unwrap();
    let mut cfg = NodeConfig::for_node("ka-hub", &region.pki(), &region.data("ka-hub"));
    cfg.relay = hub(&region).relay;
    refused(cfg, "tls.cert", "digitalSignature").await;
}

#[tokio::test]
async fn a_crl_deleted_or_spoiled_while_running_keeps_the_last_good_one() {
    let region = Region::new(&["county-r"]);
    pki::revoke(&region.pki(), "county-r").unwrap();
    let hub = zhibao::node::start(hub(&region)).await.unwrap();
    let addr = hub.relay_addr.unwrap();
    let crl = region.pki().join(trust::CRL);
    let good = std::fs::read(&crl).unwrap();

    std::fs::remove_file(&crl).unwrap();
    assert_logged(&["ALARM", "cannot be used", "does not exist"]).await;
    assert!(
        refused_delivery(&region, addr).await,
        "a deleted CRL let a revoked county in"
    );

    std::fs::write(&crl, b"not a CRL at all").unwrap();
    assert_logged(&["ALARM", "cannot be used", "no PEM CRL"]).await;
    assert!(
        refused_delivery(&region, addr).await,
        "a spoiled CRL let a revoked county in"
    );

    std::fs::write(&crl, good).unwrap();
    hub.shutdown(PATIENCE).await;
}

#[tokio::test]
async fn a_node_whose_folder_holds_the_ca_key_does_not_start() {
    let region = Region::new(&[]);
    let ca_dir = zhibao::trust::files::default_ca_dir(&region.pki());
    std::fs::copy(ca_dir.join(trust::CA_KEY), region.pki().join(trust::CA_KEY)).unwrap();
    refused(hub(&region), "tls.key", "the region CA's private key").await;
}

#[tokio::test]
async fn a_renewed_certificate_is_used_without_a_restart() {
    let region = Region::new(&["county-a"]);
    let hub = zhibao::node::start(hub(&region)).await.unwrap();
    let addr = hub.relay_addr.unwrap();
    let mut county = common::relay_as(&region.pki(), "county-a", &region.pki(), addr).await;
    let item = envelope::sign(&common::report("county-a"), &region.identity("county-a"));
    let before = county.deliver(item).await.unwrap().into_inner();
    let old_cert = region.identity(common::HUB).cert().to_vec();
    assert_eq!(before.signer_cert, old_cert);

    let renewal = pki::renew(
        &pki::Pki::at(&region.pki()),
        common::HUB,
        &pki::IssueOptions::default(),
    )
    .unwrap();
    assert_logged(&["renewed ones are in use", "hub"]).await;
    let new_cert = region.identity(common::HUB).cert().to_vec();
    assert_ne!(new_cert, old_cert, "{renewal:?}");

    // New connections meet the new certificate; receipts are signed by it,
    // and the receipt given under the old one still verifies.
    let mut county = common::relay_as(&region.pki(), "county-a", &region.pki(), addr).await;
    let item = envelope::sign(&common::report("county-a"), &region.identity("county-a"));
    let after = county.deliver(item).await.unwrap().into_inner();
    assert_eq!(after.signer_cert, new_cert);
    let now = std::time::SystemTime::now();
    zhibao::receipt::open(&after, &region.trust(), now).unwrap();
    zhibao::receipt::open(&before, &region.trust(), now).unwrap();
    hub.shutdown(PATIENCE).await;
}

/// Whether county-a gets an item into the hub at `addr`.
async fn delivers(region: &Region, addr: std::net::SocketAddr) -> bool {
    let identity = region.identity("county-a");
    let trust = zhibao::trust::Trust::load(&region.pki().join(trust::CA_CERT), None).unwrap();
    let cfg = zhibao::tls::client_config(&identity, &trust.snapshot(), common::HUB).unwrap();
    let Ok(mut client) = common::relay_with(addr, cfg).await else {
        return false;
    };
    let item = envelope::sign(&common::report("county-a"), &identity);
    client.deliver(item).await.is_ok()
}

#[tokio::test]
async fn a_crl_past_its_grace_stops_relay_traffic_until_a_fresh_one_comes() {
    let region = Region::new(&["county-a"]);
    let ca = pki::Pki::at(&region.pki());
    let now = time::OffsetDateTime::now_utc();
    pki::reissue_crl(&ca, now - time::Duration::hours(2)).unwrap();

    // Within its grace: tolerated, with an alarm and the state shown.
    let mut cfg = hub(&region);
    cfg.tls.crl_grace_secs = 3 * 3600;
    let tolerant = zhibao::node::start(cfg).await.unwrap();
    assert_logged(&["ALARM", "past its nextUpdate"]).await;
    assert!(delivers(&region, tolerant.relay_addr.unwrap()).await);
    let mut op = common::operator(&tolerant).await;
    let node = op.node().await.unwrap();
    assert!(
        node.crl_state.starts_with("expired, tolerated until"),
        "{node:?}"
    );
    tolerant.shutdown(PATIENCE).await;

    // Past it: the node runs, refuses relay traffic, and says why.
    let mut cfg = hub(&region);
    cfg.tls.crl_grace_secs = 3600;
    let strict = zhibao::node::start(cfg).await.unwrap();
    let addr = strict.relay_addr.unwrap();
    assert_logged(&["ALARM", "past its grace"]).await;
    assert!(
        !delivers(&region, addr).await,
        "relay traffic with a stale CRL"
    );
    let mut op = common::operator(&strict).await;
    assert_eq!(
        op.node().await.unwrap().crl_state,
        "stale: relay traffic refused"
    );

    // A fresh CRL puts it right, without a restart.
    pki::reissue_crl(&ca, now + time::Duration::days(30)).unwrap();
    // The node looks at its files every 2 s; its state is read until then.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while op.node().await.unwrap().crl_state != "fresh" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the fresh CRL was not taken"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        delivers(&region, addr).await,
        "still refused with a fresh CRL"
    );
    strict.shutdown(PATIENCE).await;
}
