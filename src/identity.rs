//! Who we are and whom we trust: a node's own key and certificate, and the
//! region CA with its CRL.
//!
//! [`Identity`] signs (reports, receipts) with the same Ed25519 key its TLS
//! certificate carries. [`Trust`] verifies a certificate handed over inside a
//! message — not only on a TLS connection — against the CA and the CRL, and
//! checks a signature with that certificate's key: this is what lets a hub
//! verify a report from a county it has never talked to.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use ring::signature::{Ed25519KeyPair, KeyPair as _};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, TrustAnchor, UnixTime,
};
use webpki::{EndEntityCert, KeyUsage, RevocationOptionsBuilder};

use crate::pki::NODE_URI_PREFIX;

/// Errors loading an identity or trust material.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A file did not hold what it should.
    #[error("{path}: {what}")]
    Invalid {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
}

/// Why a certificate or a signature made with it was not accepted.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SignerError {
    /// The certificate does not chain to the region CA, is expired, revoked,
    /// malformed or not allowed for this use.
    #[error("signer certificate rejected: {0}")]
    Certificate(String),
    /// The certificate is valid but names no node.
    #[error("signer certificate names no node (no {NODE_URI_PREFIX}<id> URI SAN)")]
    NoNodeId,
    /// The signature does not match the bytes.
    #[error("signature does not verify")]
    BadSignature,
}

/// This node's own certificate and key.
pub struct Identity {
    node_id: String,
    cert: CertificateDer<'static>,
    key_der: Vec<u8>,
    signer: Ed25519KeyPair,
    compat: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("Identity")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Loads a node certificate and its Ed25519 key (PEM, PKCS#8).
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, LoadError> {
        let invalid = |path: &Path, what: String| LoadError::Invalid {
            path: path.to_path_buf(),
            what,
        };
        let cert = CertificateDer::from_pem_file(cert_path)
            .map_err(|e| invalid(cert_path, format!("no PEM certificate: {e}")))?;
        let key = PrivateKeyDer::from_pem_file(key_path)
            .map_err(|e| invalid(key_path, format!("no PEM private key: {e}")))?;
        let PrivateKeyDer::Pkcs8(pkcs8) = &key else {
            return Err(invalid(key_path, "key is not PKCS#8".into()));
        };
        let signer = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8.secret_pkcs8_der())
            .map_err(|e| invalid(key_path, format!("not an Ed25519 key: {e}")))?;
        let node_id = node_id_of(&cert)
            .ok_or_else(|| invalid(cert_path, "certificate names no node (URI SAN)".into()))?;
        let spki_matches = x509_parser::parse_x509_certificate(&cert)
            .map(|(_, c)| {
                c.public_key().subject_public_key.data.as_ref() == signer.public_key().as_ref()
            })
            .unwrap_or(false);
        if !spki_matches {
            return Err(invalid(
                key_path,
                format!("key does not match {}", cert_path.display()),
            ));
        }
        let compat = Self::load_compat(cert_path, &node_id)?;
        Ok(Self {
            node_id,
            cert,
            key_der: pkcs8.secret_pkcs8_der().to_vec(),
            signer,
            compat,
        })
    }

    /// Loads the P-256 companion certificate next to `cert_path`, if there is
    /// one (see [`crate::pki::compat_paths`]).
    fn load_compat(
        cert_path: &Path,
        node_id: &str,
    ) -> Result<Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>, LoadError> {
        let (c, k) = crate::pki::compat_paths(cert_path);
        if !c.exists() || !k.exists() {
            return Ok(None);
        }
        let invalid = |path: &Path, what: String| LoadError::Invalid {
            path: path.to_path_buf(),
            what,
        };
        let cert = CertificateDer::from_pem_file(&c)
            .map_err(|e| invalid(&c, format!("no PEM certificate: {e}")))?;
        let key = PrivateKeyDer::from_pem_file(&k)
            .map_err(|e| invalid(&k, format!("no PEM private key: {e}")))?;
        if node_id_of(&cert).as_deref() != Some(node_id) {
            return Err(invalid(&c, format!("does not name node {node_id:?}")));
        }
        Ok(Some((cert, key)))
    }

    /// The ECDSA P-256 companion certificate and key for TLS peers that
    /// cannot verify Ed25519 handshake signatures, if this node has one.
    pub fn compat(&self) -> Option<(&CertificateDer<'static>, PrivateKeyDer<'static>)> {
        self.compat.as_ref().map(|(c, k)| (c, k.clone_key()))
    }

    /// The node id named in our certificate.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Our certificate (DER).
    pub fn cert(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// Our private key, for building TLS configurations.
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key_der.clone().into())
    }

    /// Signs `msg` with our Ed25519 key.
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        self.signer.sign(msg).as_ref().to_vec()
    }
}

/// The node id in a certificate's `urn:zhibao:node:<id>` URI SAN, if it
/// names exactly one valid node (a certificate naming two is ambiguous and
/// names none).
pub fn node_id_of(cert_der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    let mut ids = san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri) => uri.strip_prefix(NODE_URI_PREFIX),
            _ => None,
        });
    let id = ids.next()?;
    if ids.next().is_some() || crate::pki::validate_node_id(id).is_err() {
        return None;
    }
    Some(id.to_string())
}

/// One loaded view of the CA and CRL.
#[derive(Debug)]
pub struct TrustSnapshot {
    /// The region CA certificate.
    pub ca: CertificateDer<'static>,
    /// The region CRLs (usually one).
    pub crls: Vec<CertificateRevocationListDer<'static>>,
    /// Bumped on every reload, so cached TLS configurations know to rebuild.
    pub generation: u64,
    anchor: TrustAnchor<'static>,
    parsed_crls: Vec<webpki::CertRevocationList<'static>>,
}

/// Signer certificates remembered at most (a region has far fewer nodes).
const VERIFIED_CACHE: usize = 4096;

/// A signer certificate that passed the full check.
#[derive(Debug)]
struct VerifiedSigner {
    node_id: String,
    /// Validity, Unix seconds.
    valid: std::ops::Range<u64>,
    /// The trust generation (CA and CRL) it was checked against.
    generation: u64,
}

/// The region CA and CRL, reloadable without a restart.
#[derive(Debug)]
pub struct Trust {
    ca_path: PathBuf,
    crl_path: Option<PathBuf>,
    current: RwLock<Arc<TrustSnapshot>>,
    stamps: RwLock<(Option<SystemTime>, Option<SystemTime>)>,
    verified: std::sync::Mutex<std::collections::HashMap<[u8; 32], VerifiedSigner>>,
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl Trust {
    /// Loads the CA certificate and, if given and present, the CRL.
    pub fn load(ca_path: &Path, crl_path: Option<&Path>) -> Result<Self, LoadError> {
        let snapshot = Self::read(ca_path, crl_path, 1)?;
        Ok(Self {
            ca_path: ca_path.to_path_buf(),
            crl_path: crl_path.map(Path::to_path_buf),
            current: RwLock::new(Arc::new(snapshot)),
            stamps: RwLock::new((mtime(ca_path), crl_path.and_then(mtime))),
            verified: std::sync::Mutex::default(),
        })
    }

    fn read(
        ca_path: &Path,
        crl_path: Option<&Path>,
        generation: u64,
    ) -> Result<TrustSnapshot, LoadError> {
        let invalid = |path: &Path, what: String| LoadError::Invalid {
            path: path.to_path_buf(),
            what,
        };
        let ca = CertificateDer::from_pem_file(ca_path)
            .map_err(|e| invalid(ca_path, format!("no PEM certificate: {e}")))?;
        let anchor = webpki::anchor_from_trusted_cert(&ca)
            .map_err(|e| invalid(ca_path, format!("not a usable CA certificate: {e}")))?
            .to_owned();
        let mut crls = Vec::new();
        let mut parsed_crls = Vec::new();
        if let Some(path) = crl_path.filter(|p| p.exists()) {
            let crl = CertificateRevocationListDer::from_pem_file(path)
                .map_err(|e| invalid(path, format!("no PEM CRL: {e}")))?;
            let owned = webpki::OwnedCertRevocationList::from_der(&crl)
                .map_err(|e| invalid(path, format!("not a valid CRL: {e}")))?;
            parsed_crls.push(webpki::CertRevocationList::from(owned));
            crls.push(crl);
        }
        Ok(TrustSnapshot {
            ca,
            crls,
            generation,
            anchor,
            parsed_crls,
        })
    }

    /// The current CA and CRL.
    pub fn snapshot(&self) -> Arc<TrustSnapshot> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Re-reads the CA and CRL if either file changed. Returns whether it did.
    ///
    /// A file that fails to load keeps the previous view (and is reported):
    /// a half-written CRL must not open the door to revoked nodes.
    pub fn reload_if_changed(&self) -> Result<bool, LoadError> {
        let now = (
            mtime(&self.ca_path),
            self.crl_path.as_deref().and_then(mtime),
        );
        if *self.stamps.read().unwrap_or_else(|e| e.into_inner()) == now {
            return Ok(false);
        }
        let generation = self.snapshot().generation + 1;
        let snapshot = Self::read(&self.ca_path, self.crl_path.as_deref(), generation)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snapshot);
        *self.stamps.write().unwrap_or_else(|e| e.into_inner()) = now;
        Ok(true)
    }

    /// Verifies `cert_der` against the CA and CRL at `now`, then checks that
    /// `signature` over `msg` was made with its key. Returns the signer's node id.
    pub fn verify_signed(
        &self,
        cert_der: &[u8],
        msg: &[u8],
        signature: &[u8],
        now: SystemTime,
    ) -> Result<String, SignerError> {
        let snap = self.snapshot();
        let cert = CertificateDer::from(cert_der);
        let ee = EndEntityCert::try_from(&cert)
            .map_err(|e| SignerError::Certificate(format!("malformed certificate: {e}")))?;
        let unix = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let key = crate::envelope::sha256(cert_der);
        let cached = self
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .filter(|c| c.generation == snap.generation && c.valid.contains(&unix.as_secs()))
            .map(|c| c.node_id.clone());
        let node_id = match cached {
            Some(id) => id,
            None => {
                let id =
                    self.verify_chain(&snap, &ee, cert_der, UnixTime::since_unix_epoch(unix))?;
                self.remember(key, cert_der, &id, snap.generation);
                id
            }
        };
        ee.verify_signature(webpki::ring::ED25519, msg, signature)
            .map_err(|_| SignerError::BadSignature)?;
        Ok(node_id)
    }

    /// The full check of a signer certificate: chain, validity, CRL, node id.
    fn verify_chain(
        &self,
        snap: &TrustSnapshot,
        ee: &EndEntityCert<'_>,
        cert_der: &[u8],
        time: UnixTime,
    ) -> Result<String, SignerError> {
        let crl_refs: Vec<&webpki::CertRevocationList<'_>> = snap.parsed_crls.iter().collect();
        let revocation = if crl_refs.is_empty() {
            None
        } else {
            RevocationOptionsBuilder::new(&crl_refs)
                .ok()
                .map(|b| b.build())
        };
        ee.verify_for_usage(
            &[webpki::ring::ED25519],
            std::slice::from_ref(&snap.anchor),
            &[],
            time,
            KeyUsage::client_auth(),
            revocation,
            None,
        )
        .map_err(|e| SignerError::Certificate(e.to_string()))?;
        node_id_of(cert_der).ok_or(SignerError::NoNodeId)
    }

    /// Remembers a certificate that passed [`Trust::verify_chain`] for as long
    /// as it is valid and the CA/CRL do not change, so each message from a
    /// known signer costs one signature check rather than two plus parsing.
    fn remember(&self, key: [u8; 32], cert_der: &[u8], node_id: &str, generation: u64) {
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(cert_der) else {
            return;
        };
        let v = cert.validity();
        let from = u64::try_from(v.not_before.timestamp()).unwrap_or(u64::MAX);
        let to = u64::try_from(v.not_after.timestamp()).unwrap_or(0);
        let mut cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= VERIFIED_CACHE {
            cache.clear();
        }
        cache.insert(
            key,
            VerifiedSigner {
                node_id: node_id.to_string(),
                valid: from..to,
                generation,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_with_uris(uris: &[&str]) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.subject_alt_names = uris
            .iter()
            .map(|u| rcgen::SanType::URI((*u).try_into().unwrap()))
            .collect();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn a_certificate_names_one_node_or_none() {
        assert_eq!(
            node_id_of(&cert_with_uris(&["urn:zhibao:node:county-a"])).as_deref(),
            Some("county-a")
        );
        assert_eq!(
            node_id_of(&cert_with_uris(&["urn:zhibao:node:a", "urn:zhibao:node:b"])),
            None
        );
        assert_eq!(
            node_id_of(&cert_with_uris(&["urn:zhibao:node:Bad_Id"])),
            None
        );
        assert_eq!(node_id_of(&cert_with_uris(&["https://example.org/"])), None);
        assert_eq!(node_id_of(b"not a certificate"), None);
    }
}
