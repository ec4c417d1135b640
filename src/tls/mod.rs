//! Mutual TLS 1.3 for every relay listener and every upstream connection.
//!
//! tonic's own TLS has no CRLs, so TLS is terminated here:
//! - this module builds the rustls configurations: TLS 1.3 only, client
//!   certificates required and checked against the region CA and CRL, the
//!   peer's node id required, the upstream pinned by node id;
//! - [`accept`] runs a listener's accept loop (a budget for strangers' handshakes
//!   apart from the one for authenticated peers, a handshake timeout,
//!   per-node limits);
//! - [`peer`] is what it hands tonic: verified connections whose [`PeerInfo`]
//!   every request carries, cut when their certificate stops passing;
//! - [`connect`] opens a gRPC channel to an upstream over mutual TLS.
//!
//! Refusals are logged once, naming the peer address and, where the
//! certificate says one, the node it claims to be.

pub mod accept;
pub mod connect;
pub mod peer;

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore,
    ServerConfig, SignatureScheme,
};
use tracing::warn;

use crate::telemetry::Throttles;

pub use accept::{ListenLimits, RefusalHook, spawn_acceptor};
pub use connect::{ConnectOptions, Refused, connect_channel};
pub use peer::{CutHook, PeerInfo, PeerStream};

use crate::trust::{Identity, TrustSnapshot, may_sign, node_id_of};

/// The ALPN protocol id a client offers after `h2` to ask for a connection
/// served apart, for urgent items only. The server still selects `h2`
/// (RFC 7301: it picks one of the client's ids, and ignores those it does
/// not know), so any gRPC server takes such a connection as a plain one.
pub const URGENT_ALPN: &[u8] = b"zhibao-urgent";

/// `config` (from [`client_config`]) asking for an urgent connection.
pub fn asking_urgent(mut config: ClientConfig) -> ClientConfig {
    config.alpn_protocols.push(URGENT_ALPN.to_vec());
    config
}

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The region CA certificate is not usable as a TLS root.
    #[error("TLS: the CA certificate is not a usable root: {0}")]
    Root(rustls::Error),
    /// The certificate verifier (CA and CRL) could not be built.
    #[error("TLS: certificate verifier: {0}")]
    Verifier(rustls::server::VerifierBuilderError),
    /// Our own certificate or key is not usable for TLS.
    #[error("TLS: our certificate or key: {0}")]
    OwnKey(rustls::Error),
    /// rustls refused the protocol settings.
    #[error("TLS: {0}")]
    Protocol(rustls::Error),
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
    roots.add(snap.ca.clone()).map_err(TlsError::Root)?;
    Ok(Arc::new(roots))
}

/// The same peer refused for the same reason is logged once a minute.
static REFUSALS: std::sync::LazyLock<Throttles> =
    std::sync::LazyLock::new(|| Throttles::new(std::time::Duration::from_secs(60)));

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
        let peer = accept::handshake_peer();
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
                let claimed = claimed_name(end_entity);
                // Kinds of "invalid" are told apart (a wrong purpose is not
                // an unknown extension); the others carry times, so that
                // keying on them would log every try.
                let key = match why {
                    "invalid" => format!("{claimed} {e}"),
                    _ => format!("{claimed} {why}"),
                };
                if let Some(left_out) = REFUSALS.allow(&key) {
                    warn!(
                        %peer,
                        %claimed,
                        reason = why,
                        error = %e,
                        left_out,
                        "refused TLS client: certificate {why}"
                    );
                }
            })?;
        if let Err(why) = may_sign(end_entity) {
            warn!(
                %peer,
                claimed = %claimed_name(end_entity),
                reason = "key usage",
                error = why,
                "refused TLS client: certificate's key may not sign"
            );
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::InvalidPurpose,
            ));
        }
        if node_id_of(end_entity).is_none() {
            warn!(
                %peer,
                claimed = %claimed_name(end_entity),
                reason = "no node id",
                "refused TLS client: certificate names no node (exactly one valid urn:zhibao:node: URI SAN is required)"
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
        .map_err(TlsError::Verifier)?;
    let verifier = Arc::new(NodeClientVerifier { inner });
    let load = |cert: &CertificateDer<'static>, key: rustls::pki_types::PrivateKeyDer<'static>| {
        let signer = provider()
            .key_provider
            .load_private_key(key)
            .map_err(TlsError::OwnKey)?;
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
        .map_err(TlsError::Protocol)?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(resolver);
    // No resumption: every connection shows its certificate and has it
    // checked against today's CA and CRL; a resumed session would skip that
    // and let a since-revoked peer back in.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
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
        if let Err(why) = may_sign(end_entity) {
            return Err(rustls::Error::General(format!(
                "upstream certificate refused: {why}"
            )));
        }
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
            .map_err(TlsError::Verifier)?;
    let verifier = Arc::new(UpstreamVerifier {
        inner,
        expect: expect.to_string(),
    });
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::Protocol)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(vec![identity.cert().clone()], identity.private_key())
        .map_err(TlsError::OwnKey)?;
    // Nor on our side: the upstream's certificate is checked every time.
    config.resumption = rustls::client::Resumption::disabled();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}
