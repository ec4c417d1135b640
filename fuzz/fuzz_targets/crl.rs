//! A CRL pushed down the tree (`ForwardResponse.crl`): any bytes through
//! `trust::crl::check` against the region CA (what a child checks before it
//! takes one), `Freshness::of` what it says, and `Trust::install_crl` on a
//! node's trust of its own (a copy of the fixture's CA and CRL in a
//! temporary directory). Nothing but the CRL the fixture CA signed may pass
//! the check, and nothing may replace it: it has the highest number there is.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use zhibao::trust::{Freshness, Trust, crl};
use zhibao_fuzz::{fixture, pki_dir};

/// A trust whose CRL file is a temporary copy, since `install_crl` writes.
fn own_trust() -> &'static Trust {
    static TRUST: OnceLock<Trust> = OnceLock::new();
    TRUST.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("zhibao-fuzz-crl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temporary directory");
        for f in ["ca.pem", "crl.pem"] {
            std::fs::copy(pki_dir().join(f), dir.join(f)).expect("copy the fixture");
        }
        Trust::load(&dir.join("ca.pem"), Some(&dir.join("crl.pem"))).expect("the fixture loads")
    })
}

fuzz_target!(|der: &[u8]| {
    let f = fixture();
    let ca = f.trust.snapshot().ca.clone();
    match crl::check(&ca, der) {
        Ok(info) => {
            let ours = crl::check(&ca, &f.crl_der()).expect("the fixture CRL checks");
            assert_eq!(info, ours, "a CRL the region CA never signed: {info:?}");
            for grace in [Duration::ZERO, Duration::from_secs(86_400), Duration::MAX] {
                let _ = Freshness::of(Some(&info), grace, f.now).is_stale();
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    match own_trust().install_crl(der) {
        Ok(newer) => assert!(!newer, "replaced the CRL in force with {der:?}"),
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
