//! Regenerates the fixture PKI in `fuzz/pki/` with `zhibao::pki` itself:
//!
//! ```text
//! cd fuzz && cargo run --example make_pki && cargo run --example make_seeds
//! ```
//!
//! Only needed when `zhibao::pki` changes what a certificate looks like (the
//! targets check at start-up that the fixture still opens; they panic with a
//! message pointing here if it does not). The committed seeds are signed with
//! these keys, so regenerate them right after.

use std::fs;
use std::path::Path;

use time::{Duration, OffsetDateTime};
use zhibao::pki::{self, IssueOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `cargo run --example make_pki -- DIR` writes elsewhere (to try it).
    let out = std::env::args_os().nth(1).map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("pki"),
        Into::into,
    );
    let scratch = std::env::temp_dir().join(format!("zhibao-fuzz-pki-{}", std::process::id()));
    // The region's node directory; `zhibao::pki` keeps the CA key apart,
    // in a sibling directory, which is dropped with the rest.
    let work = scratch.join("region");
    let foreign = scratch.join("foreign");
    let _ = fs::remove_dir_all(&scratch);
    let now = OffsetDateTime::now_utc();

    pki::init(
        &work,
        "fuzz",
        "hub",
        &[
            "county-a".into(),
            "county-b".into(),
            "relay-1".into(),
            "relay-2".into(),
            "revoked".into(),
        ],
    )?;
    pki::revoke(&work, "revoked")?;
    let no_san = IssueOptions {
        extra_names: Vec::new(),
        ..IssueOptions::default()
    };
    pki::issue_with(
        &work,
        "expired",
        &IssueOptions {
            not_before: now - Duration::days(2),
            not_after: now - Duration::days(1),
            ..no_san.clone()
        },
    )?;
    pki::issue_with(
        &work,
        "not-yet-valid",
        &IssueOptions {
            not_before: now + Duration::days(1),
            ..no_san.clone()
        },
    )?;
    pki::issue_with(
        &work,
        "no-node-id",
        &IssueOptions {
            with_node_id: false,
            ..no_san
        },
    )?;
    // A node of another region: a CA nobody here trusts.
    pki::init(&foreign, "elsewhere", "foreign", &[])?;

    fs::create_dir_all(&out)?;
    for old in fs::read_dir(&out)? {
        let old = old?.path();
        if matches!(
            old.extension().and_then(|e| e.to_str()),
            Some("pem" | "key" | "txt")
        ) {
            fs::remove_file(old)?;
        }
    }
    let copy = |from: &Path, name: &str| fs::copy(from, out.join(name)).map(|_| ());
    copy(&work.join("ca.pem"), "ca.pem")?;
    copy(&work.join("crl.pem"), "crl.pem")?;
    for node in [
        "hub",
        "county-a",
        "county-b",
        "relay-1",
        "relay-2",
        "revoked",
        "expired",
        "not-yet-valid",
        "no-node-id",
    ] {
        copy(&work.join(format!("{node}.pem")), &format!("{node}.pem"))?;
        copy(&work.join(format!("{node}.key")), &format!("{node}.key"))?;
    }
    // The hub's ECDSA P-256 companion: a valid region certificate whose key
    // cannot make the Ed25519 signatures that messages carry.
    copy(&work.join("hub.p256.pem"), "hub-p256.pem")?;
    copy(&foreign.join("foreign.pem"), "foreign.pem")?;
    copy(&foreign.join("foreign.key"), "foreign.key")?;
    // The fixed "now" every target verifies at: a minute after issuing, well
    // inside every good certificate's validity (a year) and the CRL's.
    fs::write(
        out.join("now.txt"),
        format!("{}\n", now.unix_timestamp() + 60),
    )?;
    fs::remove_dir_all(&scratch)?;
    println!("wrote {}", out.display());
    Ok(())
}
