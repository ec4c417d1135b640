//! Unit tests of sealing and opening reports, with a fresh region PKI.

use std::time::SystemTime;

use super::*;
use crate::trust::{Identity, Trust};

struct Region {
    _dir: tempfile::TempDir,
    trust: Trust,
    county: Identity,
}

fn region() -> Region {
    let dir = tempfile::tempdir().unwrap();
    crate::pki::init(dir.path(), "test", "hub", &["county-a".into()]).unwrap();
    let (c, k) = crate::trust::node_paths(dir.path(), "county-a");
    Region {
        trust: Trust::load(&dir.path().join(crate::trust::CA_CERT), None).unwrap(),
        county: Identity::load(&c, &k).unwrap(),
        _dir: dir,
    }
}

fn draft(class: Class) -> Draft {
    Draft::new(
        class,
        "flood".into(),
        b"two villages cut off".to_vec(),
        1_000,
        61_000,
    )
}

#[test]
fn a_sealed_report_opens_as_what_was_sealed() {
    let r = region();
    let (signed, sealed) = seal(draft(Class::Emergency), &r.county);
    let opened = open(&signed, &r.trust, &Limits::default(), SystemTime::now()).unwrap();
    assert_eq!(opened.id(), sealed.id());
    assert_eq!(opened.class(), Class::Emergency);
    assert_eq!(opened.holder(), "county-a");
    assert_eq!(opened.report().origin, "county-a");
    assert_eq!(opened.sha256(), &sha256(&signed.report));
    assert_eq!(opened.report(), sealed.report());
}
