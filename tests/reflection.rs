//! gRPC server reflection on every listener, behind the same mutual TLS as
//! the rest: a reflection client lists the zhibao services and health and
//! gets their descriptors; a client without a certificate is refused.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Region;
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};
use tonic_reflection::pb::{v1, v1alpha};

const WAIT: Duration = Duration::from_secs(20);

/// The services a v1 reflection client lists on `channel`.
async fn list_v1(channel: Channel) -> Result<Vec<String>, tonic::Status> {
    use v1::server_reflection_request::MessageRequest;
    use v1::server_reflection_response::MessageResponse;
    let mut client = v1::server_reflection_client::ServerReflectionClient::new(channel);
    let req = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = client
        .server_reflection_info(tokio_stream::iter([req]))
        .await?
        .into_inner();
    let answer = answers.message().await?.expect("one answer");
    match answer.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            Ok(list.service.into_iter().map(|s| s.name).collect())
        }
        other => panic!("not a service list: {other:?}"),
    }
}

/// The file descriptor a v1alpha reflection client gets for `symbol`.
async fn symbol_v1alpha(channel: Channel, symbol: &str) -> Vec<Vec<u8>> {
    use v1alpha::server_reflection_request::MessageRequest;
    use v1alpha::server_reflection_response::MessageResponse;
    let mut client = v1alpha::server_reflection_client::ServerReflectionClient::new(channel);
    let req = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(symbol.into())),
    };
    let mut answers = client
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    match answers.message().await.unwrap().unwrap().message_response {
        Some(MessageResponse::FileDescriptorResponse(f)) => f.file_descriptor_proto,
        other => panic!("no descriptor for {symbol}: {other:?}"),
    }
}

fn roots(region: &Region) -> Arc<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(region.trust().snapshot().ca.clone()).unwrap();
    Arc::new(roots)
}

#[tokio::test]
async fn reflection_lists_the_services_over_mutual_tls_and_on_the_operator_socket() {
    let region = Region::new(&["county-a"]);
    let hub = region.start_hub().await;
    let addr = hub.relay_addr.unwrap();

    // The relay listener, as a county with its certificate.
    let id = region.identity("county-a");
    let cfg = zhibao::tls::client_config(&id, &region.trust().snapshot(), common::HUB).unwrap();
    let channel = common::channel_with(addr, cfg).await.unwrap();
    let services = list_v1(channel.clone()).await.unwrap();
    for want in [
        "zhibao.v1.Relay",
        "zhibao.v1.Inbox",
        "zhibao.v1.Desk",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(
            services.iter().any(|s| s == want),
            "{want} not in {services:?}"
        );
    }
    let files = symbol_v1alpha(channel, "zhibao.v1.Relay").await;
    assert!(!files.is_empty());
    let relay =
        <prost_types::FileDescriptorProto as prost::Message>::decode(files[0].as_slice()).unwrap();
    assert_eq!(relay.package(), "zhibao.v1");
    assert!(relay.service.iter().any(|s| s.name() == "Relay"));

    // The operator socket.
    let socket = hub.operator_socket.clone();
    let channel = Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: http::Uri| {
            let socket = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(socket).await?)) }
        }))
        .await
        .unwrap();
    let services = list_v1(channel).await.unwrap();
    assert!(
        services.iter().any(|s| s == "zhibao.v1.Operator"),
        "{services:?}"
    );
    assert!(
        services.iter().any(|s| s == "grpc.health.v1.Health"),
        "{services:?}"
    );

    hub.shutdown(WAIT).await;
}

#[tokio::test]
async fn reflection_on_the_mtls_operator_listener_answers_only_listed_certificates() {
    let region = Region::new(&["county-a", "console", "county-b"]);
    let hub = region.start_hub().await;
    let mut cfg = region.node_config("county-a", hub.relay_addr.unwrap());
    cfg.operator.listen = Some("127.0.0.1:0".parse().unwrap());
    cfg.operator.allowed = vec!["console".into()];
    let county = zhibao::node::start(cfg).await.unwrap();
    let addr = county.operator_addr.unwrap();
    let as_node = |name: &str| {
        let id = region.identity(name);
        zhibao::tls::client_config(&id, &region.trust().snapshot(), "county-a").unwrap()
    };
    let console = common::channel_named(addr, as_node("console"), "county-a")
        .await
        .unwrap();
    let services = list_v1(console).await.unwrap();
    assert!(
        services.iter().any(|s| s == "zhibao.v1.Operator"),
        "{services:?}"
    );
    let other = common::channel_named(addr, as_node("county-b"), "county-a")
        .await
        .unwrap();
    let refused = list_v1(other).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    county.shutdown(WAIT).await;
    hub.shutdown(WAIT).await;
}

#[tokio::test]
async fn reflection_without_a_client_certificate_is_refused() {
    let region = Region::new(&["county-a"]);
    let hub = region.start_hub().await;
    let addr = hub.relay_addr.unwrap();
    let no_cert = rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
        .with_root_certificates(roots(&region))
        .with_no_client_auth();
    if let Ok(channel) = common::channel_with(addr, no_cert).await {
        let listed = list_v1(channel).await;
        assert!(
            listed.is_err(),
            "a client without a certificate got {listed:?}"
        );
    }
    hub.shutdown(WAIT).await;
}
