//! `zhibao certs`: making the region's PKI on disk — one CA, one certificate
//! per node, a CRL — and keeping it: renewing a node's key, revoking,
//! re-signing the CRL, handing one node exactly its files.
//!
//! The files follow [`crate::trust`]'s rules: every node certificate carries
//! its node id as a URI SAN (`urn:zhibao:node:<id>`), which is the only place
//! a peer's identity is ever taken from, in the directory layout of
//! [`crate::trust::files`]. Keys are Ed25519 (plus a P-256 companion for TLS
//! stacks without Ed25519) and written with mode 0600; every file is written
//! to a temporary name and renamed into place so a crash never leaves half a
//! key. A running node never calls this module.
//!
//! # Two directories
//! A [`Pki`] is a **node directory** ([`Pki::nodes`], `certs/`): `ca.pem`, a
//! copy of `crl.pem` and every node's `<node>.pem`, `<node>.key`,
//! `<node>.p256.pem`, `<node>.p256.key` — and a **CA directory**
//! ([`Pki::ca`], by default the sibling `certs-ca/`, see
//! [`crate::trust::files::default_ca_dir`]): `ca.key` (0600), `ca.pem` and
//! the authoritative `crl.pem`. [`init_in`] never writes the CA key into the
//! node directory, so the node directory (or better, a [`bundle`] of one
//! node's files out of it) can be handed to nodes as it is.
//!
//! A node directory from an older version that still holds `ca.key` (the
//! "old layout") keeps working: the CA is read there when the CA directory
//! has none ([`Pki::legacy_ca_key`]), and its CRL is then the one in the
//! node directory. Move `ca.key` (with a copy of `ca.pem` and `crl.pem`) to
//! the CA directory to leave it.
//!
//! # The CRL
//! Every CRL change ([`init_in`], [`revoke_in`], [`reissue_crl`]) signs a
//! new CRL with the next CRL number — one more than the highest of the two
//! copies, so the number always goes up — and the entries of both copies,
//! writes the CA directory's copy, then the node directory's (atomically;
//! running nodes reload it when it changes).
//!
//! # Renewal
//! [`renew`] gives a node a new key and certificate for the same node id;
//! the old certificate is not revoked (reports signed under it stay
//! verifiable until it expires) and is kept in `<node>.pem.old` so that
//! [`revoke_in`] with [`Which::Old`] can revoke it later.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevocationReason, RevokedCertParams, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use crate::trust::crl::CrlError;
use crate::trust::files::{default_ca_dir, node_bundle_names, old_path};
use crate::trust::{
    BadNodeId, CA_CERT, CA_KEY, CRL, Identity, LoadError, NODE_URI_PREFIX, compat_paths,
    node_paths, validate_node_id,
};

/// How long a CRL is valid (its `nextUpdate`) unless told otherwise, days.
pub const DEFAULT_CRL_DAYS: i64 = 365;

/// Errors from certificate management.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `init` found a CA already in one of the directories.
    #[error("a CA already exists at {0}; refusing to overwrite it")]
    CaExists(PathBuf),
    /// `issue` found a certificate for the node already.
    #[error(
        "a certificate for node {0:?} already exists at {1}; renew it, or revoke it and remove the files first"
    )]
    NodeExists(String, PathBuf),
    /// No CA (certificate and key) in the CA directory, nor the old layout's
    /// key in the node directory.
    #[error(
        "no CA found in {0} (ca.pem and ca.key); give the CA directory with --ca-dir, or run `zhibao certs init` first"
    )]
    NoCa(PathBuf),
    /// The node directory's `ca.pem` is not the CA certificate next to the
    /// CA key: the two directories are not of the same region.
    #[error("{nodes} is not the CA certificate in {ca}: the CA directory is another region's")]
    CaMismatch {
        /// The node directory's `ca.pem`.
        nodes: PathBuf,
        /// The CA directory's `ca.pem`.
        ca: PathBuf,
    },
    /// The CA directory is the node directory, or one is inside the other.
    #[error(
        "the CA directory {ca} must be apart from the node directory {nodes} (neither inside the other)"
    )]
    DirsNotApart {
        /// The node directory.
        nodes: PathBuf,
        /// The CA directory.
        ca: PathBuf,
    },
    /// No certificate for the node.
    #[error("no certificate for node {0:?} at {1}")]
    NoNode(String, PathBuf),
    /// No previous certificate of the node (only `renew` keeps one).
    #[error("no previous certificate of node {0:?} at {1} (`zhibao certs renew` keeps one)")]
    NoOld(String, PathBuf),
    /// A file a bundle needs is missing.
    #[error("{0} is missing")]
    Missing(PathBuf),
    /// The bundle's directory already holds one of the files.
    #[error("{0} already exists; refusing to overwrite it")]
    Exists(PathBuf),
    /// The node's certificate and key do not load as a pair.
    #[error(transparent)]
    Identity(#[from] LoadError),
    /// The node id is not usable as an identity and DNS name.
    #[error(transparent)]
    BadNodeId(#[from] BadNodeId),
    /// Not a serial number.
    #[error("{0:?} is not a certificate serial number (hex digits, ':' between bytes allowed)")]
    BadSerial(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// rcgen could not build or sign a certificate or CRL.
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// An existing PEM file could not be parsed.
    #[error("{0}: not a valid PEM certificate, key or CRL")]
    BadPem(PathBuf),
    /// An existing CRL is not one the region CA signed.
    #[error("{path}: not a CRL of this region's CA: {why}")]
    BadCrl {
        /// The CRL file.
        path: PathBuf,
        /// What is wrong with it.
        why: CrlError,
    },
}

/// Where a region's PKI lives: the node directory and the CA directory
/// (see the [module documentation](self)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pki {
    /// What nodes are given: `ca.pem`, a copy of `crl.pem`, every node's
    /// certificates and keys. Never `ca.key`.
    pub nodes: PathBuf,
    /// The CA's own: `ca.key` (0600), `ca.pem`, the authoritative `crl.pem`.
    pub ca: PathBuf,
}

impl Pki {
    /// The node directory `dir` with its default CA directory, the sibling
    /// `<dir>-ca` ([`default_ca_dir`]).
    pub fn at(dir: &Path) -> Self {
        Self::new(dir, &default_ca_dir(dir))
    }

    /// The node directory `nodes` with the CA directory `ca`.
    pub fn new(nodes: &Path, ca: &Path) -> Self {
        Self {
            nodes: nodes.to_path_buf(),
            ca: ca.to_path_buf(),
        }
    }

    /// The CA key in the node directory, where an older `certs init` put it
    /// (the old layout), if it is there. Nodes must not be given such a
    /// directory.
    pub fn legacy_ca_key(&self) -> Option<PathBuf> {
        let key = self.nodes.join(CA_KEY);
        key.exists().then_some(key)
    }

    /// Refuses a CA directory that is the node directory or inside it (or
    /// the other way round): whoever copies one would copy the other.
    fn apart(&self) -> Result<(), Error> {
        let (nodes, ca) = (absolute(&self.nodes), absolute(&self.ca));
        if nodes.starts_with(&ca) || ca.starts_with(&nodes) {
            return Err(Error::DirsNotApart {
                nodes: self.nodes.clone(),
                ca: self.ca.clone(),
            });
        }
        Ok(())
    }

    /// The directory the CA is read from: the CA directory, or in the old
    /// layout the node directory.
    fn ca_home(&self) -> Result<&Path, Error> {
        if self.ca.join(CA_KEY).exists() {
            Ok(&self.ca)
        } else if self.legacy_ca_key().is_some() {
            Ok(&self.nodes)
        } else {
            Err(Error::NoCa(self.ca.clone()))
        }
    }
}

/// `path` made absolute, through symbolic links where it exists.
fn absolute(path: &Path) -> PathBuf {
    fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_path_buf())
}

/// How to issue one node certificate. `Default` is what `certs issue` does.
#[derive(Debug, Clone)]
pub struct IssueOptions {
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// Put the node id URI SAN in the certificate (tests turn this off to
    /// make a certificate that names no node).
    pub with_node_id: bool,
    /// Allow the key to make digital signatures (tests turn this off to
    /// make a certificate whose key usage is key agreement only, which
    /// nothing in zhibao accepts: see `trust::usage`).
    pub may_sign: bool,
    /// Extra DNS names or IP addresses the node answers to as a TLS server.
    pub extra_names: Vec<String>,
}

impl Default for IssueOptions {
    fn default() -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            not_before: now - Duration::minutes(5),
            not_after: now + Duration::days(365),
            with_node_id: true,
            may_sign: true,
            extra_names: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
        }
    }
}

impl IssueOptions {
    /// The defaults, valid for `days` (at least one) from now.
    pub fn for_days(days: i64) -> Self {
        let mut opts = Self::default();
        opts.not_after = opts.not_before + Duration::days(days.max(1));
        opts
    }
}

/// Creates a region CA and certificates for `hub` and every node in
/// `nodes`, with the CA in the default CA directory next to `dir`
/// ([`init_in`] with [`Pki::at`]).
pub fn init(dir: &Path, region: &str, hub: &str, nodes: &[String]) -> Result<(), Error> {
    init_in(&Pki::at(dir), region, hub, nodes)
}

/// Creates a region CA in `pki.ca` (`ca.key` 0600, `ca.pem`, `crl.pem`; the
/// directory 0700 if it is made here), and in `pki.nodes` a copy of
/// `ca.pem` and of the CRL and certificates for `hub` and every node in
/// `nodes`.
///
/// # Errors
/// Refuses with [`Error::CaExists`] if either directory already holds a CA
/// certificate or key, and with [`Error::DirsNotApart`] if the directories
/// are the same or one is inside the other.
pub fn init_in(pki: &Pki, region: &str, hub: &str, nodes: &[String]) -> Result<(), Error> {
    validate_node_id(hub)?;
    for n in nodes {
        validate_node_id(n)?;
    }
    pki.apart()?;
    for dir in [&pki.ca, &pki.nodes] {
        for name in [CA_CERT, CA_KEY] {
            let path = dir.join(name);
            if path.exists() {
                return Err(Error::CaExists(path));
            }
        }
    }
    create_dir(&pki.ca, Some(0o700))?;
    create_dir(&pki.nodes, None)?;

    let key = KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("zhibao region CA {region}"));
    dn.push(DnType::OrganizationName, "zhibao");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.key_identifier_method = KeyIdMethod::Sha256;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + Duration::days(3650);
    params.serial_number = Some(random_serial());
    let cert = params.self_signed(&key)?;
    // The key goes first: a CA certificate without its key is useless,
    // and `init` refuses to run again once either exists.
    write_atomic(&pki.ca.join(CA_KEY), key_pem(&key)?.as_bytes(), 0o600)?;
    write_atomic(&pki.ca.join(CA_CERT), cert.pem().as_bytes(), 0o644)?;
    write_atomic(&pki.nodes.join(CA_CERT), cert.pem().as_bytes(), 0o644)?;
    let ca = Ca {
        cert_der: cert.der().to_vec(),
        issuer: Issuer::new(params, key),
        home: pki.ca.clone(),
    };
    write_crl(pki, &ca, Vec::new(), 1, default_next_update())?;

    for node in std::iter::once(hub.to_string()).chain(nodes.iter().cloned()) {
        issue_signed(pki, &ca, &node, &IssueOptions::default())?;
    }
    Ok(())
}

/// The region CA, loaded to sign.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_der: Vec<u8>,
    /// Where its key and the authoritative CRL are.
    home: PathBuf,
}

fn load_ca(pki: &Pki) -> Result<Ca, Error> {
    pki.apart()?;
    let home = pki.ca_home()?.to_path_buf();
    let ca_cert = home.join(CA_CERT);
    let ca_key = home.join(CA_KEY);
    if !ca_cert.exists() {
        return Err(Error::NoCa(home));
    }
    let key = KeyPair::from_pem(&read_string(&ca_key)?).map_err(|_| Error::BadPem(ca_key))?;
    let cert_der = read_cert_der(&ca_cert)?;
    // What the nodes trust must be this very CA.
    let given = pki.nodes.join(CA_CERT);
    if home != pki.nodes && given.exists() && read_cert_der(&given)? != cert_der {
        return Err(Error::CaMismatch {
            nodes: given,
            ca: ca_cert,
        });
    }
    let issuer = Issuer::from_ca_cert_pem(&read_string(&ca_cert)?, key)
        .map_err(|_| Error::BadPem(ca_cert))?;
    Ok(Ca {
        issuer,
        cert_der,
        home,
    })
}

/// Issues a certificate for `node` with default options.
pub fn issue(dir: &Path, node: &str) -> Result<(), Error> {
    issue_with(dir, node, &IssueOptions::default())
}

/// Issues a certificate for `node` into `dir`, signed by the CA in the
/// default CA directory ([`issue_in`] with [`Pki::at`]).
pub fn issue_with(dir: &Path, node: &str, opts: &IssueOptions) -> Result<(), Error> {
    issue_in(&Pki::at(dir), node, opts)
}

/// Issues a certificate for `node` (and its P-256 companion) into
/// `pki.nodes`, signed by the CA.
///
/// # Errors
/// Refuses with [`Error::NodeExists`] rather than replace a live identity
/// (that is what [`renew`] is for).
pub fn issue_in(pki: &Pki, node: &str, opts: &IssueOptions) -> Result<(), Error> {
    validate_node_id(node)?;
    let ca = load_ca(pki)?;
    issue_signed(pki, &ca, node, opts)
}

fn issue_signed(pki: &Pki, ca: &Ca, node: &str, opts: &IssueOptions) -> Result<(), Error> {
    let (cert_path, key_path) = node_paths(&pki.nodes, node);
    if cert_path.exists() || key_path.exists() {
        return Err(Error::NodeExists(node.to_string(), cert_path));
    }
    let files = NodeFiles::make(node, opts, ca)?;
    let (compat_cert_path, compat_key_path) = compat_paths(&cert_path);
    write_atomic(&compat_key_path, files.compat_key.as_bytes(), 0o600)?;
    write_atomic(&compat_cert_path, files.compat_cert.as_bytes(), 0o644)?;
    // The Ed25519 pair last: its presence is what marks the node as issued.
    write_atomic(&key_path, files.key.as_bytes(), 0o600)?;
    write_atomic(&cert_path, files.cert.as_bytes(), 0o644)?;
    Ok(())
}

/// A node's certificates and keys, PEM, not yet on disk.
struct NodeFiles {
    cert: String,
    key: String,
    compat_cert: String,
    compat_key: String,
}

impl NodeFiles {
    fn make(node: &str, opts: &IssueOptions, ca: &Ca) -> Result<Self, Error> {
        let params = node_params(node, opts)?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
        let cert = params.signed_by(&key, &ca.issuer)?;
        let mut compat_params = params;
        compat_params.serial_number = Some(random_serial());
        let compat_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let compat_cert = compat_params.signed_by(&compat_key, &ca.issuer)?;
        Ok(Self {
            cert: cert.pem(),
            key: key_pem(&key)?,
            compat_cert: compat_cert.pem(),
            compat_key: compat_key.serialize_pem(),
        })
    }
}

fn node_params(node: &str, opts: &IssueOptions) -> Result<CertificateParams, Error> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, node);
    dn.push(DnType::OrganizationName, "zhibao");
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![if opts.may_sign {
        KeyUsagePurpose::DigitalSignature
    } else {
        KeyUsagePurpose::KeyAgreement
    }];
    // Every node may be both a client (to its upstream) and a server (to its
    // children and consumers), so it gets both purposes.
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ClientAuth,
        ExtendedKeyUsagePurpose::ServerAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.key_identifier_method = KeyIdMethod::Sha256;
    params.not_before = opts.not_before;
    params.not_after = opts.not_after;
    params.serial_number = Some(random_serial());
    let mut sans = vec![SanType::DnsName(node.try_into()?)];
    if opts.with_node_id {
        sans.push(SanType::URI(format!("{NODE_URI_PREFIX}{node}").try_into()?));
    }
    for name in &opts.extra_names {
        match name.parse::<std::net::IpAddr>() {
            Ok(ip) => sans.push(SanType::IpAddress(ip)),
            Err(_) => sans.push(SanType::DnsName(name.as_str().try_into()?)),
        }
    }
    params.subject_alt_names = sans;
    Ok(params)
}

/// What [`renew`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renewal {
    /// Serial number (hex) of the node's certificate now in force.
    pub new_serial: String,
    /// Serial number (hex) of the certificate it replaced, which stays
    /// valid until it expires or is revoked.
    pub old_serial: String,
    /// Where the replaced certificate is kept (first in `<node>.pem.old`).
    pub old_cert: PathBuf,
    /// An interrupted renewal was found and finished instead of a new one
    /// made.
    pub resumed: bool,
}

/// The files a renewal replaces, in the order they are renamed into place:
/// (staged name, final name).
fn renewal_steps(nodes: &Path, node: &str) -> [(PathBuf, PathBuf); 4] {
    let (cert, key) = node_paths(nodes, node);
    let (compat_cert, compat_key) = compat_paths(&cert);
    [compat_key, compat_cert, key, cert].map(|path| (suffixed(&path, ".new"), path))
}

/// Gives `node` a new Ed25519 key and certificate, and a new P-256
/// companion, for the same node id, signed by the CA. The certificate it
/// replaces is **not** revoked: it stays valid, and reports signed under
/// it stay verifiable, until it expires or [`revoke_in`] revokes it. It is
/// kept first in `<node>.pem.old` (its companion in `<node>.p256.pem.old`),
/// followed by those earlier renewals kept that are still valid and not
/// revoked, so that [`Which::Old`] revokes every one of them.
///
/// # What a reader sees
/// The four new files are first written and synced under staged names
/// (`<file>.new`), then renamed over the old ones in this order:
/// `<node>.p256.key`, `<node>.p256.pem`, `<node>.key`, `<node>.pem`. Each
/// file is always whole, either old or new, and the four are consistent
/// before the first rename and after the last. `<node>.pem` goes last, so
/// whoever reloads when it changes finds every other new file already in
/// place. In the moments between renames a reader can see a mix: a new key
/// next to its old certificate (of either pair), or the new P-256 pair
/// with the old Ed25519 pair. [`Identity::load`](crate::trust::Identity::load)
/// refuses a mismatched Ed25519 pair ([`LoadError::KeyMismatch`]: keep the
/// identity in force and look again at the next change) but does not
/// check the P-256 key against its certificate, so reload when `<node>.pem`
/// changes rather than on any file. If the renewal is interrupted between
/// the renames, `<node>.pem.new` is left behind and the next [`renew`],
/// [`revoke_in`] or [`bundle`] for the node finishes it (and `renew` then
/// stops there: [`Renewal::resumed`]); staged files without
/// `<node>.pem.new` are from a renewal that had not started renaming, and
/// are removed.
///
/// # Errors
/// [`Error::NoNode`] if the node has no certificate and key yet (that is
/// what [`issue_in`] is for).
pub fn renew(pki: &Pki, node: &str, opts: &IssueOptions) -> Result<Renewal, Error> {
    validate_node_id(node)?;
    let ca = load_ca(pki)?;
    let (cert_path, key_path) = node_paths(&pki.nodes, node);
    let old_cert = old_path(&cert_path);
    let summary = |resumed| -> Result<Renewal, Error> {
        Ok(Renewal {
            new_serial: serial_hex(&read_serial(&cert_path)?),
            old_serial: serial_hex(&read_serial(&old_cert)?),
            old_cert: old_cert.clone(),
            resumed,
        })
    };
    if finish_renewal(&pki.nodes, node)? {
        return summary(true);
    }
    if !cert_path.exists() || !key_path.exists() {
        return Err(Error::NoNode(node.to_string(), cert_path));
    }
    // Keep the certificates being replaced, to revoke them later: first in
    // `.old`, ahead of those earlier renewals kept that are still valid and
    // not revoked (a second renewal must not lose track of the first one).
    let (revoked, _) = read_crls(pki, &ca)?;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let live = |c: &KeptCert| {
        c.not_after > now
            && !revoked
                .iter()
                .any(|r| trim_serial(r.serial_number.as_ref()) == c.serial)
    };
    let (compat_cert, _) = compat_paths(&cert_path);
    for current in [&cert_path, &compat_cert] {
        let old = old_path(current);
        let mut kept = certs_in(current)?;
        for c in certs_in(&old)? {
            // (An interrupted renewal may have listed the current one.)
            if live(&c) && !kept.iter().any(|k| k.serial == c.serial) {
                kept.push(c);
            }
        }
        if kept.is_empty() {
            remove_if_there(&old)?;
        } else {
            let pem: String = kept.iter().map(|c| format!("{}\n", c.pem)).collect();
            write_atomic(&old, pem.as_bytes(), 0o644)?;
        }
    }
    let files = NodeFiles::make(node, opts, &ca)?;
    let steps = renewal_steps(&pki.nodes, node);
    let contents = [
        (files.compat_key.as_bytes(), 0o600),
        (files.compat_cert.as_bytes(), 0o644),
        (files.key.as_bytes(), 0o600),
        (files.cert.as_bytes(), 0o644),
    ];
    // All staged (the certificate last: its staged file marks a complete
    // set), then renamed in the same order.
    for ((staged, _), (data, mode)) in steps.iter().zip(contents) {
        write_atomic(staged, data, mode)?;
    }
    finish_renewal(&pki.nodes, node)?;
    summary(false)
}

/// Finishes a renewal of `node` that was interrupted after its files were
/// staged (`<node>.pem.new` exists): renames what is left into place, in
/// order. Otherwise removes staged files of a renewal that never finished
/// staging. Returns whether there was a renewal to finish.
fn finish_renewal(nodes: &Path, node: &str) -> Result<bool, Error> {
    let steps = renewal_steps(nodes, node);
    let complete = steps[3].0.exists();
    for (staged, path) in &steps {
        if !staged.exists() {
            continue;
        }
        if complete {
            fs::rename(staged, path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            sync_dir(nodes);
        } else {
            remove_if_there(staged)?;
        }
    }
    Ok(complete)
}

/// Which of a node's certificates [`revoke_in`] revokes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Which {
    /// Every certificate of the node on disk: the current one and those
    /// renewals replaced (`<node>.pem.old`), each with its P-256 companion.
    /// What to do when a node is lost or retired.
    All,
    /// Only the certificates renewals replaced (`<node>.pem.old`) and their
    /// P-256 companions: once the node runs on its new one.
    Old,
    /// The certificate with this serial number; if it is one of the node's
    /// on disk, its P-256 companion too.
    Serial(Vec<u8>),
}

/// Revokes `node`'s certificate(s) with the CA in the default CA directory
/// next to `dir` ([`revoke_in`] with [`Which::All`]).
///
/// Revoking twice is harmless; the CRL number goes up each time.
pub fn revoke(dir: &Path, node: &str) -> Result<(), Error> {
    revoke_in(&Pki::at(dir), node, &Which::All).map(|_| ())
}

/// Adds `which` of `node`'s certificates to the region CRL and writes it
/// (the CA directory's copy, then the node directory's). Returns the serial
/// numbers (hex) it lists for them.
///
/// Revoking twice is harmless; the CRL number goes up each time.
///
/// # Errors
/// [`Error::NoNode`] if the node has no certificate ([`Which::All`]),
/// [`Error::NoOld`] if no renewal kept a previous one ([`Which::Old`]).
pub fn revoke_in(pki: &Pki, node: &str, which: &Which) -> Result<Vec<String>, Error> {
    validate_node_id(node)?;
    let ca = load_ca(pki)?;
    finish_renewal(&pki.nodes, node)?;
    let (cert_path, _) = node_paths(&pki.nodes, node);
    let (compat_cert, _) = compat_paths(&cert_path);
    let (old_cert, old_compat) = (old_path(&cert_path), old_path(&compat_cert));
    let [current, current_compat, old, old_compat] =
        [&cert_path, &compat_cert, &old_cert, &old_compat].map(|p| certs_in(p));
    let (current, current_compat, old, old_compat) = (current?, current_compat?, old?, old_compat?);
    let serials = |certs: &[&Vec<KeptCert>]| -> Vec<Vec<u8>> {
        certs
            .iter()
            .flat_map(|list| list.iter().map(|c| c.serial.clone()))
            .collect()
    };
    let (serials, reason) = match which {
        Which::All => {
            if current.is_empty() {
                return Err(Error::NoNode(node.to_string(), cert_path));
            }
            (
                serials(&[&current, &current_compat, &old, &old_compat]),
                RevocationReason::CessationOfOperation,
            )
        }
        Which::Old => {
            if old.is_empty() {
                return Err(Error::NoOld(node.to_string(), old_cert));
            }
            (serials(&[&old, &old_compat]), RevocationReason::Superseded)
        }
        Which::Serial(serial) => {
            let serial = trim_serial(serial).to_vec();
            let mut found = vec![serial.clone()];
            // A node certificate's P-256 companion was issued with it, for
            // the same validity.
            if let Some(main) = current.iter().chain(&old).find(|c| c.serial == serial) {
                found.extend(
                    current_compat
                        .iter()
                        .chain(&old_compat)
                        .filter(|c| c.validity() == main.validity() && c.serial != serial)
                        .map(|c| c.serial.clone()),
                );
            }
            (found, RevocationReason::Unspecified)
        }
    };
    let (mut revoked, number) = read_crls(pki, &ca)?;
    let now = OffsetDateTime::now_utc();
    for serial in &serials {
        if !revoked
            .iter()
            .any(|r| trim_serial(r.serial_number.as_ref()) == trim_serial(serial))
        {
            revoked.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(serial),
                revocation_time: now,
                reason_code: Some(reason),
                invalidity_date: None,
            });
        }
    }
    write_crl(pki, &ca, revoked, number + 1, default_next_update())?;
    Ok(serials.iter().map(|s| serial_hex(s)).collect())
}

/// Signs the CRL again with the same revoked certificates, the next CRL
/// number and `next_update` as its `nextUpdate` (a time already past makes
/// a CRL that nodes treat as expired, for tests). Writes the CA
/// directory's copy, then the node directory's. Returns the new CRL number.
pub fn reissue_crl(pki: &Pki, next_update: OffsetDateTime) -> Result<u64, Error> {
    let ca = load_ca(pki)?;
    let (revoked, number) = read_crls(pki, &ca)?;
    write_crl(pki, &ca, revoked, number + 1, next_update)
}

/// The default `nextUpdate` of a new CRL: [`DEFAULT_CRL_DAYS`] from now.
pub fn default_next_update() -> OffsetDateTime {
    OffsetDateTime::now_utc() + Duration::days(DEFAULT_CRL_DAYS)
}

/// The revoked entries of both copies of the CRL (each must be signed by
/// the CA) and the highest CRL number among them (0 if there is none).
fn read_crls(pki: &Pki, ca: &Ca) -> Result<(Vec<RevokedCertParams>, u64), Error> {
    let authoritative = ca.home.join(CRL);
    let copy = pki.nodes.join(CRL);
    let mut revoked: Vec<RevokedCertParams> = Vec::new();
    let mut number = 0;
    for path in [&authoritative, &copy] {
        if !path.exists() || (path == &copy && copy == authoritative) {
            continue;
        }
        let der = read_crl_der(path)?;
        let info = crate::trust::crl::check(&ca.cert_der, &der).map_err(|why| Error::BadCrl {
            path: path.clone(),
            why,
        })?;
        number = number.max(info.number);
        let (_, crl) =
            x509_parser::parse_x509_crl(&der).map_err(|_| Error::BadPem(path.clone()))?;
        for r in crl.iter_revoked_certificates() {
            let serial = trim_serial(r.raw_serial());
            if revoked
                .iter()
                .any(|e| trim_serial(e.serial_number.as_ref()) == serial)
            {
                continue;
            }
            revoked.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(r.raw_serial()),
                revocation_time: OffsetDateTime::from_unix_timestamp(r.revocation_date.timestamp())
                    .unwrap_or_else(|_| OffsetDateTime::now_utc()),
                reason_code: Some(
                    r.reason_code()
                        .map_or(RevocationReason::Unspecified, |(_, c)| reason(c.0)),
                ),
                invalidity_date: None,
            });
        }
    }
    Ok((revoked, number))
}

fn reason(code: u8) -> RevocationReason {
    use RevocationReason as R;
    match code {
        1 => R::KeyCompromise,
        2 => R::CaCompromise,
        3 => R::AffiliationChanged,
        4 => R::Superseded,
        5 => R::CessationOfOperation,
        6 => R::CertificateHold,
        8 => R::RemoveFromCrl,
        9 => R::PrivilegeWithdrawn,
        10 => R::AaCompromise,
        _ => R::Unspecified,
    }
}

/// Signs a CRL numbered `number` (at least 1) and writes the CA home's
/// copy, then the node directory's. Returns the number.
fn write_crl(
    pki: &Pki,
    ca: &Ca,
    revoked_certs: Vec<RevokedCertParams>,
    number: u64,
    next_update: OffsetDateTime,
) -> Result<u64, Error> {
    let number = number.max(1);
    let now = OffsetDateTime::now_utc();
    let params = CertificateRevocationListParams {
        // Never after its own nextUpdate, even when that is in the past.
        this_update: (now - Duration::minutes(5)).min(next_update - Duration::seconds(1)),
        next_update,
        crl_number: SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let pem = params.signed_by(&ca.issuer)?.pem()?;
    let authoritative = ca.home.join(CRL);
    write_atomic(&authoritative, pem.as_bytes(), 0o644)?;
    let copy = pki.nodes.join(CRL);
    if copy != authoritative {
        write_atomic(&copy, pem.as_bytes(), 0o644)?;
    }
    Ok(number)
}

/// Copies exactly the files one node needs out of the node directory `dir`
/// into `out` (made with mode 0700 if it does not exist): `ca.pem`,
/// `crl.pem`, `<node>.pem`, `<node>.key`, `<node>.p256.pem`,
/// `<node>.p256.key` ([`node_bundle_names`]), those that exist; keys with
/// mode 0600. Returns the files written.
///
/// # Errors
/// [`Error::Missing`] or [`Error::NoNode`] if `ca.pem` or the node's
/// Ed25519 pair is missing, [`Error::Identity`] if that pair does not load
/// as a pair, and [`Error::Exists`] if `out` already holds any of the six
/// files (nothing is written then).
pub fn bundle(dir: &Path, node: &str, out: &Path) -> Result<Vec<PathBuf>, Error> {
    validate_node_id(node)?;
    finish_renewal(dir, node)?;
    let (cert, key) = node_paths(dir, node);
    let ca_cert = dir.join(CA_CERT);
    if !ca_cert.exists() {
        return Err(Error::Missing(ca_cert));
    }
    if !cert.exists() || !key.exists() {
        return Err(Error::NoNode(node.to_string(), cert));
    }
    Identity::load(&cert, &key)?;
    let names = node_bundle_names(node);
    if let Some(clash) = names.iter().map(|n| out.join(n)).find(|p| p.exists()) {
        return Err(Error::Exists(clash));
    }
    create_dir(out, Some(0o700))?;
    let mut written = Vec::new();
    for name in &names {
        let from = dir.join(name);
        if !from.exists() {
            continue;
        }
        let to = out.join(name);
        let mode = if name.ends_with(".key") { 0o600 } else { 0o644 };
        copy_file(&from, &to, mode)?;
        written.push(to);
    }
    Ok(written)
}

/// Creates `dir` (and its parents); if it did not exist and `mode` is
/// given, with exactly that mode.
fn create_dir(dir: &Path, mode: Option<u32>) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    if let Some(mode) = mode {
        builder.mode(mode);
    }
    builder.create(dir).map_err(io)?;
    if let Some(mode) = mode {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode)).map_err(io)?;
    }
    Ok(())
}

/// Copies `from` to `to` atomically, with `mode`.
fn copy_file(from: &Path, to: &Path, mode: u32) -> Result<(), Error> {
    let data = fs::read(from).map_err(|source| Error::Io {
        path: from.to_path_buf(),
        source,
    })?;
    write_atomic(to, &data, mode)
}

fn remove_if_there(path: &Path) -> Result<(), Error> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::Io {
            path: path.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// `path` with `suffix` appended to its file name.
fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// PEM of an Ed25519 key as RFC 8410 PKCS#8 v1 (seed only).
///
/// ring writes v2 (seed plus public key), which OpenSSL 3.0 refuses to
/// read; v1 is what every TLS stack accepts, and ring reads it too.
fn key_pem(key: &KeyPair) -> Result<String, Error> {
    const PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let der = key.serialize_der();
    // In both versions the seed is the 32 bytes after `04 22 04 20`.
    let seed = der
        .windows(4)
        .position(|w| w == [0x04, 0x22, 0x04, 0x20])
        .and_then(|at| der.get(at + 4..at + 36))
        .ok_or(Error::Rcgen(rcgen::Error::KeyGenerationUnavailable))?;
    let mut v1 = PREFIX.to_vec();
    v1.extend_from_slice(seed);
    // rcgen keeps the DER it is given, so it writes the v1 form back out.
    let pkcs8 = rustls_pki_types::PrivatePkcs8KeyDer::from(v1);
    Ok(KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_ED25519)?.serialize_pem())
}

fn random_serial() -> SerialNumber {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    // SystemRandom only fails if the OS has no entropy source, which
    // would also make key generation fail a moment earlier.
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the OS random number generator failed");
    bytes[0] &= 0x7f; // positive, as RFC 5280 asks
    bytes[0] |= 0x01; // and no leading zero byte
    SerialNumber::from_slice(&bytes)
}

/// A serial number without leading zero bytes (as DER may pad it).
fn trim_serial(serial: &[u8]) -> &[u8] {
    let start = serial
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(serial.len().saturating_sub(1));
    &serial[start..]
}

/// The serial number of the first certificate in a PEM file.
pub fn read_serial(path: &Path) -> Result<Vec<u8>, Error> {
    let der = read_cert_der(path)?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(&der).map_err(|_| Error::BadPem(path.into()))?;
    Ok(trim_serial(cert.raw_serial()).to_vec())
}

/// One certificate of a PEM file that may hold several (`<node>.pem.old`).
struct KeptCert {
    /// Its PEM block.
    pem: String,
    /// Its serial number, without leading zero bytes.
    serial: Vec<u8>,
    /// Validity, Unix seconds.
    not_before: i64,
    not_after: i64,
}

impl KeptCert {
    fn validity(&self) -> (i64, i64) {
        (self.not_before, self.not_after)
    }
}

/// Every certificate in the PEM file at `path`, in order; none if there is
/// no such file.
fn certs_in(path: &Path) -> Result<Vec<KeptCert>, Error> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = read_string(path)?;
    let bad = || Error::BadPem(path.to_path_buf());
    let mut certs = Vec::new();
    let mut rest = text.as_str();
    while let Some(begin) = rest.find(BEGIN) {
        let end = rest[begin..].find(END).ok_or_else(bad)? + begin + END.len();
        let pem = &rest[begin..end];
        rest = &rest[end..];
        let der = {
            use rustls_pki_types::{CertificateDer, pem::PemObject};
            CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|_| bad())?
        };
        let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|_| bad())?;
        certs.push(KeptCert {
            pem: pem.to_string(),
            serial: trim_serial(cert.raw_serial()).to_vec(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
        });
    }
    if certs.is_empty() {
        return Err(bad());
    }
    Ok(certs)
}

/// A serial number as `zhibao certs` prints it: lower-case hex.
pub fn serial_hex(serial: &[u8]) -> String {
    crate::digest::hex(trim_serial(serial))
}

/// Parses a serial number written in hex, as [`serial_hex`] or
/// `openssl x509 -serial` print it (`0x`, `serial=` and `:` allowed).
pub fn parse_serial(text: &str) -> Result<Vec<u8>, Error> {
    let bad = || Error::BadSerial(text.to_string());
    let t = text.trim();
    let t = t.strip_prefix("serial=").unwrap_or(t);
    let t = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    let mut digits: String = t.chars().filter(|c| *c != ':').collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad());
    }
    if digits.len() % 2 == 1 {
        digits.insert(0, '0');
    }
    let bytes = (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).map_err(|_| bad()))
        .collect::<Result<Vec<u8>, Error>>()?;
    Ok(trim_serial(&bytes).to_vec())
}

fn read_string(path: &Path) -> Result<String, Error> {
    fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads the first certificate in a PEM file.
pub fn read_cert_der(path: &Path) -> Result<Vec<u8>, Error> {
    use rustls_pki_types::{CertificateDer, pem::PemObject};
    CertificateDer::from_pem_file(path)
        .map(|c| c.to_vec())
        .map_err(|_| Error::BadPem(path.into()))
}

/// Reads the CRL in a PEM file.
pub fn read_crl_der(path: &Path) -> Result<Vec<u8>, Error> {
    use rustls_pki_types::{CertificateRevocationListDer, pem::PemObject};
    CertificateRevocationListDer::from_pem_file(path)
        .map(|c| c.to_vec())
        .map_err(|_| Error::BadPem(path.into()))
}

/// Writes `data` to `path` atomically (temp file, fsync, rename) with `mode`.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), Error> {
    crate::trust::files::write_atomic(path, data, mode).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Makes the renames in `dir` durable (best effort).
fn sync_dir(dir: &Path) {
    crate::trust::files::sync_dir(dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A region in a fresh temporary directory: `certs/` and `certs-ca/`.
    fn region(nodes: &[&str]) -> (tempfile::TempDir, Pki) {
        let tmp = tempfile::tempdir().unwrap();
        let pki = Pki::at(&tmp.path().join("certs"));
        let nodes: Vec<String> = nodes.iter().map(|n| n.to_string()).collect();
        init_in(&pki, "test", "hub", &nodes).unwrap();
        (tmp, pki)
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn init_writes_keys_0600_and_refuses_to_overwrite() {
        let (_tmp, pki) = region(&["county-a"]);
        assert_eq!(pki.ca, pki.nodes.with_file_name("certs-ca"));
        assert_eq!(mode(&pki.ca.join(CA_KEY)), 0o600);
        assert_eq!(mode(&pki.ca), 0o700);
        for f in ["hub.key", "county-a.key", "hub.p256.key"] {
            assert_eq!(mode(&pki.nodes.join(f)), 0o600, "{f}");
        }
        assert!(!pki.nodes.join(CA_KEY).exists());
        assert!(pki.legacy_ca_key().is_none());
        for dir in [&pki.ca, &pki.nodes] {
            assert!(dir.join(CRL).exists());
            assert!(dir.join(CA_CERT).exists());
        }
        let err = init_in(&pki, "test", "hub", &[]).unwrap_err();
        assert!(matches!(err, Error::CaExists(_)), "{err}");
        // Through the old entry point too.
        let err = init(&pki.nodes, "test", "hub", &[]).unwrap_err();
        assert!(matches!(err, Error::CaExists(_)), "{err}");
    }

    #[test]
    fn init_refuses_directories_that_are_not_apart() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("certs");
        for pki in [Pki::new(&d, &d), Pki::new(&d, &d.join("ca"))] {
            let err = init_in(&pki, "t", "hub", &[]).unwrap_err();
            assert!(matches!(err, Error::DirsNotApart { .. }), "{err}");
        }
        assert!(!d.exists());
    }

    #[test]
    fn keys_are_pkcs8_v1_and_load_back() {
        let (_tmp, pki) = region(&[]);
        let text = fs::read_to_string(pki.nodes.join("hub.key")).unwrap();
        let der = {
            use rustls_pki_types::pem::PemObject;
            rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(text.as_bytes())
                .unwrap()
                .secret_pkcs8_der()
                .to_vec()
        };
        assert_eq!(der.len(), 48);
        assert_eq!(der[4], 0x00, "version 0 (v1)");
        let (c, k) = node_paths(&pki.nodes, "hub");
        crate::trust::Identity::load(&c, &k).unwrap();
        issue(&pki.nodes, "n1").unwrap(); // the CA key loads back too
    }

    #[test]
    fn revoke_lists_the_serial_and_keeps_earlier_ones() {
        let (_tmp, pki) = region(&["a", "b"]);
        revoke(&pki.nodes, "a").unwrap();
        revoke(&pki.nodes, "b").unwrap();
        revoke(&pki.nodes, "b").unwrap();
        for dir in [&pki.ca, &pki.nodes] {
            let der = read_crl_der(&dir.join(CRL)).unwrap();
            let (_, crl) = x509_parser::parse_x509_crl(&der).unwrap();
            // Two nodes, each with its Ed25519 and its P-256 certificate.
            assert_eq!(crl.iter_revoked_certificates().count(), 4);
            assert_eq!(crl.crl_number().map(|n| n.to_string()), Some("4".into()));
        }
    }

    #[test]
    fn the_old_layout_still_works_but_init_never_writes_it() {
        let (_tmp, pki) = region(&["a"]);
        // A region made by an older version: the CA key among the node files.
        for f in [CA_KEY, CRL] {
            fs::rename(pki.ca.join(f), pki.nodes.join(f)).unwrap();
        }
        fs::remove_dir_all(&pki.ca).unwrap();
        assert!(pki.legacy_ca_key().is_some());
        issue(&pki.nodes, "b").unwrap();
        revoke(&pki.nodes, "a").unwrap();
        assert!(!pki.ca.exists(), "nothing is written to the CA directory");
        let der = read_crl_der(&pki.nodes.join(CRL)).unwrap();
        let (_, crl) = x509_parser::parse_x509_crl(&der).unwrap();
        assert_eq!(crl.iter_revoked_certificates().count(), 2);
        let err = init(&pki.nodes, "t", "hub", &[]).unwrap_err();
        assert!(matches!(err, Error::CaExists(_)), "{err}");
    }

    #[test]
    fn another_regions_ca_directory_is_refused() {
        let (_tmp, pki) = region(&["a"]);
        let (_tmp2, other) = region(&[]);
        let mixed = Pki::new(&pki.nodes, &other.ca);
        let err = issue_in(&mixed, "b", &IssueOptions::default()).unwrap_err();
        assert!(matches!(err, Error::CaMismatch { .. }), "{err}");
        let err = revoke_in(
            &Pki::new(&pki.nodes, &pki.ca.with_file_name("none")),
            "a",
            &Which::All,
        )
        .unwrap_err();
        assert!(matches!(err, Error::NoCa(_)), "{err}");
    }

    #[test]
    fn an_interrupted_renewal_is_finished_or_undone() {
        let (_tmp, pki) = region(&["a"]);
        let (cert, key) = node_paths(&pki.nodes, "a");
        let before = fs::read(&cert).unwrap();
        // Staging stopped before the certificate: undone.
        let steps = renewal_steps(&pki.nodes, "a");
        fs::write(&steps[0].0, b"half").unwrap();
        assert!(!finish_renewal(&pki.nodes, "a").unwrap());
        assert!(!steps[0].0.exists());
        assert_eq!(fs::read(&cert).unwrap(), before);
        // Stopped after the key's rename: the next renew finishes it.
        let renewed = renew(&pki, "a", &IssueOptions::default()).unwrap();
        let (new_cert, new_key) = (fs::read(&cert).unwrap(), fs::read(&key).unwrap());
        fs::write(&steps[3].0, &new_cert).unwrap();
        fs::write(&cert, &before).unwrap();
        assert!(matches!(
            Identity::load(&cert, &key),
            Err(LoadError::KeyMismatch { .. })
        ));
        let resumed = renew(&pki, "a", &IssueOptions::default()).unwrap();
        assert!(resumed.resumed);
        assert_eq!(resumed.new_serial, renewed.new_serial);
        assert_eq!(fs::read(&cert).unwrap(), new_cert);
        assert_eq!(fs::read(&key).unwrap(), new_key);
        Identity::load(&cert, &key).unwrap();
        assert!(steps.iter().all(|(staged, _)| !staged.exists()));
    }

    #[test]
    fn serials_parse_as_they_print() {
        let s = [0x01, 0xab, 0xcd];
        assert_eq!(serial_hex(&s), "01abcd");
        for text in [
            "01abcd",
            "1ABCD",
            "01:ab:cd",
            "0x01abcd",
            "serial=01ABCD",
            "00:01:ab:cd",
        ] {
            assert_eq!(parse_serial(text).unwrap(), s, "{text}");
        }
        for bad in ["", "xyz", "0x", "01 ab"] {
            assert!(parse_serial(bad).is_err(), "{bad:?}");
        }
    }
}
