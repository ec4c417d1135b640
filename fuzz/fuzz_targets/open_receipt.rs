//! A `SignedReceipt` from the network — on a `Forward` stream (`receipt`,
//! `delivered`), as `Relay.Deliver`'s answer, in an inbox item — as
//! arbitrary bytes: `receipt::peek` (how a node routes one before
//! verifying), `receipt::open`, and `receipt::open_for` with the item, digest
//! and receiver the receipt itself names (so that the comparisons can pass)
//! and with fixed ones.
//!
//! The committed seeds are valid receipts signed by the fixture PKI.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use zhibao::proto::SignedReceipt;
use zhibao::receipt;
use zhibao_fuzz::fixture;

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Ok(signed) = SignedReceipt::decode(data) else {
        return;
    };
    let peeked = receipt::peek(&signed);
    let opened = receipt::open(&signed, &f.trust, f.now);
    match &opened {
        Ok(r) => {
            assert!(
                f.is_good_cert(&signed.signer_cert),
                "opened with a foreign signer"
            );
            assert_eq!(peeked.as_ref(), Some(r), "peek and open disagree");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    let (item, sha, receiver) = peeked
        .as_ref()
        .map(|r| {
            (
                r.item_id.clone(),
                r.report_sha256.clone(),
                r.receiver.clone(),
            )
        })
        .unwrap_or_default();
    for who in [Some(receiver.as_str()), None, Some("hub")] {
        let r = receipt::open_for(&signed, &f.trust, f.now, &item, &sha, who);
        if r.is_ok() {
            assert!(opened.is_ok(), "open_for accepted what open refuses");
        }
        if who == Some(receiver.as_str()) || who.is_none() {
            assert_eq!(
                r.is_ok(),
                opened.is_ok(),
                "open_for on its own fields differs from open"
            );
        }
    }
    let other = receipt::open_for(&signed, &f.trust, f.now, "other-item", &[0; 32], None);
    if other.is_ok() {
        assert_eq!(item, "other-item");
        assert_eq!(sha, [0; 32]);
    }
});
