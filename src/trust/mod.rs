//! Who is who in a region, and whom a node trusts.
//!
//! - [`node_id`]: the one rule that names a node: the `urn:zhibao:node:<id>`
//!   URI SAN of its certificate, and which ids are valid;
//! - [`files`]: where a PKI directory keeps the CA, the CRL and each node's
//!   certificate and key;
//! - [`identity`]: this node's own certificate and Ed25519 key, which sign
//!   reports, hop records and receipts; [`keys`] keeps them current when
//!   they are renewed on disk;
//! - [`crl`]: the region CRL — signed by the CA or refused, numbered, and
//!   fresh, in grace or stale;
//! - [`anchors`]: the region CA and its CRL, reloadable, which verify a
//!   certificate handed over inside a message (not only on a TLS
//!   connection) and a signature made with it;
//! - [`signature`]: the one rule Ed25519 signatures are checked by, alone
//!   or batched across connections;
//! - [`usage`]: the key usage a certificate must allow for its key to sign
//!   anything here.
//!
//! Everything that runs depends on these rules; `zhibao certs` ([`crate::pki`])
//! writes files that follow them.

pub mod anchors;
pub mod crl;
pub mod files;
pub mod identity;
pub mod keys;
pub mod node_id;
pub mod signature;
pub mod usage;

pub use anchors::{CrlInstallError, Reload, Signer, SignerError, Trust, TrustSnapshot};
pub use crl::{CrlInfo, Freshness};
pub use files::{CA_CERT, CA_KEY, CRL, compat_paths, node_paths};
pub use identity::{Identity, LoadError};
pub use keys::{Keys, KeysReload};
pub use node_id::{BadNodeId, NODE_URI_PREFIX, node_id_of, validate_node_id};
pub use usage::may_sign;

/// What a statement's signature covers: a context line naming its kind
/// (`zhibao.v1.Disposition\n`, …), then its bytes — so that a statement of
/// one kind never verifies as another signed by the same key.
pub fn in_context(context: &[u8], bytes: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(context.len() + bytes.len());
    msg.extend_from_slice(context);
    msg.extend_from_slice(bytes);
    msg
}
