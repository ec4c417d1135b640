//! The office's signed statements from the network, as arbitrary bytes
//! behind a selector byte: a decision pushed down a `Forward` stream
//! (`ForwardResponse.disposition`, even selector) through
//! `disposition::open_for` on the item it names and on another; a held
//! notice sent up one (`ForwardRequest.held`, selector 1 mod 3) through
//! `held::open`; a solicitation or bulletin pushed down one
//! (`ForwardResponse.notice`, selector 2 mod 3) through `notice::open`
//! with the hub as the only publisher. The first two: selector 0 mod 3 is
//! a decision. Whatever opens must be signed by a good fixture node (a
//! notice: by the hub), and peek must agree with open.
//!
//! The committed seeds are a valid decision, a valid held notice and a
//! valid solicitation signed by the fixture PKI.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use zhibao::proto::{SignedDisposition, SignedHeldNotice, SignedNotice};
use zhibao::{disposition, held, notice};
use zhibao_fuzz::fixture;

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    if which % 3 == 2 {
        let Ok(signed) = SignedNotice::decode(rest) else {
            return;
        };
        match notice::open(&signed, &f.trust, f.now, &["hub".to_string()]) {
            Ok(body) => {
                assert!(f.is_good_cert(&signed.signer_cert), "a notice by a foreign signer");
                assert_eq!(body.publisher, "hub", "a notice by another publisher");
                assert_eq!(Some(body), notice::peek(&signed), "peek and open disagree");
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    } else if which % 3 == 0 {
        let Ok(signed) = SignedDisposition::decode(rest) else {
            return;
        };
        let peeked = disposition::peek(&signed);
        let (item, sha) = peeked
            .as_ref()
            .map(|d| (d.item_id.clone(), d.report_sha256.clone()))
            .unwrap_or_default();
        match disposition::open_for(&signed, &f.trust, f.now, &item, &sha) {
            Ok(opened) => {
                assert!(
                    f.is_good_cert(&signed.signer_cert),
                    "a decision by a foreign signer"
                );
                assert_eq!(
                    Some(&opened.body),
                    peeked.as_ref(),
                    "peek and open disagree"
                );
                let proof = signed.receipt.as_ref().expect("opened without proof");
                assert!(f.is_good_cert(&proof.signer_cert), "a foreign proof");
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
        let other = disposition::open_for(&signed, &f.trust, f.now, "other-item", &[0; 32]);
        if other.is_ok() {
            assert_eq!(item, "other-item");
        }
    } else {
        let Ok(signed) = SignedHeldNotice::decode(rest) else {
            return;
        };
        match held::open(&signed, &f.trust, f.now) {
            Ok(notice) => {
                assert!(
                    f.is_good_cert(&signed.signer_cert),
                    "a notice by a foreign signer"
                );
                assert_eq!(Some(notice), held::peek(&signed), "peek and open disagree");
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
});
