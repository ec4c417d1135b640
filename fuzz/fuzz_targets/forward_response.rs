//! What a child's forwarder reads from its upstream on `Relay.Forward`: the
//! fuzzer's bytes as one `ForwardResponse`, through tonic's client-side
//! framing and zhibao's strict codec (see `src/wire.rs`), checked against
//! plain prost and an independent field walk; then what the child does
//! first with each kind (`receipt::peek`, `open`, `open_for` for receipts and
//! pushed-down delivery receipts, `check_id` for refusals and chunk needs).
//! The same bytes are also read as a whole response body.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use zhibao::envelope;
use zhibao::proto::ForwardResponse;
use zhibao::proto::forward_response::Result as Kind;
use zhibao::receipt;
use zhibao_fuzz::fixture;
use zhibao_fuzz::wire::{Side, check_strict, decode_body, decode_strict};

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let one = decode_strict::<ForwardResponse>(Side::Client, data);
    check_strict(data, &one);
    let mut messages: Vec<ForwardResponse> = one.into_iter().collect();
    for r in decode_body::<ForwardResponse>(Side::Client, Bytes::copy_from_slice(data)) {
        if let Ok(m) = r {
            messages.push(m);
        }
    }
    for m in messages {
        match m.result {
            Some(Kind::Receipt(r) | Kind::Delivered(r)) => {
                let peeked = receipt::peek(&r);
                let opened = receipt::open(&r, &f.trust, f.now);
                if opened.is_ok() {
                    assert!(f.is_good_cert(&r.signer_cert));
                }
                if let Some(p) = peeked {
                    let _ = envelope::check_id(&p.item_id);
                    let _ = receipt::open_for(
                        &r,
                        &f.trust,
                        f.now,
                        &p.item_id,
                        &p.report_sha256,
                        Some(&p.receiver),
                    );
                }
            }
            Some(Kind::Refusal(r)) => {
                let _ = envelope::check_id(&r.item_id);
                let _ = tonic::Code::from_i32(r.code);
            }
            Some(Kind::Need(n)) => {
                let _ = envelope::check_id(&n.item_id);
            }
            Some(Kind::Crl(der)) => {
                // What a child checks before it installs a pushed-down CRL.
                if zhibao::trust::crl::check(&f.trust.snapshot().ca, &der).is_ok() {
                    assert_eq!(der, f.crl_der(), "a CRL the region CA never signed");
                }
            }
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }
});
