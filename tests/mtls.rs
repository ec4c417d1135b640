//! Who may connect, and which reports are accepted: each refusal with the
//! right error, and a log line naming the peer.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::{HUB, Region};
use rustls::RootCertStore;
use zhibao::proto::{Report, SignedReport};
use zhibao::trust::{Identity, Trust};
use zhibao::{envelope, pki, trust};

const PATIENCE: Duration = Duration::from_secs(10);

fn roots(region: &Region) -> Arc<RootCertStore> {
    let trust = region.trust();
    let mut roots = RootCertStore::empty();
    roots.add(trust.snapshot().ca.clone()).unwrap();
    Arc::new(roots)
}

fn report(origin: &str) -> Report {
    common::report(origin)
}

/// Client config presenting `cert`/`key` from `pki_dir`, trusting `region`'s CA.
fn client_cfg(region: &Region, pki_dir: &std::path::Path, node: &str) -> rustls::ClientConfig {
    let (c, k) = trust::node_paths(pki_dir, node);
    let id = Identity::load(&c, &k).unwrap();
    rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
        .with_root_certificates(roots(region))
        .with_client_auth_cert(vec![id.cert().clone()], id.private_key())
        .unwrap()
}

/// Tries one call over a connection made with `cfg`; it must fail.
async fn call_is_refused(addr: std::net::SocketAddr, cfg: rustls::ClientConfig, signer: &Identity) {
    let signed = envelope::sign(&report(signer.node_id()), signer);
    match common::relay_with(addr, cfg).await {
        Err(_) => {}
        Ok(mut client) => {
            let res = client.deliver(signed).await;
            assert!(res.is_err(), "a refused client got an answer: {res:?}");
        }
    }
}

async fn assert_logged(needles: &[&str]) {
    assert!(
        common::eventually(PATIENCE, || !common::log_lines_with(needles).is_empty()).await,
        "no log line with {needles:?}"
    );
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    let region = Region::new(&["county-a"]);
    let hub = region.start_hub().await;
    let addr = hub.relay_addr.unwrap();
    let cfg = rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
        .with_root_certificates(roots(&region))
        .with_no_client_auth();
    call_is_refused(addr, cfg, &region.identity("county-a")).await;
    assert_logged(&["refused TLS client", "no client certificate"]).await;
    hub.shutdown(PATIENCE).await;
}

#[tokio::test]
async fn certificate_from_another_ca_is_refused() {
    let region = Region::new(&["county-a"]);
    let other = tempfile::tempdir().unwrap();
    pki::init(
        &other.path().join("certs"),
        "elsewhere",
        "hub",
        &["intruder".into()],
    )
    .unwrap();
    let hub = region.start_hub().await;
    let addr = hub.relay_addr.unwrap();
    let (c, k) = trust::node_paths(&other.path().join("certs"), "intruder");
    let intruder = Identity::load(&c, &k).unwrap();
    call_is_refused(
        addr,
        client_cfg(&region, &other.path().join("certs"), "intruder"),
        &intruder,
    )
    .await;
    assert_logged(&[
        "refused TLS client",
        "\"intruder\"",
        "not issued by the region CA",
    ])
    .await;
    hub.shutdown(PATIENCE).await;
}

#[tokio::test]
async fn revoked_certificate_is_refused_even_after_the_hub_started() {
    let region = Region::new(&["county-a", "county-r"]);
    let hub = region.start_hub().await;
    let addr = hub.relay_addr.unwrap();
    // Accepted before revocation...
    let mut ok = common::relay_as(&region.pki(), "county-r", &region.pki(), addr).await;
    ok.deliver(envelope::sign(
        &report("county-r"),
        &region.identity("county-r"),
    ))
    .await
    .unwrap();
    // ...refused after it, without restarting the hub.
    pki::revoke(&region.pki(), "county-r").unwrap();
    assert_logged(&["CRL changed; reloaded"]).await;
    call_is_refused(
        addr,
        client_cfg(&region, &region.pki(), "county-r"),
        &region.identity("county-r"),
    )
    .await;
    assert_logged(&["refused TLS client", "\"county-r\"", "revoked"]).await;
    hub.shutdown(PATIENCE).await;
}

#[tokio::test]
async fn expired_certificate_is_refused() {
    let region = Region::new(&["county-a"]);
    let now = time::OffsetDateTime::now_utc();
    let opts = pki::IssueOptions {
        not_before: now - time::Duration::days(30),
        not_after: now - time::Duration::days(1),
        ..Default::default()
    };
    pki::issue_with(&region.pki(), "county-old", &opts).unwrap();
    let hub = region.start_hub().await;
    let addr = hub.relay_addr.unwrap();
    call_is_refused(
        addr,
        client_cfg(&region, &region.pki(), "county-old"),
        &region.identity("county-old"),
    )
    .await;
    assert_logged(&["refused TLS client", "\"county-old\"", "expired"]).await;
    hub.shutdown(PATIENCE).await;
}

#[tokio::test]
async fn certificate_without_node_id_is_refused() {
    let region = Region::new(&["county-a"]);
    let opts = pki::IssueOptions {
        with_node_id: false,
        ..Default::default()
    };
    pki::issue_with(&region.pki(), "anonymous", &opts).unwrap();
    let hub = region.start_hub().await;
    let addr = hub.relay_addr.unwrap();
    let cfg = client_cfg_no_id(&region);
    call_is_refused(addr, cfg, &region.identity("county-a")).await;
    assert_logged(&["refused TLS client", "names no node", "anonymous"]).await;
    hub.shutdown(PATIENCE).await;
}

#[tokio::test]
async fn a_certificate_whose_key_may_not_sign_is_refused() {
    let region = Region::new(&["county-a"]);
    let opts = pki::IssueOptions {
        may_sign: false,
        ..Default::default()
    };
    // A client: its key usage is key agreement only, so its handshake
    // signature is not one its certificate allows (RFC 8446 §4.4.2.2).
    pki::issue_with(&region.pki(), "county-ka", &opts).unwrap();
    let hub = region.start_hub().await;
    let addr = hub.relay_addr.unwrap();
    call_is_refused(
        addr,
        client_cfg(&region, &region.pki(), "county-ka"),
        &region.identity("county-ka"),
    )
    .await;
    assert_logged(&["refused TLS client", "key may not sign", "\"county-ka\""]).await;
    hub.shutdown(PATIENCE).await;
}

#[tokio::test]
async fn an_upstream_whose_key_may_not_sign_is_refused() {
    let region = Region::new(&["county-a"]);
    let opts = pki::IssueOptions {
        may_sign: false,
        ..Default::default()
    };
    pki::issue_with(&region.pki(), "hub-ka", &opts).unwrap();
    // A TLS server that is not ours, presenting that certificate.
    let upstream = region.identity("hub-ka");
    let server = rustls::ServerConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
        .with_no_client_auth()
        .with_single_cert(vec![upstream.cert().clone()], upstream.private_key())
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let served = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        // The county ends the handshake; what the server sees is not the test.
        let _ = acceptor.accept(tcp).await;
    });
    let county = zhibao::tls::client_config(
        &region.identity("county-a"),
        &region.trust().snapshot(),
        "hub-ka",
    )
    .unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("hub-ka").unwrap();
    let err = tokio_rustls::TlsConnector::from(Arc::new(county))
        .connect(name, tcp)
        .await
        .expect_err("an upstream whose key may not sign was taken");
    assert!(err.to_string().contains("digitalSignature"), "{err}");
    served.await.unwrap();
}

fn client_cfg_no_id(region: &Region) -> rustls::ClientConfig {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let (c, k) = trust::node_paths(&region.pki(), "anonymous");
    let cert = CertificateDer::from_pem_file(&c).unwrap();
    let key = PrivateKeyDer::from_pem_file(&k).unwrap();
    rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
        .with_root_certificates(roots(region))
        .with_client_auth_cert(vec![cert], key)
        .unwrap()
}

/// A connected client as county-a, and the hub.
async fn hub_and_client(
    region: &Region,
) -> (
    zhibao::node::RunningNode,
    zhibao::proto::relay_client::RelayClient<tonic::transport::Channel>,
) {
    let hub = region.start_hub().await;
    let addr = hub.relay_addr.unwrap();
    let client = common::relay_as(&region.pki(), "county-a", &region.pki(), addr).await;
    (hub, client)
}

async fn inbox_len(region: &Region, addr: std::net::SocketAddr) -> usize {
    common::inbox_items(region, addr).await.len()
}

#[tokio::test]
async fn origin_spoofing_is_refused_and_not_stored() {
    let region = Region::new(&["county-a", "county-b"]);
    let (hub, mut client) = hub_and_client(&region).await;
    // county-a signs a report that claims to come from county-b.
    let signed = envelope::sign(&report("county-b"), &region.identity("county-a"));
    let err = client.deliver(signed).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert!(
        err.message().contains("county-b") && err.message().contains("county-a"),
        "{}",
        err.message()
    );
    assert_eq!(inbox_len(&region, hub.relay_addr.unwrap()).await, 0);
    hub.shutdown(PATIENCE).await;
}

#[tokio::test]
async fn a_flipped_byte_is_refused_and_not_stored() {
    let region = Region::new(&["county-a"]);
    let (hub, mut client) = hub_and_client(&region).await;
    let mut signed = envelope::sign(&report("county-a"), &region.identity("county-a"));
    let last = signed.report.len() - 1;
    signed.report[last] ^= 0x01;
    let err = client.deliver(signed).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains("signature"), "{}", err.message());
    assert_eq!(inbox_len(&region, hub.relay_addr.unwrap()).await, 0);
    hub.shutdown(PATIENCE).await;
}

#[tokio::test]
async fn report_signed_under_another_ca_is_refused() {
    let region = Region::new(&["county-a"]);
    let other = tempfile::tempdir().unwrap();
    pki::init(
        &other.path().join("certs"),
        "elsewhere",
        "hub",
        &["county-a".into()],
    )
    .unwrap();
    let (c, k) = trust::node_paths(&other.path().join("certs"), "county-a");
    let impostor = Identity::load(&c, &k).unwrap();
    let (hub, mut client) = hub_and_client(&region).await;
    let err = client
        .deliver(envelope::sign(&report("county-a"), &impostor))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    hub.shutdown(PATIENCE).await;
}

#[tokio::test]
async fn malformed_oversized_and_classless_reports_are_refused() {
    let region = Region::new(&["county-a"]);
    let (hub, mut client) = hub_and_client(&region).await;
    let me = region.identity("county-a");

    let garbage = SignedReport {
        report: vec![0xff; 40],
        signature: me.sign(&[0xff; 40]),
        signer_cert: me.cert().to_vec(),
        hops: vec![],
    };
    let err = client.deliver(garbage).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");

    let mut r = report("county-a");
    r.priority = 42;
    let err = client.deliver(envelope::sign(&r, &me)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("class"), "{}", err.message());

    let mut r = report("county-a");
    r.id = "../../etc/passwd".into();
    let err = client.deliver(envelope::sign(&r, &me)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");

    let mut r = report("county-a");
    r.body = vec![7; 1024 * 1024 + 1];
    let err = client.deliver(envelope::sign(&r, &me)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");

    let empty = SignedReport::default();
    let err = client.deliver(empty).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");

    // The connection is still good for honest reports.
    client
        .deliver(envelope::sign(&report("county-a"), &me))
        .await
        .unwrap();
    assert_eq!(inbox_len(&region, hub.relay_addr.unwrap()).await, 1);
    hub.shutdown(PATIENCE).await;
}

#[tokio::test]
async fn receipts_verify_only_against_the_region_ca() {
    let region = Region::new(&["county-a"]);
    let (hub, mut client) = hub_and_client(&region).await;
    let signed = envelope::sign(&report("county-a"), &region.identity("county-a"));
    let receipt = client.deliver(signed.clone()).await.unwrap().into_inner();
    let sha = zhibao::digest::sha256(&signed.report);
    let id = prost::Message::decode(signed.report.as_slice())
        .map(|r: Report| r.id)
        .unwrap();
    zhibao::receipt::open_for(
        &receipt,
        &region.trust(),
        SystemTime::now(),
        &id,
        &sha,
        Some(HUB),
    )
    .unwrap();

    let other = tempfile::tempdir().unwrap();
    pki::init(&other.path().join("certs"), "elsewhere", "hub", &[]).unwrap();
    let foreign = Trust::load(&other.path().join("certs").join(trust::CA_CERT), None).unwrap();
    assert!(zhibao::receipt::open(&receipt, &foreign, SystemTime::now()).is_err());
    let mut tampered = receipt.clone();
    tampered.receipt[3] ^= 1;
    assert!(zhibao::receipt::open(&tampered, &region.trust(), SystemTime::now()).is_err());
    hub.shutdown(PATIENCE).await;
}

#[tokio::test]
async fn peers_without_ed25519_handshakes_get_the_p256_certificate() {
    use rustls::crypto::WebPkiSupportedAlgorithms;
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    use webpki::ring as alg;
    // Like BoringSSL: Ed25519 in certificate chains, not in the handshake.
    static ALGS: WebPkiSupportedAlgorithms = WebPkiSupportedAlgorithms {
        all: &[alg::ECDSA_P256_SHA256, alg::ED25519],
        mapping: &[(
            rustls::SignatureScheme::ECDSA_NISTP256_SHA256,
            &[alg::ECDSA_P256_SHA256],
        )],
    };
    let region = Region::new(&["county-a"]);
    let hub = region.start_hub().await;
    let addr = hub.relay_addr.unwrap();
    let provider = rustls::crypto::CryptoProvider {
        signature_verification_algorithms: ALGS,
        ..rustls::crypto::ring::default_provider()
    };
    let (c, k) = trust::node_paths(&region.pki(), "county-a");
    let me = Identity::load(&c, &k).unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots(&region))
        .with_client_auth_cert(vec![me.cert().clone()], me.private_key())
        .unwrap();

    // The handshake itself, to see which certificate the hub presented.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(HUB).unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg.clone()))
        .connect(name, tcp)
        .await
        .unwrap();
    let presented = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (compat, _) = trust::compat_paths(&trust::node_paths(&region.pki(), HUB).0);
    assert_eq!(presented, CertificateDer::from_pem_file(&compat).unwrap());
    drop(tls);

    // And the relay works over it: reports are still Ed25519-signed.
    let mut client = common::relay_with(addr, cfg).await.unwrap();
    client
        .deliver(envelope::sign(&report("county-a"), &me))
        .await
        .unwrap();
    hub.shutdown(PATIENCE).await;
}

#[tokio::test]
async fn only_configured_consumers_read_the_inbox() {
    let region = Region::new(&["county-a", "analyst"]);
    let mut cfg = region.hub_config("127.0.0.1:0".parse().unwrap());
    cfg.relay.as_mut().unwrap().consumers = vec!["analyst".into()];
    let hub = zhibao::node::start(cfg).await.unwrap();
    let addr = hub.relay_addr.unwrap().to_string();
    let ca = region.pki().join(trust::CA_CERT);
    let read = |name: &'static str| {
        let (cert, key) = trust::node_paths(&region.pki(), name);
        let (addr, ca) = (addr.clone(), ca.clone());
        async move {
            let mut inbox = zhibao::client::Inbox::connect(&addr, HUB, &ca, &cert, &key)
                .await
                .unwrap();
            inbox.subscribe(Default::default(), false).await.map(|_| ())
        }
    };
    read("analyst").await.expect("a configured consumer reads");
    read(HUB).await.expect("the hub's own certificate reads");
    match read("county-a").await {
        Err(zhibao::client::ClientError::Status(s)) => {
            assert_eq!(s.code(), tonic::Code::PermissionDenied)
        }
        other => panic!("a county read the inbox: {other:?}"),
    }
    assert_logged(&["refused inbox access", "county-a"]).await;
    hub.shutdown(PATIENCE).await;
}

#[tokio::test]
async fn standard_grpc_health_answers_over_mutual_tls() {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let region = Region::new(&["county-a"]);
    let hub = region.start_hub().await;
    let (c, k) = trust::node_paths(&region.pki(), "county-a");
    let me = Identity::load(&c, &k).unwrap();
    let cfg = zhibao::tls::client_config(&me, &region.trust().snapshot(), HUB).unwrap();
    let channel = zhibao::tls::connect_channel(
        &hub.relay_addr.unwrap().to_string(),
        Arc::new(cfg),
        HUB,
        zhibao::tls::connect::ConnectOptions::default(),
    )
    .await
    .unwrap();
    let mut health = HealthClient::new(channel);
    for service in ["", "zhibao.v1.Relay", "zhibao.v1.Inbox"] {
        let resp = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(resp.status, ServingStatus::Serving as i32, "{service:?}");
    }
    let err = health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    hub.shutdown(PATIENCE).await;
}
