//! The region CA and its CRL: the trust anchors every check starts from.
//!
//! [`Trust`] verifies a certificate handed over inside a message — not only
//! on a TLS connection — against the CA and the CRL, and checks a signature
//! made with that certificate's key: this is what lets a hub verify a report
//! from a county it has never talked to.
//!
//! Fail closed: a configured CRL must exist, parse and be signed by the CA,
//! or the node does not start. The CA and CRL are re-read when their files
//! change; a file that disappears or fails to load keeps the previous view
//! in force (and the caller raises an alarm), and a CRL past its
//! `nextUpdate` plus the configured grace makes every check fail until a
//! fresh one arrives. Every change of the view bumps a generation that
//! listeners and forwarders watch, so revocation reaches open connections.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, TrustAnchor, UnixTime};
use webpki::{EndEntityCert, KeyUsage, RevocationOptionsBuilder};

use super::crl::{self, CrlInfo, Freshness};
use super::identity::{LoadError, read_cert, read_crl};
use super::signature::{self, KeyError, PublicKey};
use super::{NODE_URI_PREFIX, node_id_of};

/// How long a CRL past its `nextUpdate` is tolerated by default.
pub const DEFAULT_CRL_GRACE: Duration = Duration::from_secs(24 * 3600);

/// Why a certificate or a signature made with it was not accepted.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SignerError {
    /// The certificate does not parse, does not chain to the region CA, is
    /// expired, revoked or not allowed for this use.
    #[error("signer certificate rejected: {}", describe(.0))]
    Certificate(webpki::Error),
    /// The certificate is valid but names no node.
    #[error("signer certificate names no node (no {NODE_URI_PREFIX}<id> URI SAN)")]
    NoNodeId,
    /// The certificate's key usage does not allow digital signatures (see
    /// [`super::usage`]).
    #[error("signer certificate refused: {0}")]
    KeyUsage(&'static str),
    /// The signature does not match the bytes.
    #[error("signature does not verify")]
    BadSignature,
    /// The certificate's key cannot prove who signed (see
    /// [`super::signature::usable_key`]).
    #[error("signer certificate refused: {0}")]
    Key(#[from] KeyError),
    /// The CRL in force is past its `nextUpdate` and the grace: nothing is
    /// accepted until a fresh one arrives.
    #[error(
        "the region CRL expired at {expired} (Unix s) and its grace is over; waiting for a fresh CRL"
    )]
    StaleCrl {
        /// Its `nextUpdate`, Unix seconds.
        expired: i64,
    },
}

impl SignerError {
    /// The reason as a stable code (`Verdict.problem` in the API).
    pub fn problem(&self) -> &'static str {
        self.codes().0
    }

    /// The reason as a refusal names it (`google.rpc.ErrorInfo.reason`):
    /// [`SignerError::problem`] in upper case.
    pub fn reason(&self) -> &'static str {
        self.codes().1
    }

    /// Both codes, matched on the variant itself, so that a new one cannot
    /// go without either.
    fn codes(&self) -> (&'static str, &'static str) {
        match self {
            Self::Certificate(webpki::Error::CertRevoked) => ("signer_revoked", "SIGNER_REVOKED"),
            Self::Certificate(webpki::Error::CertExpired { .. }) => {
                ("signer_expired", "SIGNER_EXPIRED")
            }
            Self::Certificate(webpki::Error::CertNotValidYet { .. }) => {
                ("signer_not_yet_valid", "SIGNER_NOT_YET_VALID")
            }
            Self::Certificate(webpki::Error::UnknownIssuer) => {
                ("signer_other_ca", "SIGNER_OTHER_CA")
            }
            Self::Certificate(_) => ("signer_certificate", "SIGNER_CERTIFICATE"),
            Self::NoNodeId => ("signer_no_node", "SIGNER_NO_NODE"),
            Self::KeyUsage(_) => ("signer_key_usage", "SIGNER_KEY_USAGE"),
            Self::BadSignature => ("bad_signature", "BAD_SIGNATURE"),
            Self::Key(_) => ("signer_weak_key", "SIGNER_WEAK_KEY"),
            Self::StaleCrl { .. } => ("crl_stale", "CRL_STALE"),
        }
    }
}

/// webpki's reason in words an operator reads.
fn describe(e: &webpki::Error) -> String {
    let date = |t: &UnixTime| {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(t.as_secs());
        humantime::format_rfc3339_seconds(at).to_string()
    };
    match e {
        webpki::Error::CertRevoked => "revoked".into(),
        webpki::Error::CertExpired { not_after, .. } => {
            format!("expired (not after {})", date(not_after))
        }
        webpki::Error::CertNotValidYet { not_before, .. } => {
            format!("not valid yet (not before {})", date(not_before))
        }
        webpki::Error::UnknownIssuer => "not issued by the region CA".into(),
        webpki::Error::UnknownRevocationStatus => {
            "its revocation status is unknown (the CRL is not the region CA's)".into()
        }
        webpki::Error::InvalidCrlSignatureForPublicKey => {
            "the CRL's signature does not verify".into()
        }
        other => format!("{other:?}"),
    }
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
    /// What the CRL in force says about itself, if one is configured.
    pub crl: Option<CrlInfo>,
    anchor: TrustAnchor<'static>,
    parsed_crls: Vec<webpki::CertRevocationList<'static>>,
}

/// Signer certificates remembered at most (a region has far fewer nodes).
const VERIFIED_CACHE: usize = 4096;

/// A signer certificate that passed the full check.
#[derive(Debug)]
struct VerifiedSigner {
    node_id: String,
    key: PublicKey,
    /// Validity, Unix seconds.
    valid: std::ops::Range<u64>,
    /// The trust generation (CA and CRL) it was checked against.
    generation: u64,
}

/// Signatures over shared statements remembered at most.
const RECENT_SHARED: usize = 1024;

/// The last [`RECENT_SHARED`] (key, signature, statement) triples that
/// verified, by digest, oldest forgotten first.
#[derive(Debug, Default)]
struct Recent {
    set: std::collections::HashSet<[u8; 32]>,
    order: std::collections::VecDeque<[u8; 32]>,
}

impl Recent {
    fn contains(&self, digest: &[u8; 32]) -> bool {
        self.set.contains(digest)
    }

    fn insert(&mut self, digest: [u8; 32]) {
        if !self.set.insert(digest) {
            return;
        }
        self.order.push_back(digest);
        if self.order.len() > RECENT_SHARED
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
    }
}

/// A signer whose certificate passed: who it is and the key its
/// signatures are checked with.
#[derive(Debug, Clone)]
pub struct Signer {
    /// The node its certificate names.
    pub node_id: String,
    /// Its key, usable (see [`signature::usable_key`]).
    pub key: PublicKey,
}

/// Why a CRL that came down the tree was not taken.
#[derive(Debug, thiserror::Error)]
pub enum CrlInstallError {
    /// It is not the region CA's.
    #[error("a CRL came down that is not the region's: {0}")]
    NotOurs(crl::CrlError),
    /// This node has no CRL file configured to keep it in.
    #[error("a newer CRL came down, but this node has no tls.crl to keep it in")]
    NoCrlFile,
    /// It could not be written.
    #[error("cannot write the newer CRL to {path}: {source}")]
    Write {
        /// The CRL file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It was written but does not load back.
    #[error("the newer CRL does not load back: {0}")]
    Reload(LoadError),
}

/// What a [`Trust::reload_if_changed`] did.
#[derive(Debug)]
pub enum Reload {
    /// Neither file changed since the last look.
    Unchanged,
    /// A new view is in force.
    Reloaded,
    /// A file changed (or went) and cannot be used: the previous view stays
    /// in force. Reported once per change of the files.
    Failed(LoadError),
}

/// The region CA and CRL, reloadable without a restart.
#[derive(Debug)]
pub struct Trust {
    ca_path: PathBuf,
    crl_path: Option<PathBuf>,
    crl_grace: Duration,
    current: RwLock<Arc<TrustSnapshot>>,
    stamps: RwLock<(Option<SystemTime>, Option<SystemTime>)>,
    verified: std::sync::Mutex<std::collections::HashMap<[u8; 32], VerifiedSigner>>,
    /// Signatures over shared statements checked lately (see
    /// [`Trust::verify_shared`]).
    shared: std::sync::Mutex<Recent>,
    generation: watch::Sender<u64>,
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl Trust {
    /// Loads the CA certificate and, if one is given, the CRL, which must
    /// then exist, parse and be signed by the CA.
    pub fn load(ca_path: &Path, crl_path: Option<&Path>) -> Result<Self, LoadError> {
        let stamps = (mtime(ca_path), crl_path.and_then(mtime));
        let snapshot = Self::read(ca_path, crl_path, 1)?;
        Ok(Self {
            ca_path: ca_path.to_path_buf(),
            crl_path: crl_path.map(Path::to_path_buf),
            crl_grace: DEFAULT_CRL_GRACE,
            current: RwLock::new(Arc::new(snapshot)),
            stamps: RwLock::new(stamps),
            verified: std::sync::Mutex::default(),
            shared: std::sync::Mutex::default(),
            generation: watch::channel(1).0,
        })
    }

    /// How long a CRL past its `nextUpdate` is still used (with alarms).
    #[must_use]
    pub fn with_crl_grace(mut self, grace: Duration) -> Self {
        self.crl_grace = grace;
        self
    }

    /// Watches the view: the value (the generation) changes on every reload.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// How fresh the CRL in force is at `now`.
    pub fn freshness(&self, now: SystemTime) -> Freshness {
        Freshness::of(self.snapshot().crl.as_ref(), self.crl_grace, now)
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
        let mut info = None;
        if let Some(path) = crl_path {
            if !path.exists() {
                return Err(LoadError::Missing {
                    path: path.to_path_buf(),
                    what: "CRL",
                });
            }
            let crl = read_crl(path)?;
            let bad = |why| LoadError::BadCrl {
                path: path.to_path_buf(),
                why,
            };
            info = Some(crl::check(&ca, &crl).map_err(bad)?);
            let owned = webpki::OwnedCertRevocationList::from_der(&crl)
                .map_err(|e| bad(crl::CrlError::Malformed(e.to_string())))?;
            parsed_crls.push(webpki::CertRevocationList::from(owned));
            crls.push(crl);
        }
        Ok(TrustSnapshot {
            ca,
            crls,
            generation,
            crl: info,
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

    /// Re-reads the CA and CRL if either file changed (or went).
    ///
    /// A file that fails to load keeps the previous view in force: a
    /// half-written or deleted CRL must not open the door to revoked nodes.
    pub fn reload_if_changed(&self) -> Reload {
        let stamps = (
            mtime(&self.ca_path),
            self.crl_path.as_deref().and_then(mtime),
        );
        if *self.stamps.read().unwrap_or_else(|e| e.into_inner()) == stamps {
            return Reload::Unchanged;
        }
        // Looked at once per change, whatever the outcome.
        *self.stamps.write().unwrap_or_else(|e| e.into_inner()) = stamps;
        let generation = self.snapshot().generation + 1;
        match Self::read(&self.ca_path, self.crl_path.as_deref(), generation) {
            Ok(snapshot) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snapshot);
                self.generation.send_replace(generation);
                Reload::Reloaded
            }
            Err(e) => Reload::Failed(e),
        }
    }

    /// The CRL in force (DER), if one is.
    pub fn crl_der(&self) -> Option<Vec<u8>> {
        self.snapshot().crls.first().map(|c| c.to_vec())
    }

    /// Takes a CRL that came down the tree: only if the region CA signed it
    /// and its number is higher than the one in force. It is written to the
    /// configured CRL file (atomically) and put in force at once. Returns
    /// whether it was newer.
    pub fn install_crl(&self, der: &[u8]) -> Result<bool, CrlInstallError> {
        let snap = self.snapshot();
        let info = crl::check(&snap.ca, der).map_err(CrlInstallError::NotOurs)?;
        if snap.crl.is_some_and(|c| c.number >= info.number) {
            return Ok(false);
        }
        let Some(path) = &self.crl_path else {
            return Err(CrlInstallError::NoCrlFile);
        };
        let pem = super::files::pem("X509 CRL", der);
        super::files::write_atomic(path, pem.as_bytes(), 0o644).map_err(|source| {
            CrlInstallError::Write {
                path: path.clone(),
                source,
            }
        })?;
        match self.reload_if_changed() {
            Reload::Reloaded => Ok(true),
            Reload::Unchanged => Ok(false),
            Reload::Failed(e) => Err(CrlInstallError::Reload(e)),
        }
    }

    /// Checks a certificate against the CA and the CRL in force at `now`:
    /// chain, validity, revocation, node id. Returns the node it names.
    pub fn check_cert(&self, cert_der: &[u8], now: SystemTime) -> Result<String, SignerError> {
        let snap = self.snapshot();
        self.fresh_enough(&snap, now)?;
        let cert = CertificateDer::from(cert_der);
        let ee = EndEntityCert::try_from(&cert).map_err(SignerError::Certificate)?;
        let unix = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        self.verify_chain(&snap, &ee, cert_der, UnixTime::since_unix_epoch(unix))
    }

    /// Fails once the CRL in force is past its grace.
    fn fresh_enough(&self, snap: &TrustSnapshot, now: SystemTime) -> Result<(), SignerError> {
        match Freshness::of(snap.crl.as_ref(), self.crl_grace, now) {
            Freshness::Stale { expired } => Err(SignerError::StaleCrl { expired }),
            _ => Ok(()),
        }
    }

    /// Verifies `cert_der` against the CA and CRL at `now`, then checks that
    /// `signature` over `msg` was made with its key (under the one rule of
    /// [`super::signature`]). Returns the signer's node id.
    pub fn verify_signed(
        &self,
        cert_der: &[u8],
        msg: &[u8],
        signature: &[u8],
        now: SystemTime,
    ) -> Result<String, SignerError> {
        let signer = self.signer(cert_der, now)?;
        if !signature::verify(signer.key, msg, signature) {
            return Err(SignerError::BadSignature);
        }
        Ok(signer.node_id)
    }

    /// [`Trust::verify_signed`] for a statement many messages share — the
    /// root of a commit's receipt group, which each of its receipts carries
    /// — whose signature is checked once: a signature that verified lately
    /// with the same key over the same bytes is not checked again.
    /// The certificate is checked every time, so revocation and expiry
    /// still apply at once.
    pub fn verify_shared(
        &self,
        cert_der: &[u8],
        msg: &[u8],
        signature: &[u8],
        now: SystemTime,
    ) -> Result<String, SignerError> {
        let signer = self.signer(cert_der, now)?;
        // Whether a signature holds depends only on the key, the signature
        // and the bytes: the certificate is checked above, every time. The
        // signature's length is written first, so no other split of the
        // same bytes gives the same digest.
        let seen = {
            let mut h = crate::digest::Sha256::default();
            h.update(signer.key.as_bytes());
            h.update(&(signature.len() as u64).to_le_bytes());
            h.update(signature);
            h.update(msg);
            h.finish()
        };
        let lock = || self.shared.lock().unwrap_or_else(|e| e.into_inner());
        if lock().contains(&seen) {
            return Ok(signer.node_id);
        }
        if !signature::verify(signer.key, msg, signature) {
            return Err(SignerError::BadSignature);
        }
        lock().insert(seen);
        Ok(signer.node_id)
    }

    /// Verifies `cert_der` against the CA and CRL at `now` and returns who it
    /// names and its key, to check a signature with (alone or in a batch).
    /// A certificate that passed is remembered for as long as it is valid
    /// and the CA and CRL do not change.
    pub fn signer(&self, cert_der: &[u8], now: SystemTime) -> Result<Signer, SignerError> {
        let snap = self.snapshot();
        self.fresh_enough(&snap, now)?;
        let unix = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let fingerprint = crate::digest::sha256(cert_der);
        let cached = self
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&fingerprint)
            .filter(|c| c.generation == snap.generation && c.valid.contains(&unix.as_secs()))
            .map(|c| Signer {
                node_id: c.node_id.clone(),
                key: c.key,
            });
        if let Some(signer) = cached {
            return Ok(signer);
        }
        let cert = CertificateDer::from(cert_der);
        let ee = EndEntityCert::try_from(&cert).map_err(SignerError::Certificate)?;
        let node_id = self.verify_chain(&snap, &ee, cert_der, UnixTime::since_unix_epoch(unix))?;
        let (_, parsed) = x509_parser::parse_x509_certificate(cert_der)
            .map_err(|_| SignerError::Certificate(webpki::Error::BadDer))?;
        let spki = parsed.public_key();
        if spki.algorithm.algorithm != x509_parser::oid_registry::OID_SIG_ED25519 {
            return Err(KeyError::NotEd25519.into());
        }
        let key = signature::usable_key(&spki.subject_public_key.data)?;
        let v = parsed.validity();
        let from = u64::try_from(v.not_before.timestamp()).unwrap_or(u64::MAX);
        let to = u64::try_from(v.not_after.timestamp()).unwrap_or(0);
        let mut cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= VERIFIED_CACHE {
            cache.clear();
        }
        cache.insert(
            fingerprint,
            VerifiedSigner {
                node_id: node_id.clone(),
                key,
                valid: from..to,
                generation: snap.generation,
            },
        );
        Ok(Signer { node_id, key })
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
        super::may_sign(cert_der).map_err(SignerError::KeyUsage)?;
        node_id_of(cert_der).ok_or(SignerError::NoNodeId)
    }
}
