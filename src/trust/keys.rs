//! This node's identity, kept current: a certificate and key renewed on
//! disk (`zhibao certs renew`) are picked up without a restart.
//!
//! The new pair is taken only if it loads, names the same node and passes
//! the region's CA and CRL; otherwise the current one stays in use and the
//! caller raises an alarm. Every swap bumps a generation that listeners
//! (which present the certificate) and forwarders (which log in with it)
//! watch. What was signed under the old certificate stays verifiable: it
//! carries that certificate, valid until it expires or is revoked.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use tokio::sync::watch;

use super::{Identity, LoadError, SignerError, Trust};

/// Why a renewed certificate and key were not taken.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// They do not load (or do not match each other yet: a renewal half
    /// way through its renames is picked up at its next change).
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The new certificate names another node.
    #[error("{path}: the new certificate names node {found:?}, not {expected:?}")]
    OtherNode {
        /// The certificate file.
        path: PathBuf,
        /// The node it names.
        found: String,
        /// This node.
        expected: String,
    },
    /// The new certificate does not pass the region's CA and CRL.
    #[error("{path}: the new certificate is not valid for this region: {source}")]
    NotTrusted {
        /// The certificate file.
        path: PathBuf,
        /// Why.
        source: SignerError,
    },
}

/// What a [`Keys::reload_if_changed`] did.
#[derive(Debug)]
pub enum KeysReload {
    /// Neither file changed.
    Unchanged,
    /// The renewed pair is in use.
    Reloaded,
    /// The files changed but cannot be used; the current pair stays.
    Failed(KeysError),
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// This node's identity, reloadable.
#[derive(Debug)]
pub struct Keys {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<Identity>>,
    stamps: RwLock<(Option<SystemTime>, Option<SystemTime>)>,
    generation: watch::Sender<u64>,
}

impl Keys {
    /// Keeps `identity`, loaded from `cert_path` and `key_path`, current.
    pub fn new(identity: Identity, cert_path: &Path, key_path: &Path) -> Self {
        Self {
            stamps: RwLock::new((mtime(cert_path), mtime(key_path))),
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            current: RwLock::new(Arc::new(identity)),
            generation: watch::channel(1).0,
        }
    }

    /// The identity in use now.
    pub fn current(&self) -> Arc<Identity> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Watches the identity: the value changes on every swap.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Loads the certificate and key again if either file changed, and
    /// swaps them in if they are good.
    pub fn reload_if_changed(&self, trust: &Trust) -> KeysReload {
        let stamps = (mtime(&self.cert_path), mtime(&self.key_path));
        if *self.stamps.read().unwrap_or_else(|e| e.into_inner()) == stamps {
            return KeysReload::Unchanged;
        }
        *self.stamps.write().unwrap_or_else(|e| e.into_inner()) = stamps;
        match self.load(trust) {
            Ok(identity) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(identity);
                self.generation.send_modify(|g| *g += 1);
                KeysReload::Reloaded
            }
            Err(e) => KeysReload::Failed(e),
        }
    }

    fn load(&self, trust: &Trust) -> Result<Identity, KeysError> {
        let identity = Identity::load(&self.cert_path, &self.key_path)?;
        let expected = self.current().node_id().to_string();
        if identity.node_id() != expected {
            return Err(KeysError::OtherNode {
                path: self.cert_path.clone(),
                found: identity.node_id().to_string(),
                expected,
            });
        }
        trust
            .check_cert(identity.cert(), SystemTime::now())
            .map_err(|source| KeysError::NotTrusted {
                path: self.cert_path.clone(),
                source,
            })?;
        Ok(identity)
    }
}
