//! This node's own certificate and Ed25519 key.
//!
//! The same key signs the TLS handshake, the reports this node originates,
//! the hop records it countersigns as a relay and the receipts it gives.

use std::fmt;
use std::path::{Path, PathBuf};

use ring::signature::{Ed25519KeyPair, KeyPair as _};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use super::{compat_paths, node_id_of};

/// Why certificates, keys or trust material could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file does not hold the PEM object it should (or cannot be read).
    #[error("{path}: no PEM {what}: {source}")]
    Pem {
        /// The file concerned.
        path: PathBuf,
        /// What it should hold.
        what: &'static str,
        /// Why it was not found.
        source: rustls_pki_types::pem::Error,
    },
    /// The key is not in PKCS#8 form.
    #[error("{0}: key is not PKCS#8")]
    NotPkcs8(PathBuf),
    /// The key is not an Ed25519 key ring accepts.
    #[error("{path}: not an Ed25519 key: {reason}")]
    NotEd25519 {
        /// The key file.
        path: PathBuf,
        /// ring's reason.
        reason: ring::error::KeyRejected,
    },
    /// The key does not belong to the certificate.
    #[error("{key}: key does not match {cert}")]
    KeyMismatch {
        /// The key file.
        key: PathBuf,
        /// The certificate file.
        cert: PathBuf,
    },
    /// The certificate does not name exactly one node.
    #[error("{0}: certificate names no node (no urn:zhibao:node:<id> URI SAN)")]
    NoNodeId(PathBuf),
    /// The P-256 companion certificate names another node.
    #[error("{path}: does not name node {node:?}")]
    CompanionMismatch {
        /// The companion certificate file.
        path: PathBuf,
        /// The node the main certificate names.
        node: String,
    },
    /// The CA certificate cannot be a trust anchor.
    #[error("{path}: not a usable CA certificate: {source}")]
    BadCa {
        /// The CA file.
        path: PathBuf,
        /// webpki's reason.
        source: webpki::Error,
    },
    /// A configured file does not exist.
    #[error("{path}: the {what} file is configured but does not exist")]
    Missing {
        /// The file.
        path: PathBuf,
        /// What it should hold.
        what: &'static str,
    },
    /// The CRL is not one the region CA issued.
    #[error("{path}: not a usable CRL: {why}")]
    BadCrl {
        /// The CRL file.
        path: PathBuf,
        /// What is wrong with it.
        why: super::crl::CrlError,
    },
}

impl LoadError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            Self::Pem { path, .. }
            | Self::NotEd25519 { path, .. }
            | Self::CompanionMismatch { path, .. }
            | Self::BadCa { path, .. }
            | Self::Missing { path, .. }
            | Self::BadCrl { path, .. } => path,
            Self::NotPkcs8(path) | Self::NoNodeId(path) => path,
            Self::KeyMismatch { key, .. } => key,
        }
    }
}

/// Reads the first certificate in a PEM file.
pub(super) fn read_cert(path: &Path) -> Result<CertificateDer<'static>, LoadError> {
    CertificateDer::from_pem_file(path).map_err(|source| LoadError::Pem {
        path: path.to_path_buf(),
        what: "certificate",
        source,
    })
}

/// Reads the CRL in a PEM file.
pub(super) fn read_crl(path: &Path) -> Result<CertificateRevocationListDer<'static>, LoadError> {
    CertificateRevocationListDer::from_pem_file(path).map_err(|source| LoadError::Pem {
        path: path.to_path_buf(),
        what: "CRL",
        source,
    })
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, LoadError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| LoadError::Pem {
        path: path.to_path_buf(),
        what: "private key",
        source,
    })
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
    /// Loads a node certificate and its Ed25519 key (PEM, PKCS#8), and the
    /// P-256 companion next to it if there is one.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, LoadError> {
        let cert = read_cert(cert_path)?;
        let key = read_key(key_path)?;
        let PrivateKeyDer::Pkcs8(pkcs8) = &key else {
            return Err(LoadError::NotPkcs8(key_path.to_path_buf()));
        };
        let signer = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8.secret_pkcs8_der()).map_err(
            |reason| LoadError::NotEd25519 {
                path: key_path.to_path_buf(),
                reason,
            },
        )?;
        let node_id = node_id_of(&cert).ok_or_else(|| LoadError::NoNodeId(cert_path.into()))?;
        let spki_matches = x509_parser::parse_x509_certificate(&cert).is_ok_and(|(_, c)| {
            c.public_key().subject_public_key.data.as_ref() == signer.public_key().as_ref()
        });
        if !spki_matches {
            return Err(LoadError::KeyMismatch {
                key: key_path.to_path_buf(),
                cert: cert_path.to_path_buf(),
            });
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
    /// one (see [`compat_paths`]).
    fn load_compat(
        cert_path: &Path,
        node_id: &str,
    ) -> Result<Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>, LoadError> {
        let (c, k) = compat_paths(cert_path);
        if !c.exists() || !k.exists() {
            return Ok(None);
        }
        let cert = read_cert(&c)?;
        let key = read_key(&k)?;
        if node_id_of(&cert).as_deref() != Some(node_id) {
            return Err(LoadError::CompanionMismatch {
                path: c,
                node: node_id.to_string(),
            });
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
