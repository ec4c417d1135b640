//! Mutual TLS for every relay listener and every upstream connection.
//!
//! tonic's own TLS has no CRLs, so TLS is terminated here: an accept loop
//! runs the rustls handshake (TLS 1.3 only, client certificate required,
//! checked against the region CA and CRL), takes the peer's node id from its
//! verified certificate, enforces connection limits, and hands tonic a
//! [`PeerStream`] whose [`PeerInfo`] every request carries in its extensions.
//! Refusals are logged once, naming the peer address and, where the
//! certificate says one, the node it claims to be.

use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore,
    ServerConfig, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;
use tracing::{debug, info, warn};

use crate::identity::{Identity, Trust, TrustSnapshot, node_id_of};

/// Errors building TLS configurations or connecting.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
    /// Connecting to an upstream failed.
    #[error("connect to {addr}: {source}")]
    Connect {
        /// Where we tried to connect.
        addr: String,
        /// What went wrong.
        source: io::Error,
    },
}

/// Installs the ring crypto provider once; a lost race is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(snap: &TrustSnapshot) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    roots
        .add(snap.ca.clone())
        .map_err(|e| TlsError::Config(format!("CA certificate: {e}")))?;
    Ok(Arc::new(roots))
}

thread_local! {
    /// The peer whose handshake is being polled on this thread, so the
    /// certificate verifier (which rustls calls synchronously inside that
    /// poll) can name it in its log line.
    static HANDSHAKE_PEER: Cell<Option<SocketAddr>> = const { Cell::new(None) };
}

/// Polls a handshake future with [`HANDSHAKE_PEER`] set.
struct WithPeer<F> {
    peer: SocketAddr,
    inner: F,
}

impl<F: Future + Unpin> Future for WithPeer<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let peer = self.peer;
        HANDSHAKE_PEER.with(|p| p.set(Some(peer)));
        let out = Pin::new(&mut self.inner).poll(cx);
        HANDSHAKE_PEER.with(|p| p.set(None));
        out
    }
}

/// Wraps the webpki client verifier: adds the node-id requirement and logs
/// every refusal with who and why.
#[derive(Debug)]
struct NodeClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
}

fn claimed_name(cert: &CertificateDer<'_>) -> String {
    if let Some(id) = node_id_of(cert) {
        return format!("node {id:?}");
    }
    match x509_parser::parse_x509_certificate(cert) {
        Ok((_, c)) => format!("subject {:?}", c.subject().to_string()),
        Err(_) => "an unparseable certificate".into(),
    }
}

impl ClientCertVerifier for NodeClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let peer = HANDSHAKE_PEER.with(Cell::get);
        let peer = peer.map_or_else(|| "?".to_string(), |p| p.to_string());
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
            .inspect_err(|e| {
                let why = match e {
                    rustls::Error::InvalidCertificate(CertificateError::Revoked) => "revoked",
                    rustls::Error::InvalidCertificate(CertificateError::Expired)
                    | rustls::Error::InvalidCertificate(CertificateError::ExpiredContext {
                        ..
                    }) => "expired",
                    rustls::Error::InvalidCertificate(CertificateError::NotValidYet)
                    | rustls::Error::InvalidCertificate(CertificateError::NotValidYetContext {
                        ..
                    }) => "not yet valid",
                    rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
                        "not issued by the region CA"
                    }
                    _ => "invalid",
                };
                warn!(
                    %peer,
                    claimed = %claimed_name(end_entity),
                    reason = why,
                    error = %e,
                    "refused TLS client: certificate {why}"
                );
            })?;
        if node_id_of(end_entity).is_none() {
            warn!(
                %peer,
                claimed = %claimed_name(end_entity),
                reason = "no node id",
                "refused TLS client: certificate names no node (no urn:zhibao:node: URI SAN)"
            );
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Presents the Ed25519 certificate to peers that accept Ed25519 handshake
/// signatures and the P-256 companion to those that do not (BoringSSL).
#[derive(Debug)]
struct CertResolver {
    ed25519: Arc<rustls::sign::CertifiedKey>,
    compat: Option<Arc<rustls::sign::CertifiedKey>>,
}

impl rustls::server::ResolvesServerCert for CertResolver {
    fn resolve(
        &self,
        hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let schemes = hello.signature_schemes();
        if schemes.contains(&SignatureScheme::ED25519) {
            return Some(self.ed25519.clone());
        }
        if schemes.contains(&SignatureScheme::ECDSA_NISTP256_SHA256)
            && let Some(compat) = &self.compat
        {
            return Some(compat.clone());
        }
        // Let the handshake fail with a clear "no signature schemes in common".
        Some(self.ed25519.clone())
    }
}

/// Builds the relay listener's TLS configuration: TLS 1.3 only, a client
/// certificate from the region CA (not revoked, naming a node) required.
pub fn server_config(identity: &Identity, trust: &TrustSnapshot) -> Result<ServerConfig, TlsError> {
    let inner = WebPkiClientVerifier::builder_with_provider(roots(trust)?, provider())
        .with_crls(trust.crls.iter().cloned())
        .build()
        .map_err(|e| TlsError::Config(format!("client verifier: {e}")))?;
    let verifier = Arc::new(NodeClientVerifier { inner });
    let load = |cert: &CertificateDer<'static>, key: rustls::pki_types::PrivateKeyDer<'static>| {
        let signer = provider()
            .key_provider
            .load_private_key(key)
            .map_err(|e| TlsError::Config(format!("our key: {e}")))?;
        Ok::<_, TlsError>(Arc::new(rustls::sign::CertifiedKey::new(
            vec![cert.clone()],
            signer,
        )))
    };
    let resolver = Arc::new(CertResolver {
        ed25519: load(identity.cert(), identity.private_key())?,
        compat: identity.compat().map(|(c, k)| load(c, k)).transpose()?,
    });
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Checks the upstream's certificate against the CA and CRL and requires it
/// to name the node we meant to reach; the address is only a hint.
#[derive(Debug)]
struct UpstreamVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    expect: String,
}

impl ServerCertVerifier for UpstreamVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ok = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        match node_id_of(end_entity) {
            Some(id) if id == self.expect => Ok(ok),
            other => Err(rustls::Error::General(format!(
                "upstream certificate names {other:?}, expected node {:?}",
                self.expect
            ))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Builds the TLS configuration for connecting to the upstream `expect`.
pub fn client_config(
    identity: &Identity,
    trust: &TrustSnapshot,
    expect: &str,
) -> Result<ClientConfig, TlsError> {
    let inner =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots(trust)?, provider())
            .with_crls(trust.crls.iter().cloned())
            .build()
            .map_err(|e| TlsError::Config(format!("server verifier: {e}")))?;
    let verifier = Arc::new(UpstreamVerifier {
        inner,
        expect: expect.to_string(),
    });
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(vec![identity.cert().clone()], identity.private_key())
        .map_err(|e| TlsError::Config(format!("our certificate: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

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

/// The verified identity of the peer on a relay connection.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The node id from the peer's verified client certificate.
    pub node_id: String,
    /// The peer's socket address.
    pub addr: SocketAddr,
}

/// A TLS connection whose peer has been verified, holding its share of the
/// connection limits until it closes.
pub struct PeerStream {
    inner: tokio_rustls::server::TlsStream<TcpStream>,
    info: PeerInfo,
    _permit: tokio::sync::OwnedSemaphorePermit,
    _per_peer: PeerSlot,
}

impl std::fmt::Debug for PeerStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerStream")
            .field("info", &self.info)
            .finish()
    }
}

impl PeerInfo {
    /// The verified peer of a request that came over a relay listener.
    ///
    /// # Errors
    /// `UNAUTHENTICATED` if the request did not come over mutual TLS.
    pub fn of<T>(req: &tonic::Request<T>) -> Result<Self, tonic::Status> {
        req.extensions().get::<Self>().cloned().ok_or_else(|| {
            tonic::Status::unauthenticated("no verified client certificate on this connection")
        })
    }
}

impl Connected for PeerStream {
    type ConnectInfo = PeerInfo;
    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Counts connections per peer node; the slot gives its place back on drop.
struct PeerSlot {
    counts: Arc<Mutex<HashMap<String, usize>>>,
    node: String,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&self.node) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.node);
            }
        }
    }
}

/// Limits for the relay listener.
#[derive(Debug, Clone, Copy)]
pub struct ListenLimits {
    /// Connections at once, all peers together (handshakes included).
    pub max_connections: usize,
    /// Connections at once from one node.
    pub max_connections_per_peer: usize,
    /// Time allowed for a TLS handshake.
    pub handshake_timeout: Duration,
}

/// Runs the accept loop on `listener` until `shutdown`, yielding verified
/// connections on the returned channel (which tonic serves).
pub fn spawn_acceptor(
    listener: TcpListener,
    identity: Arc<Identity>,
    trust: Arc<Trust>,
    limits: ListenLimits,
    shutdown: CancellationToken,
) -> mpsc::Receiver<Result<PeerStream, io::Error>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let permits = Arc::new(Semaphore::new(limits.max_connections));
        let per_peer = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
        let mut cached: Option<(u64, TlsAcceptor)> = None;
        let mut backoff = Duration::from_millis(5);
        loop {
            let permit = tokio::select! {
                p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
                () = shutdown.cancelled() => return,
            };
            let (tcp, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => { backoff = Duration::from_millis(5); x }
                    Err(e) => {
                        // Usually EMFILE: back off rather than spin or exit.
                        warn!(error = %e, "relay listener failed to accept a connection");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        continue;
                    }
                },
                () = shutdown.cancelled() => return,
            };
            let snap = trust.snapshot();
            let acceptor = match &cached {
                Some((generation, acc)) if *generation == snap.generation => acc.clone(),
                _ => match server_config(&identity, &snap) {
                    Ok(cfg) => {
                        let acc = TlsAcceptor::from(Arc::new(cfg));
                        cached = Some((snap.generation, acc.clone()));
                        acc
                    }
                    Err(e) => {
                        warn!(error = %e, "cannot build TLS configuration; refusing connection from {peer}");
                        continue;
                    }
                },
            };
            let tx = tx.clone();
            let per_peer = per_peer.clone();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let handshake = WithPeer {
                    peer,
                    inner: acceptor.accept(tcp),
                };
                let tls = match tokio::time::timeout(limits.handshake_timeout, handshake).await {
                    Err(_) => {
                        warn!(%peer, "refused TLS client: handshake not finished in {:?}", limits.handshake_timeout);
                        return;
                    }
                    Ok(Err(e)) => {
                        log_handshake_error(peer, &e);
                        return;
                    }
                    Ok(Ok(tls)) => tls,
                };
                let node_id = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c| node_id_of(c));
                // The verifier already insisted on a node id; this is a second lock on the door.
                let Some(node_id) = node_id else {
                    warn!(%peer, "refused TLS client: no node id after handshake");
                    return;
                };
                let slot = {
                    let mut counts = per_peer.lock().unwrap_or_else(|e| e.into_inner());
                    let n = counts.entry(node_id.clone()).or_insert(0);
                    if *n >= limits.max_connections_per_peer {
                        warn!(%peer, node = %node_id, limit = limits.max_connections_per_peer,
                            "refused connection: node already has the maximum number of connections");
                        return;
                    }
                    *n += 1;
                    PeerSlot {
                        counts: per_peer.clone(),
                        node: node_id.clone(),
                    }
                };
                debug!(%peer, node = %node_id, "relay connection established");
                let stream = PeerStream {
                    inner: tls,
                    info: PeerInfo {
                        node_id,
                        addr: peer,
                    },
                    _permit: permit,
                    _per_peer: slot,
                };
                let _ = tx.send(Ok(stream)).await;
            });
        }
    });
    rx
}

fn log_handshake_error(peer: SocketAddr, e: &io::Error) {
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    match inner {
        Some(rustls::Error::NoCertificatesPresented) => {
            warn!(%peer, reason = "no client certificate", "refused TLS client: no client certificate presented");
        }
        // Already logged, with the claimed identity, by the verifier.
        Some(rustls::Error::InvalidCertificate(_)) => {}
        Some(rustls::Error::PeerIncompatible(p)) => {
            warn!(%peer, reason = "incompatible", "refused TLS client: {p:?} (only TLS 1.3 is offered)");
        }
        Some(other) => warn!(%peer, error = %other, "refused TLS client: handshake failed"),
        None => info!(%peer, error = %e, "TLS handshake did not complete"),
    }
}
