//! `zhibao certs` as an operator uses it: the CA key kept apart from what
//! nodes get, one node's bundle, renewing a node's key without breaking what
//! it signed, revoking the old certificate, and re-signing the CRL.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use common::zhibao;
use zhibao::pki::{self, Pki};
use zhibao::trust::{CA_CERT, CA_KEY, CRL, Identity, SignerError, Trust, node_paths};

/// Runs `zhibao args` and returns its standard output; fails the test if
/// the command fails.
fn ok(args: &[&str]) -> String {
    let out = zhibao(args);
    assert!(
        out.status.success(),
        "zhibao {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `zhibao args`, which must fail; returns its standard error.
fn fails(args: &[&str]) -> String {
    let out = zhibao(args);
    assert!(!out.status.success(), "zhibao {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A region made with `certs init` in a temporary directory: `certs/` and
/// the default `certs-ca/` next to it.
struct Region {
    _tmp: tempfile::TempDir,
    pki: Pki,
}

impl Region {
    fn new(nodes: &str) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("certs");
        ok(&[
            "certs",
            "init",
            "--dir",
            s(&dir),
            "--hub",
            "hub",
            "--nodes",
            nodes,
        ]);
        Self {
            pki: Pki::at(&dir),
            _tmp: tmp,
        }
    }

    fn dir(&self) -> &str {
        s(&self.pki.nodes)
    }

    fn trust(&self) -> Trust {
        Trust::load(
            &self.pki.nodes.join(CA_CERT),
            Some(&self.pki.nodes.join(CRL)),
        )
        .unwrap()
    }

    fn identity(&self, node: &str) -> Identity {
        let (c, k) = node_paths(&self.pki.nodes, node);
        Identity::load(&c, &k).unwrap()
    }

    fn crl_number(&self, dir: &Path) -> zhibao::trust::CrlInfo {
        let ca = pki::read_cert_der(&self.pki.ca.join(CA_CERT)).unwrap();
        let crl = pki::read_crl_der(&dir.join(CRL)).unwrap();
        zhibao::trust::crl::check(&ca, &crl).unwrap()
    }
}

fn names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn pem_file(path: &Path) -> Vec<u8> {
    pki::read_cert_der(path).unwrap()
}

/// A report by `origin`, signed by `signer`.
fn signed_report(origin: &str, signer: &Identity) -> zhibao::proto::SignedReport {
    let report = zhibao::proto::Report {
        id: zhibao::envelope::new_item_id(),
        origin: origin.into(),
        priority: zhibao::class::Class::Emergency.to_proto() as i32,
        title: "flood".into(),
        body: b"the river road is under water".to_vec(),
        created_unix_ms: zhibao::clock::now_ms(),
        ..Default::default()
    };
    zhibao::envelope::sign(&report, signer)
}

fn open(
    signed: &zhibao::proto::SignedReport,
    trust: &Trust,
) -> Result<zhibao::envelope::Verified, zhibao::envelope::VerifyError> {
    zhibao::envelope::open(
        signed,
        trust,
        &zhibao::envelope::Limits::default(),
        SystemTime::now(),
    )
}

fn is_revoked(r: Result<String, SignerError>) -> bool {
    matches!(r, Err(SignerError::Certificate(webpki::Error::CertRevoked)))
}

#[test]
fn init_keeps_the_ca_key_out_of_the_node_directory() {
    let r = Region::new("county-a");
    assert_eq!(r.pki.ca, r.pki.nodes.with_file_name("certs-ca"));
    assert_eq!(
        names(&r.pki.nodes),
        set(&[
            "ca.pem",
            "crl.pem",
            "hub.pem",
            "hub.key",
            "hub.p256.pem",
            "hub.p256.key",
            "county-a.pem",
            "county-a.key",
            "county-a.p256.pem",
            "county-a.p256.key",
        ])
    );
    assert_eq!(names(&r.pki.ca), set(&["ca.key", "ca.pem", "crl.pem"]));
    assert_eq!(mode(&r.pki.ca.join(CA_KEY)), 0o600);
    assert_eq!(mode(&r.pki.ca), 0o700);
    assert_eq!(
        fs::read(r.pki.ca.join(CA_CERT)).unwrap(),
        fs::read(r.pki.nodes.join(CA_CERT)).unwrap()
    );
    assert_eq!(
        fs::read(r.pki.ca.join(CRL)).unwrap(),
        fs::read(r.pki.nodes.join(CRL)).unwrap()
    );

    // --ca-dir puts it anywhere else, and issue finds it there.
    let tmp = tempfile::tempdir().unwrap();
    let (dir, ca) = (tmp.path().join("nodes"), tmp.path().join("offline/ca"));
    ok(&[
        "certs",
        "init",
        "--dir",
        s(&dir),
        "--ca-dir",
        s(&ca),
        "--hub",
        "hub",
    ]);
    assert!(!dir.join(CA_KEY).exists());
    assert_eq!(mode(&ca.join(CA_KEY)), 0o600);
    assert!(!tmp.path().join("nodes-ca").exists());
    let err = fails(&["certs", "issue", "--dir", s(&dir), "--node", "c"]);
    assert!(err.contains("no CA found"), "{err}");
    ok(&[
        "certs",
        "issue",
        "--dir",
        s(&dir),
        "--ca-dir",
        s(&ca),
        "--node",
        "c",
    ]);
    assert!(dir.join("c.key").exists());
}

#[test]
fn init_refuses_to_overwrite_either_directory() {
    let r = Region::new("a");
    let before = |dir: &Path| fs::read(dir.join(CA_CERT)).unwrap();
    let (nodes_ca, ca_ca) = (before(&r.pki.nodes), before(&r.pki.ca));
    let tmp = tempfile::tempdir().unwrap();
    let elsewhere = tmp.path().join("x");
    for args in [
        // Both directories hold a CA.
        vec!["--dir", r.dir()],
        // The node directory does.
        vec!["--dir", r.dir(), "--ca-dir", s(&elsewhere)],
        // The CA directory does.
        vec!["--dir", s(&elsewhere), "--ca-dir", s(&r.pki.ca)],
    ] {
        let mut cmd = vec!["certs", "init", "--hub", "hub", "--nodes", "a"];
        cmd.extend(args);
        let err = fails(&cmd);
        assert!(err.contains("refusing to overwrite"), "{err}");
    }
    assert_eq!(before(&r.pki.nodes), nodes_ca);
    assert_eq!(before(&r.pki.ca), ca_ca);
    assert!(!elsewhere.exists());

    // The CA directory may not be the node directory, nor inside it.
    for ca in [elsewhere.clone(), elsewhere.join("ca")] {
        let err = fails(&[
            "certs",
            "init",
            "--dir",
            s(&elsewhere),
            "--ca-dir",
            s(&ca),
            "--hub",
            "hub",
        ]);
        assert!(err.contains("must be apart"), "{err}");
    }
    assert!(!elsewhere.exists());
}

#[test]
fn bundle_copies_exactly_one_nodes_files() {
    let r = Region::new("county-a,county-b");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("for-county-a");
    let printed = ok(&[
        "certs",
        "bundle",
        "--dir",
        r.dir(),
        "--node",
        "county-a",
        "--out",
        s(&out),
    ]);
    let expected = [
        "ca.pem",
        "crl.pem",
        "county-a.pem",
        "county-a.key",
        "county-a.p256.pem",
        "county-a.p256.key",
    ];
    assert_eq!(names(&out), set(&expected));
    assert_eq!(printed.lines().count(), expected.len(), "{printed}");
    for name in expected {
        assert!(printed.contains(s(&out.join(name))), "{printed}");
        assert_eq!(
            fs::read(out.join(name)).unwrap(),
            fs::read(r.pki.nodes.join(name)).unwrap(),
            "{name}"
        );
        let want = if name.ends_with(".key") { 0o600 } else { 0o644 };
        assert_eq!(mode(&out.join(name)), want, "{name}");
    }
    assert_eq!(mode(&out), 0o700);
    // What it holds is enough to be county-a.
    let id = Identity::load(&out.join("county-a.pem"), &out.join("county-a.key")).unwrap();
    assert_eq!(id.node_id(), "county-a");
    assert!(id.compat().is_some());

    // Never over an earlier bundle, and nothing written then.
    fs::remove_file(out.join("county-a.key")).unwrap();
    let err = fails(&[
        "certs",
        "bundle",
        "--dir",
        r.dir(),
        "--node",
        "county-a",
        "--out",
        s(&out),
    ]);
    assert!(err.contains("refusing to overwrite"), "{err}");
    assert!(!out.join("county-a.key").exists());
    // Into an existing directory that holds other things: only the six.
    let shared = tmp.path().join("shared");
    fs::create_dir(&shared).unwrap();
    fs::write(shared.join("node.toml"), "x").unwrap();
    ok(&[
        "certs",
        "bundle",
        "--dir",
        r.dir(),
        "--node",
        "county-b",
        "--out",
        s(&shared),
    ]);
    let mut want = set(&["node.toml"]);
    want.extend(expected.iter().map(|n| n.replace("county-a", "county-b")));
    assert_eq!(names(&shared), want);
    // No such node.
    let err = fails(&[
        "certs",
        "bundle",
        "--dir",
        r.dir(),
        "--node",
        "county-z",
        "--out",
        s(&tmp.path().join("z")),
    ]);
    assert!(err.contains("no certificate for node"), "{err}");
}

#[test]
fn renew_gives_a_new_key_for_the_same_node_and_the_old_one_keeps_verifying() {
    let r = Region::new("county-a");
    let (cert, key) = node_paths(&r.pki.nodes, "county-a");
    let old = r.identity("county-a");
    let old_p256 = pem_file(&cert.with_extension("p256.pem"));
    let old_serial = pki::serial_hex(&pki::read_serial(&cert).unwrap());
    let signed_before = signed_report("county-a", &old);
    let crl_before = r.crl_number(&r.pki.nodes).number;

    let printed = ok(&["certs", "renew", "--dir", r.dir(), "--node", "county-a"]);
    assert!(printed.contains(&old_serial), "{printed}");
    let new = r.identity("county-a");
    assert_eq!(new.node_id(), "county-a");
    assert_ne!(new.cert(), old.cert());
    assert_ne!(
        new.private_key().secret_der(),
        old.private_key().secret_der()
    );
    assert_ne!(pem_file(&cert.with_extension("p256.pem")), old_p256);
    assert!(printed.contains(&pki::serial_hex(&pki::read_serial(&cert).unwrap())));
    // The old certificate is kept, not revoked; the CRL did not change.
    assert_eq!(
        pem_file(&r.pki.nodes.join("county-a.pem.old")),
        old.cert().to_vec()
    );
    assert_eq!(
        pem_file(&r.pki.nodes.join("county-a.p256.pem.old")),
        old_p256
    );
    assert_eq!(r.crl_number(&r.pki.nodes).number, crl_before);
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&key.with_extension("p256.key")), 0o600);
    // No staged or temporary file is left behind.
    assert!(
        names(&r.pki.nodes)
            .iter()
            .all(|n| !n.ends_with(".new") && !n.ends_with(".tmp")),
        "{:?}",
        names(&r.pki.nodes)
    );

    // Old and new both verify; what the old one signed still opens.
    let trust = r.trust();
    let now = SystemTime::now();
    assert_eq!(trust.check_cert(old.cert(), now).unwrap(), "county-a");
    assert_eq!(trust.check_cert(new.cert(), now).unwrap(), "county-a");
    assert_eq!(trust.check_cert(&old_p256, now).unwrap(), "county-a");
    open(&signed_before, &trust).unwrap();
    open(&signed_report("county-a", &old), &trust).unwrap();
    open(&signed_report("county-a", &new), &trust).unwrap();

    // Revoking the old one leaves the new one.
    let printed = ok(&[
        "certs",
        "revoke",
        "--dir",
        r.dir(),
        "--node",
        "county-a",
        "--old",
    ]);
    assert!(printed.contains(&old_serial), "{printed}");
    let trust = r.trust();
    let now = SystemTime::now();
    assert!(is_revoked(trust.check_cert(old.cert(), now)));
    assert!(is_revoked(trust.check_cert(&old_p256, now)));
    assert_eq!(trust.check_cert(new.cert(), now).unwrap(), "county-a");
    let p256 = pem_file(&cert.with_extension("p256.pem"));
    assert_eq!(trust.check_cert(&p256, now).unwrap(), "county-a");
    assert!(open(&signed_before, &trust).is_err());
    open(&signed_report("county-a", &new), &trust).unwrap();
    // Both copies of the CRL say so, one number up.
    for dir in [&r.pki.ca, &r.pki.nodes] {
        assert_eq!(r.crl_number(dir).number, crl_before + 1);
    }
}

#[test]
fn revoke_by_serial_or_all_of_a_node() {
    let r = Region::new("county-a,county-b");
    let (cert, _) = node_paths(&r.pki.nodes, "county-a");
    let first = pem_file(&cert);
    let first_p256 = pem_file(&cert.with_extension("p256.pem"));
    let serial = pki::serial_hex(&pki::read_serial(&cert).unwrap());
    ok(&["certs", "renew", "--dir", r.dir(), "--node", "county-a"]);
    let second = pem_file(&cert);

    // By serial, in the form openssl prints it.
    let upper: Vec<String> = serial
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).to_uppercase())
        .collect();
    ok(&[
        "certs",
        "revoke",
        "--dir",
        r.dir(),
        "--node",
        "county-a",
        "--serial",
        &upper.join(":"),
    ]);
    let trust = r.trust();
    let now = SystemTime::now();
    assert!(is_revoked(trust.check_cert(&first, now)));
    assert!(is_revoked(trust.check_cert(&first_p256, now)));
    trust.check_cert(&second, now).unwrap();
    let err = fails(&[
        "certs",
        "revoke",
        "--dir",
        r.dir(),
        "--node",
        "county-a",
        "--serial",
        "xyz",
    ]);
    assert!(err.contains("not a certificate serial number"), "{err}");

    // A renewal, then revoking the node: every certificate it had goes.
    ok(&["certs", "renew", "--dir", r.dir(), "--node", "county-a"]);
    let third = pem_file(&cert);
    ok(&["certs", "revoke", "--dir", r.dir(), "--node", "county-a"]);
    let trust = r.trust();
    for c in [&first, &second, &third] {
        assert!(is_revoked(trust.check_cert(c, now)));
    }
    let other = r.identity("county-b");
    trust.check_cert(other.cert(), now).unwrap();

    // --old without a renewal, and renewing a node that has no files.
    let err = fails(&[
        "certs",
        "revoke",
        "--dir",
        r.dir(),
        "--node",
        "county-b",
        "--old",
    ]);
    assert!(err.contains("no previous certificate"), "{err}");
    let err = fails(&["certs", "renew", "--dir", r.dir(), "--node", "county-z"]);
    assert!(err.contains("no certificate for node"), "{err}");
}

#[test]
fn renewing_twice_keeps_track_of_every_old_certificate() {
    let r = Region::new("county-a");
    let (cert, _) = node_paths(&r.pki.nodes, "county-a");
    let old_file = r.pki.nodes.join("county-a.pem.old");
    let first = pem_file(&cert);
    ok(&["certs", "renew", "--dir", r.dir(), "--node", "county-a"]);
    let second = pem_file(&cert);
    ok(&["certs", "renew", "--dir", r.dir(), "--node", "county-a"]);
    let third = pem_file(&cert);
    // The last one replaced first; the one before is still listed.
    assert_eq!(pem_file(&old_file), second);
    let kept = fs::read_to_string(&old_file).unwrap();
    assert_eq!(kept.matches("BEGIN CERTIFICATE").count(), 2, "{kept}");
    let trust = r.trust();
    let now = SystemTime::now();
    for c in [&first, &second, &third] {
        trust.check_cert(c, now).unwrap();
    }
    ok(&[
        "certs",
        "revoke",
        "--dir",
        r.dir(),
        "--node",
        "county-a",
        "--old",
    ]);
    let trust = r.trust();
    assert!(is_revoked(trust.check_cert(&first, now)));
    assert!(is_revoked(trust.check_cert(&second, now)));
    trust.check_cert(&third, now).unwrap();
    // Revoked ones are dropped from the list at the next renewal.
    ok(&["certs", "renew", "--dir", r.dir(), "--node", "county-a"]);
    let kept = fs::read_to_string(&old_file).unwrap();
    assert_eq!(kept.matches("BEGIN CERTIFICATE").count(), 1, "{kept}");
    assert_eq!(pem_file(&old_file), third);
    let p256_kept = fs::read_to_string(r.pki.nodes.join("county-a.p256.pem.old")).unwrap();
    assert_eq!(p256_kept.matches("BEGIN CERTIFICATE").count(), 1);
}

#[test]
fn reissue_crl_raises_the_number_and_sets_next_update() {
    let r = Region::new("county-a");
    ok(&["certs", "revoke", "--dir", r.dir(), "--node", "county-a"]);
    let revoked = r.identity("county-a");
    let before = r.crl_number(&r.pki.nodes);
    assert_eq!(before, r.crl_number(&r.pki.ca));

    let next = time::OffsetDateTime::now_utc() + time::Duration::days(10);
    let number = pki::reissue_crl(&r.pki, next).unwrap();
    assert_eq!(number, before.number + 1);
    for dir in [&r.pki.ca, &r.pki.nodes] {
        let info = r.crl_number(dir);
        assert_eq!(info.number, number);
        assert_eq!(info.next_update, Some(next.unix_timestamp()));
        assert!(info.this_update <= time::OffsetDateTime::now_utc().unix_timestamp());
    }
    // The same entries.
    let now = SystemTime::now();
    assert!(is_revoked(r.trust().check_cert(revoked.cert(), now)));
    r.trust().check_cert(r.identity("hub").cert(), now).unwrap();

    // A CRL already past its nextUpdate (and the nodes' grace): stale.
    let past = time::OffsetDateTime::now_utc() - time::Duration::days(3);
    assert_eq!(pki::reissue_crl(&r.pki, past).unwrap(), number + 1);
    let info = r.crl_number(&r.pki.nodes);
    assert_eq!(info.next_update, Some(past.unix_timestamp()));
    assert!(info.this_update < past.unix_timestamp());
    assert!(matches!(
        r.trust().check_cert(r.identity("hub").cert(), now),
        Err(SignerError::StaleCrl { .. })
    ));

    // The command: fresh again, next number, both copies the same.
    let printed = ok(&["certs", "refresh-crl", "--dir", r.dir(), "--days", "7"]);
    assert!(
        printed.contains(&format!("number {}", number + 2)),
        "{printed}"
    );
    let info = r.crl_number(&r.pki.nodes);
    assert_eq!(info.number, number + 2);
    let in_7_days = (time::OffsetDateTime::now_utc() + time::Duration::days(7)).unix_timestamp();
    assert!((info.next_update.unwrap() - in_7_days).abs() < 60);
    assert_eq!(
        fs::read(r.pki.ca.join(CRL)).unwrap(),
        fs::read(r.pki.nodes.join(CRL)).unwrap()
    );
    r.trust().check_cert(r.identity("hub").cert(), now).unwrap();
    assert!(is_revoked(r.trust().check_cert(revoked.cert(), now)));
}

#[test]
fn the_crl_number_goes_up_from_the_higher_copy() {
    // The CA directory restored from an older backup: the node directory's
    // copy is ahead; the next CRL must still be ahead of it, and keep what
    // it lists.
    let r = Region::new("county-a,county-b");
    let stale_crl = fs::read(r.pki.ca.join(CRL)).unwrap();
    ok(&["certs", "revoke", "--dir", r.dir(), "--node", "county-a"]);
    ok(&["certs", "refresh-crl", "--dir", r.dir()]);
    let ahead = r.crl_number(&r.pki.nodes).number;
    fs::write(r.pki.ca.join(CRL), stale_crl).unwrap();
    ok(&["certs", "revoke", "--dir", r.dir(), "--node", "county-b"]);
    for dir in [&r.pki.ca, &r.pki.nodes] {
        assert_eq!(r.crl_number(dir).number, ahead + 1);
    }
    let trust = r.trust();
    let now = SystemTime::now();
    assert!(is_revoked(
        trust.check_cert(r.identity("county-a").cert(), now)
    ));
    assert!(is_revoked(
        trust.check_cert(r.identity("county-b").cert(), now)
    ));
}

#[test]
fn an_old_layout_directory_still_works_and_is_warned_about() {
    let r = Region::new("county-a");
    // What an older `certs init` wrote: the CA key among the node files.
    let legacy: PathBuf = r.pki.nodes.join(CA_KEY);
    fs::rename(r.pki.ca.join(CA_KEY), &legacy).unwrap();
    fs::rename(r.pki.ca.join(CRL), r.pki.nodes.join(CRL)).unwrap();
    fs::remove_dir_all(&r.pki.ca).unwrap();
    let out = zhibao(&["certs", "issue", "--dir", r.dir(), "--node", "county-b"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("old layout"), "{err}");
    ok(&["certs", "renew", "--dir", r.dir(), "--node", "county-a"]);
    ok(&[
        "certs",
        "revoke",
        "--dir",
        r.dir(),
        "--node",
        "county-a",
        "--old",
    ]);
    assert!(!r.pki.ca.exists());
    // A bundle from it still leaves the CA key behind.
    let tmp = tempfile::tempdir().unwrap();
    ok(&[
        "certs",
        "bundle",
        "--dir",
        r.dir(),
        "--node",
        "county-b",
        "--out",
        s(tmp.path()),
    ]);
    assert!(!tmp.path().join(CA_KEY).exists());
    assert_eq!(names(tmp.path()).len(), 6);
}
