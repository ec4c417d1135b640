//! Connecting to an upstream: TCP, then TLS 1.3 with our certificate,
//! expecting the upstream to be the node we meant to reach, then HTTP/2.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Opens a gRPC channel to `addr` over mutual TLS, expecting node `expect`.
pub async fn connect_channel(
    addr: &str,
    config: Arc<ClientConfig>,
    expect: &str,
    connect_timeout: Duration,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let server_name = ServerName::try_from(expect.to_string())
        .unwrap_or_else(|_| ServerName::try_from("invalid.invalid").expect("static name"));
    let target = addr.to_string();
    let connector = tower::service_fn(move |_uri: http::Uri| {
        let config = config.clone();
        let server_name = server_name.clone();
        let target = target.clone();
        async move {
            let tcp = TcpStream::connect(&target).await?;
            tcp.set_nodelay(true)?;
            let tls = TlsConnector::from(config).connect(server_name, tcp).await?;
            Ok::<_, io::Error>(TokioIo::new(tls))
        }
    });
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(connect_timeout)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true)
        .connect_with_connector(connector)
        .await
}
