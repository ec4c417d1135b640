//! The layout of a region's PKI on disk, as `zhibao certs` writes it and
//! nodes, clients and tests read it.
//!
//! Two directories:
//! - the **node directory** (`certs/`): what nodes are given — the CA
//!   certificate [`CA_CERT`], a copy of the CRL [`CRL`] (kept in step on
//!   every CRL change), and each node's certificate and key
//!   ([`node_paths`]) with its P-256 companion ([`compat_paths`]). It never
//!   holds the CA key;
//! - the **CA directory** (by default the sibling `<dir>-ca`, see
//!   [`default_ca_dir`]): the CA key [`CA_KEY`] (mode 0600), the CA
//!   certificate and the authoritative CRL. It never goes to a node.
//!
//! One node needs exactly [`node_bundle_names`] from the node directory.
//! A directory written by an older `zhibao certs init` keeps `ca.key` in the
//! node directory; the tools still read it there, but a node must not be
//! given such a directory.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// File name of the region CA certificate (in both directories).
pub const CA_CERT: &str = "ca.pem";
/// File name of the region CA key, in the CA directory only.
pub const CA_KEY: &str = "ca.key";
/// File name of the region CRL: authoritative in the CA directory, a copy
/// in the node directory.
pub const CRL: &str = "crl.pem";
/// Appended to a node certificate's file name for the certificates
/// renewals replaced that may still be valid (`x.pem.old`, PEM, newest
/// first), kept so that they can be revoked later.
pub const OLD_SUFFIX: &str = ".old";

/// The CA directory that goes with the node directory `dir` when none is
/// given: its sibling `<dir>-ca` (`certs` → `certs-ca`, `/etc/zhibao/pki`
/// → `/etc/zhibao/pki-ca`).
///
/// A `dir` with no last component of its own (`.`, `..`) is resolved
/// first; the root directory gives `/zhibao-ca`.
pub fn default_ca_dir(dir: &Path) -> PathBuf {
    let sibling = |p: &Path| {
        p.file_name().map(|name| {
            let mut name = name.to_os_string();
            name.push("-ca");
            p.with_file_name(name)
        })
    };
    sibling(dir)
        .or_else(|| std::fs::canonicalize(dir).ok().and_then(|p| sibling(&p)))
        .unwrap_or_else(|| PathBuf::from("/zhibao-ca"))
}

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

/// Where renewals keep the certificates they replaced: `path` with
/// [`OLD_SUFFIX`] appended (`x.pem` → `x.pem.old`, `x.p256.pem` →
/// `x.p256.pem.old`).
pub fn old_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(OLD_SUFFIX);
    PathBuf::from(name)
}

/// The names of the files one node needs from the node directory, and
/// nothing else: the CA certificate, the CRL, its certificate and key, and
/// its P-256 companion pair (`zhibao certs bundle` copies these).
pub fn node_bundle_names(node: &str) -> [String; 6] {
    [
        CA_CERT.to_string(),
        CRL.to_string(),
        format!("{node}.pem"),
        format!("{node}.key"),
        format!("{node}.p256.pem"),
        format!("{node}.p256.key"),
    ]
}

/// `der` as PEM with `label` (`X509 CRL`, say): base64 in 64-column lines.
pub fn pem(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::with_capacity(der.len().div_ceil(3) * 4);
    for group in der.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= group.len() {
                let six = (n >> (18 - 6 * i)) & 0x3f;
                b64.push(char::from(ALPHABET[six as usize]));
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Writes `data` to `path` atomically — a temporary file with exactly
/// `mode`, fsync, rename, directory fsync — so a crash never leaves half a
/// key, certificate or CRL where a node reads it.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    // The umask may have narrowed the mode; make it exactly what was asked.
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    f.write_all(data)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    // The rename itself must reach the disk too.
    if let Some(d) = path.parent() {
        sync_dir(d);
    }
    Ok(())
}

/// Makes the renames in `dir` durable (best effort).
pub fn sync_dir(dir: &Path) {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trips_through_the_pem_reader() {
        use rustls_pki_types::pem::PemObject;
        for der in [
            vec![],
            vec![1],
            vec![1, 2],
            vec![1, 2, 3],
            (0..=255).collect(),
        ] {
            let text = pem("X509 CRL", &der);
            let back =
                rustls_pki_types::CertificateRevocationListDer::from_pem_slice(text.as_bytes());
            if der.is_empty() {
                continue;
            }
            assert_eq!(back.unwrap().as_ref(), der.as_slice(), "{text}");
        }
        assert_eq!(
            pem("X", b"Man"),
            "-----BEGIN X-----\nTWFu\n-----END X-----\n"
        );
    }

    #[test]
    fn the_ca_directory_is_the_sibling() {
        assert_eq!(default_ca_dir(Path::new("certs")), Path::new("certs-ca"));
        assert_eq!(default_ca_dir(Path::new("certs/")), Path::new("certs-ca"));
        assert_eq!(
            default_ca_dir(Path::new("/etc/zhibao/pki")),
            Path::new("/etc/zhibao/pki-ca")
        );
        assert_eq!(default_ca_dir(Path::new("/")), Path::new("/zhibao-ca"));
        let here = std::fs::canonicalize(".").unwrap();
        assert_eq!(
            default_ca_dir(Path::new(".")),
            here.with_file_name(format!(
                "{}-ca",
                here.file_name().unwrap().to_string_lossy()
            ))
        );
        assert_eq!(
            old_path(Path::new("d/x.p256.pem")),
            Path::new("d/x.p256.pem.old")
        );
    }
}
