//! Revocation bites at once: when the CRL changes, open connections of a
//! peer that is now revoked are closed — an inbox subscription, a county's
//! `Forward` stream, an operator console's watch on the mTLS operator
//! listener — and nothing more is sent on them.

mod common;

use std::time::Duration;

use common::{HUB, Region};
use zhibao::class::Class;
use zhibao::client::{Inbox, Operator};
use zhibao::config::RelayListen;
use zhibao::proto::{Cursor, ItemState};
use zhibao::{envelope, pki, trust};

const PATIENCE: Duration = Duration::from_secs(15);

async fn assert_logged(needles: &[&str]) {
    assert!(
        common::eventually(PATIENCE, || !common::log_lines_with(needles).is_empty()).await,
        "no log line with {needles:?}"
    );
}

/// Ok(None) or an error: the stream is over.
async fn ends<T: std::fmt::Debug>(
    stream: &mut tonic::Streaming<T>,
) -> Result<Option<T>, tonic::Status> {
    tokio::time::timeout(PATIENCE, stream.message())
        .await
        .expect("the stream of a revoked peer was not closed")
}

#[tokio::test]
async fn a_revoked_consumer_s_inbox_stream_is_closed_and_gets_nothing_more() {
    let region = Region::new(&["county-a", "console"]);
    let mut cfg = region.hub_config("127.0.0.1:0".parse().unwrap());
    cfg.relay = Some(RelayListen {
        listen: "127.0.0.1:0".parse().unwrap(),
        consumers: vec!["console".into()],
    });
    let hub = zhibao::node::start(cfg).await.unwrap();
    let addr = hub.relay_addr.unwrap();
    let (cert, key) = trust::node_paths(&region.pki(), "console");
    let ca = region.pki().join(trust::CA_CERT);
    let mut inbox = Inbox::connect(&addr.to_string(), HUB, &ca, &cert, &key)
        .await
        .unwrap();
    let mut stream = inbox.subscribe(Cursor::default(), true).await.unwrap();

    let mut county = common::relay_as(&region.pki(), "county-a", &region.pki(), addr).await;
    let first = envelope::sign(&common::report("county-a"), &region.identity("county-a"));
    county.deliver(first.clone()).await.unwrap();
    let got = stream.message().await.unwrap().unwrap();
    assert_eq!(
        got.item.unwrap().report,
        first.report,
        "it reads while valid"
    );

    pki::revoke(&region.pki(), "console").unwrap();
    let end = ends(&mut stream).await;
    assert!(!matches!(end, Ok(Some(_))), "{end:?}");
    assert_logged(&["closing connection", "console"]).await;

    // Nothing more reaches it, and it cannot come back.
    let second = envelope::sign(&common::report("county-a"), &region.identity("county-a"));
    county.deliver(second).await.unwrap();
    let again = Inbox::connect(&addr.to_string(), HUB, &ca, &cert, &key).await;
    let refused = match again {
        Err(_) => true,
        Ok(mut i) => i.subscribe(Cursor::default(), false).await.is_err(),
    };
    assert!(refused, "a revoked consumer subscribed again");
    hub.shutdown(PATIENCE).await;
}

#[tokio::test]
async fn a_revoked_county_s_forward_stream_is_closed_and_its_items_do_not_get_in() {
    let region = Region::new(&["county-q"]);
    let hub = region.start_hub().await;
    let hub_addr = hub.relay_addr.unwrap();
    let node = region.start_node("county-q", hub_addr).await;
    let mut op = common::operator(&node).await;
    let before = op
        .submit(Class::Routine, "before", b"x".to_vec(), 0)
        .await
        .unwrap();
    let st = op.wait_receipt(&before, PATIENCE).await.unwrap();
    assert_eq!(st.state, ItemState::Receipted as i32);

    pki::revoke(&region.pki(), "county-q").unwrap();
    assert_logged(&["closing connection", "county-q"]).await;
    assert_logged(&["refused TLS client", "\"county-q\"", "revoked"]).await;
    let after = op
        .submit(Class::Routine, "after", b"y".to_vec(), 0)
        .await
        .unwrap();
    let st = op.status(&after).await.unwrap();
    assert_ne!(st.state, ItemState::Receipted as i32);
    let ids: Vec<String> = common::inbox_items(&region, hub_addr)
        .await
        .iter()
        .filter_map(envelope::claimed_id)
        .collect();
    assert!(ids.contains(&before), "{ids:?}");
    assert!(
        !ids.contains(&after),
        "a revoked county's item got in: {after} in {ids:?}"
    );
    node.shutdown(PATIENCE).await;
    hub.shutdown(PATIENCE).await;
}

#[tokio::test]
async fn a_revoked_console_s_watch_on_the_operator_listener_is_closed() {
    let region = Region::new(&["console"]);
    let mut cfg = region.hub_config("127.0.0.1:0".parse().unwrap());
    cfg.operator.listen = Some("127.0.0.1:0".parse().unwrap());
    cfg.operator.allowed = vec!["console".into()];
    let hub = zhibao::node::start(cfg).await.unwrap();
    let (cert, key) = trust::node_paths(&region.pki(), "console");
    let ca = region.pki().join(trust::CA_CERT);
    let addr = hub.operator_addr.unwrap().to_string();
    let mut console = Operator::connect_tls(&addr, HUB, &ca, &cert, &key)
        .await
        .unwrap();
    let mut events = console.watch().await.unwrap();
    console.list(false, 1).await.unwrap();

    pki::revoke(&region.pki(), "console").unwrap();
    let end = ends(&mut events).await;
    assert!(!matches!(end, Ok(Some(_))), "{end:?}");
    assert!(
        console.list(false, 1).await.is_err(),
        "a revoked console still uses the operator API"
    );
    hub.shutdown(PATIENCE).await;
}

#[tokio::test]
async fn a_county_refused_for_good_is_told_and_stops_waiting() {
    let region = Region::new(&["county-r"]);
    let hub = region.start_hub().await;
    let hub_addr = hub.relay_addr.unwrap();
    let node = region.start_node("county-r", hub_addr).await;
    let mut op = common::operator(&node).await;
    let mut events = op.watch().await.unwrap();
    pki::revoke(&region.pki(), "county-r").unwrap();
    assert_logged(&["closing connection", "county-r"]).await;

    let id = op
        .submit(Class::BadNews, "bridge down", b"east span".to_vec(), 0)
        .await
        .unwrap();
    let refused = common::await_event(&mut events, PATIENCE, |e| {
        e.kind == zhibao::proto::EventKind::Refused as i32 && e.item_id == id
    })
    .await;
    assert!(refused.message.contains("revoked"), "{}", refused.message);
    let st = op.wait_receipt(&id, PATIENCE).await.unwrap();
    assert_eq!(st.state, ItemState::Refused as i32);
    assert!(
        st.refusal
            .contains("refuses this node's certificate: revoked"),
        "{}",
        st.refusal
    );
    assert_logged(&["ALARM", "refuses this node's certificate", "marked refused"]).await;

    // The command line says so in one line and a non-zero code.
    let sock = node.operator_socket.to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_zhibao"))
            .args(["submit", "--socket", &sock, "-p", "bad_news", "-t", "again"])
            .args(["--body", "x", "--wait", "--timeout", "30s"])
            .env_remove("ZHIBAO_LANG")
            .env_remove("LC_ALL")
            .env_remove("LANG")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(65), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("was refused") && stderr.contains("revoked"),
        "{stderr}"
    );
    node.shutdown(PATIENCE).await;
    hub.shutdown(PATIENCE).await;
}

#[tokio::test]
async fn a_crl_issued_at_the_hub_reaches_every_node_below_it() {
    const RELAY: &str = "region";
    let region = Region::new(&[RELAY, "county-z"]);
    let hub = region.start_hub().await;
    let hub_addr = hub.relay_addr.unwrap();
    // The relay has its own copy of the PKI files, as a real one would.
    let relay_pki = region.dir.path().join("relay-certs");
    pki::bundle(&region.pki(), RELAY, &relay_pki).unwrap();
    let mut cfg = zhibao::config::NodeConfig::for_node(RELAY, &relay_pki, &region.data(RELAY));
    cfg.relay = Some(RelayListen {
        listen: "127.0.0.1:0".parse().unwrap(),
        consumers: Vec::new(),
    });
    cfg.upstream = region.node_config(RELAY, hub_addr).upstream;
    let relay = zhibao::node::start(cfg).await.unwrap();
    let relay_addr = relay.relay_addr.unwrap();
    let number = |dir: &std::path::Path| {
        let ca = std::fs::read(dir.join(trust::CA_CERT)).unwrap();
        let crl =
            zhibao::trust::Trust::load(&dir.join(trust::CA_CERT), Some(&dir.join(trust::CRL)))
                .unwrap()
                .crl_der()
                .unwrap();
        let ca = rustls_pki_types_der(&ca);
        zhibao::trust::crl::check(&ca, &crl).unwrap().number
    };
    let before = number(&relay_pki);

    // Revoked at the hub only: the relay learns it down its stream.
    pki::revoke(&region.pki(), "county-z").unwrap();
    let issued = number(&region.pki());
    assert!(issued > before);
    assert!(
        common::eventually(PATIENCE, || number(&relay_pki) == issued).await,
        "the relay's CRL is still number {} (the hub issued {issued})",
        number(&relay_pki)
    );
    assert_logged(&["a newer region CRL came down", "in force"]).await;
    // And the relay now refuses county-z, whose CRL it never got by hand.
    let trust = zhibao::trust::Trust::load(&region.pki().join(trust::CA_CERT), None).unwrap();
    let me = region.identity("county-z");
    let cfg = zhibao::tls::client_config(&me, &trust.snapshot(), RELAY).unwrap();
    let refused = match common::relay_with_name(relay_addr, cfg, RELAY).await {
        Err(_) => true,
        Ok(mut c) => c
            .deliver(envelope::sign(&common::report("county-z"), &me))
            .await
            .is_err(),
    };
    assert!(
        refused,
        "county-z was let in after its revocation came down"
    );
    relay.shutdown(PATIENCE).await;
    hub.shutdown(PATIENCE).await;
}

/// The DER of the first certificate in a PEM file's bytes.
fn rustls_pki_types_der(pem: &[u8]) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem)
        .unwrap()
        .to_vec()
}
