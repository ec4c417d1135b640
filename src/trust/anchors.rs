//! The region CA and its CRL: the trust anchors every check starts from.
//!
//! [`Trust`] verifies a certificate handed over inside a message — not only
//! on a TLS connection — against the CA and the CRL, and checks a signature
//! made with that certificate's key: this is what lets a hub verify a report
//! from a county it has never talked to. The CA and CRL are re-read when
//! their files change; a file that fails to load keeps the previous view.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, TrustAnchor, UnixTime};
use webpki::{EndEntityCert, KeyUsage, RevocationOptionsBuilder};

use super::identity::{LoadError, read_cert, read_crl};
use super::{NODE_URI_PREFIX, node_id_of};

/// Why a certificate or a signature made with it was not accepted.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SignerError {
    /// The certificate does not parse, does not chain to the region CA, is
    /// expired, revoked or not allowed for this use.
    #[error("signer certificate rejected: {0}")]
    Certificate(webpki::Error),
    /// The certificate is valid but names no node.
    #[error("signer certificate names no node (no {NODE_URI_PREFIX}<id> URI SAN)")]
    NoNodeId,
    /// The signature does not match the bytes.
    #[error("signature does not verify")]
    BadSignature,
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
        let ca = read_cert(ca_path)?;
        let anchor = webpki::anchor_from_trusted_cert(&ca)
            .map_err(|source| LoadError::BadCa {
                path: ca_path.to_path_buf(),
                source,
            })?
            .to_owned();
        let mut crls = Vec::new();
        let mut parsed_crls = Vec::new();
        if let Some(path) = crl_path.filter(|p| p.exists()) {
            let crl = read_crl(path)?;
            let owned = webpki::OwnedCertRevocationList::from_der(&crl).map_err(|source| {
                LoadError::BadCrl {
                    path: path.to_path_buf(),
                    source,
                }
            })?;
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
        let ee = EndEntityCert::try_from(&cert).map_err(SignerError::Certificate)?;
        let unix = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let key = crate::digest::sha256(cert_der);
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
        .map_err(SignerError::Certificate)?;
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
