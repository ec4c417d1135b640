//! A `SignedReport` from the network — the body of `Relay.Deliver`, an item
//! on a `Relay.Forward` stream, an inbox item — as arbitrary bytes: prost
//! decoding, then `envelope::open` (size, signer certificate against the
//! region CA and CRL, signature, report decoding, origin, id, class,
//! attachments, hop chain) and `envelope::claimed_id`.
//!
//! The committed seeds are valid reports (with and without hops) signed by
//! the fixture PKI, so the fuzzer starts from messages that open.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use zhibao::envelope::{self, Limits};
use zhibao::proto::SignedReport;
use zhibao_fuzz::fixture;

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Ok(signed) = SignedReport::decode(data) else {
        return;
    };
    let _ = envelope::claimed_id(&signed);
    match envelope::open(&signed, &f.trust, &Limits::default(), f.now) {
        Ok(v) => {
            // Nobody but the fixture's good nodes can have signed this.
            assert!(
                f.is_good_cert(&signed.signer_cert),
                "opened with a foreign signer"
            );
            for hop in &signed.hops {
                assert!(f.is_good_cert(&hop.signer_cert), "hop by a foreign signer");
            }
            assert_eq!(v.sha256(), &zhibao::digest::sha256(&signed.report));
            assert_eq!(envelope::claimed_id(&signed).as_deref(), Some(v.id()));
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
