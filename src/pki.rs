//! `zhibao certs`: making the region's PKI on disk — one CA, one certificate
//! per node, a CRL.
//!
//! The files follow [`crate::trust`]'s rules: every node certificate carries
//! its node id as a URI SAN (`urn:zhibao:node:<id>`), which is the only place
//! a peer's identity is ever taken from, in the directory layout of
//! [`crate::trust::files`]. Keys are Ed25519 and written with mode 0600;
//! every file is written to a temporary name and renamed into place so a
//! crash never leaves half a key. A running node never calls this module.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevocationReason, RevokedCertParams, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use crate::trust::{
    BadNodeId, CA_CERT, CA_KEY, CRL, NODE_URI_PREFIX, compat_paths, node_paths, validate_node_id,
};

/// Errors from certificate management.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `init` found a CA already in the directory.
    #[error("a CA already exists at {0}; refusing to overwrite it")]
    CaExists(PathBuf),
    /// `issue` found a certificate for the node already.
    #[error(
        "a certificate for node {0:?} already exists at {1}; revoke it and remove the files first"
    )]
    NodeExists(String, PathBuf),
    /// No CA in the directory.
    #[error("no CA found at {0}; run `zhibao certs init` first")]
    NoCa(PathBuf),
    /// No certificate for the node.
    #[error("no certificate for node {0:?} at {1}")]
    NoNode(String, PathBuf),
    /// The node id is not usable as an identity and DNS name.
    #[error(transparent)]
    BadNodeId(#[from] BadNodeId),
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
            extra_names: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
        }
    }
}

/// Creates a region CA and certificates for `hub` and every node in `nodes`.
///
/// # Errors
/// Refuses with [`Error::CaExists`] if `dir` already holds a CA.
pub fn init(dir: &Path, region: &str, hub: &str, nodes: &[String]) -> Result<(), Error> {
    validate_node_id(hub)?;
    for n in nodes {
        validate_node_id(n)?;
    }
    let ca_cert = dir.join(CA_CERT);
    let ca_key = dir.join(CA_KEY);
    if ca_cert.exists() || ca_key.exists() {
        return Err(Error::CaExists(ca_cert));
    }
    fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;

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
    write_atomic(&ca_key, key_pem(&key)?.as_bytes(), 0o600)?;
    write_atomic(&ca_cert, cert.pem().as_bytes(), 0o644)?;
    let issuer = Issuer::new(params, key);
    write_crl(dir, &issuer, Vec::new(), 1)?;

    for node in std::iter::once(hub.to_string()).chain(nodes.iter().cloned()) {
        issue_with(dir, &node, &IssueOptions::default())?;
    }
    Ok(())
}

fn load_issuer(dir: &Path) -> Result<Issuer<'static, KeyPair>, Error> {
    let ca_cert = dir.join(CA_CERT);
    let ca_key = dir.join(CA_KEY);
    if !ca_cert.exists() || !ca_key.exists() {
        return Err(Error::NoCa(ca_cert));
    }
    let key_pem = read_string(&ca_key)?;
    let key = KeyPair::from_pem(&key_pem).map_err(|_| Error::BadPem(ca_key.clone()))?;
    let cert_pem = read_string(&ca_cert)?;
    Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|_| Error::BadPem(ca_cert))
}

/// Issues a certificate for `node` with default options.
pub fn issue(dir: &Path, node: &str) -> Result<(), Error> {
    issue_with(dir, node, &IssueOptions::default())
}

/// Issues a certificate for `node`, signed by the CA in `dir`.
///
/// # Errors
/// Refuses with [`Error::NodeExists`] rather than replace a live identity.
pub fn issue_with(dir: &Path, node: &str, opts: &IssueOptions) -> Result<(), Error> {
    validate_node_id(node)?;
    let issuer = load_issuer(dir)?;
    let (cert_path, key_path) = node_paths(dir, node);
    if cert_path.exists() || key_path.exists() {
        return Err(Error::NodeExists(node.to_string(), cert_path));
    }
    let params = node_params(node, opts)?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
    let cert = params.signed_by(&key, &issuer)?;
    let mut compat_params = params;
    compat_params.serial_number = Some(random_serial());
    let compat_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let compat_cert = compat_params.signed_by(&compat_key, &issuer)?;
    let (compat_cert_path, compat_key_path) = compat_paths(&cert_path);
    write_atomic(
        &compat_key_path,
        compat_key.serialize_pem().as_bytes(),
        0o600,
    )?;
    write_atomic(&compat_cert_path, compat_cert.pem().as_bytes(), 0o644)?;
    // The Ed25519 pair last: its presence is what marks the node as issued.
    write_atomic(&key_path, key_pem(&key)?.as_bytes(), 0o600)?;
    write_atomic(&cert_path, cert.pem().as_bytes(), 0o644)?;
    Ok(())
}

fn node_params(node: &str, opts: &IssueOptions) -> Result<CertificateParams, Error> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, node);
    dn.push(DnType::OrganizationName, "zhibao");
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
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

/// Adds `node`'s certificate to the region CRL (creating it if needed).
///
/// Revoking twice is harmless; the CRL number goes up each time.
pub fn revoke(dir: &Path, node: &str) -> Result<(), Error> {
    validate_node_id(node)?;
    let issuer = load_issuer(dir)?;
    let (cert_path, _) = node_paths(dir, node);
    if !cert_path.exists() {
        return Err(Error::NoNode(node.to_string(), cert_path));
    }
    let mut serials = Vec::new();
    let (compat_cert, _) = compat_paths(&cert_path);
    for path in [&cert_path, &compat_cert] {
        if path == &compat_cert && !path.exists() {
            continue;
        }
        let der = read_cert_der(path)?;
        let (_, cert) =
            x509_parser::parse_x509_certificate(&der).map_err(|_| Error::BadPem(path.clone()))?;
        serials.push(cert.raw_serial().to_vec());
    }

    let crl_path = dir.join(CRL);
    let (mut revoked, number) = if crl_path.exists() {
        let crl_der = read_crl_der(&crl_path)?;
        let (_, crl) =
            x509_parser::parse_x509_crl(&crl_der).map_err(|_| Error::BadPem(crl_path.clone()))?;
        let list: Vec<RevokedCertParams> = crl
            .iter_revoked_certificates()
            .map(|r| RevokedCertParams {
                serial_number: SerialNumber::from_slice(r.raw_serial()),
                revocation_time: OffsetDateTime::from_unix_timestamp(r.revocation_date.timestamp())
                    .unwrap_or_else(|_| OffsetDateTime::now_utc()),
                reason_code: Some(RevocationReason::Unspecified),
                invalidity_date: None,
            })
            .collect();
        let number = crl
            .crl_number()
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(1);
        (list, number + 1)
    } else {
        (Vec::new(), 1)
    };
    for serial in serials {
        if !revoked
            .iter()
            .any(|r| r.serial_number.as_ref() == serial.as_slice())
        {
            revoked.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&serial),
                revocation_time: OffsetDateTime::now_utc(),
                reason_code: Some(RevocationReason::CessationOfOperation),
                invalidity_date: None,
            });
        }
    }
    write_crl(dir, &issuer, revoked, number)
}

fn write_crl(
    dir: &Path,
    issuer: &Issuer<'_, KeyPair>,
    revoked_certs: Vec<RevokedCertParams>,
    number: u64,
) -> Result<(), Error> {
    let now = OffsetDateTime::now_utc();
    let params = CertificateRevocationListParams {
        this_update: now - Duration::minutes(5),
        next_update: now + Duration::days(365),
        crl_number: SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let crl = params.signed_by(issuer)?;
    write_atomic(&dir.join(CRL), crl.pem()?.as_bytes(), 0o644)
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
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io)?;
    // The umask may have narrowed the mode; make it exactly what was asked.
    f.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io)?;
    f.write_all(data).map_err(io)?;
    f.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)?;
    // The rename itself must reach the disk too.
    if let Some(d) = path.parent().and_then(|p| fs::File::open(p).ok()) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_writes_keys_0600_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), "test", "hub", &["county-a".into()]).unwrap();
        for f in ["ca.key", "hub.key", "county-a.key"] {
            let mode = fs::metadata(dir.path().join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        assert!(dir.path().join(CRL).exists());
        let err = init(dir.path(), "test", "hub", &[]).unwrap_err();
        assert!(matches!(err, Error::CaExists(_)), "{err}");
    }

    #[test]
    fn keys_are_pkcs8_v1_and_load_back() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), "test", "hub", &[]).unwrap();
        let text = fs::read_to_string(dir.path().join("hub.key")).unwrap();
        let der = {
            use rustls_pki_types::pem::PemObject;
            rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(text.as_bytes())
                .unwrap()
                .secret_pkcs8_der()
                .to_vec()
        };
        assert_eq!(der.len(), 48);
        assert_eq!(der[4], 0x00, "version 0 (v1)");
        let (c, k) = node_paths(dir.path(), "hub");
        crate::trust::Identity::load(&c, &k).unwrap();
        issue(dir.path(), "n1").unwrap(); // the CA key loads back too
    }

    #[test]
    fn revoke_lists_the_serial_and_keeps_earlier_ones() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), "test", "hub", &["a".into(), "b".into()]).unwrap();
        revoke(dir.path(), "a").unwrap();
        revoke(dir.path(), "b").unwrap();
        revoke(dir.path(), "b").unwrap();
        let der = read_crl_der(&dir.path().join(CRL)).unwrap();
        let (_, crl) = x509_parser::parse_x509_crl(&der).unwrap();
        // Two nodes, each with its Ed25519 and its P-256 certificate.
        assert_eq!(crl.iter_revoked_certificates().count(), 4);
        assert_eq!(crl.crl_number().map(|n| n.to_string()), Some("4".into()));
    }
}
