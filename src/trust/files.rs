//! The layout of a PKI directory, as `zhibao certs` writes it and nodes,
//! clients and tests read it.

use std::path::{Path, PathBuf};

/// File name of the region CA certificate inside a PKI directory.
pub const CA_CERT: &str = "ca.pem";
/// File name of the region CA key inside a PKI directory.
pub const CA_KEY: &str = "ca.key";
/// File name of the region CRL inside a PKI directory.
pub const CRL: &str = "crl.pem";

/// Paths of one node's certificate and key in a PKI directory.
pub fn node_paths(dir: &Path, node: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{node}.pem")),
        dir.join(format!("{node}.key")),
    )
}

/// Paths of the ECDSA P-256 companion of a node certificate at `cert`
/// (`x.pem` → `x.p256.pem`, `x.p256.key`).
///
/// The node's identity and signing key is Ed25519. Some TLS stacks
/// (BoringSSL, and so gRPC's C core) do not accept Ed25519 signatures in a
/// TLS handshake; for them a relay listener presents this companion
/// certificate — same CA, same names, same node id — instead.
pub fn compat_paths(cert: &Path) -> (PathBuf, PathBuf) {
    (
        cert.with_extension("p256.pem"),
        cert.with_extension("p256.key"),
    )
}
