//! What a relay's `Relay.Forward` handler reads from a child: the fuzzer's
//! bytes as one `ForwardRequest`, through tonic's server-side framing and
//! zhibao's strict codec (`proto::codec::StrictDecoder`, reached through
//! tonic's public `Streaming::new_request`; see `src/wire.rs`), checked
//! against plain prost and an independent field walk; then what the relay
//! does first with each kind (`envelope::open` for an item, `check_id` for
//! acknowledged ids). The same bytes are also read as a whole request body
//! (any number of frames), which fuzzes the framing.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use zhibao::envelope::{self, Limits};
use zhibao::proto::ForwardRequest;
use zhibao::proto::forward_request::Kind;
use zhibao_fuzz::fixture;
use zhibao_fuzz::wire::{Side, check_strict, decode_body, decode_strict};

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let one = decode_strict::<ForwardRequest>(Side::Server, data);
    check_strict(data, &one);
    let mut messages: Vec<ForwardRequest> = one.into_iter().collect();
    for r in decode_body::<ForwardRequest>(Side::Server, Bytes::copy_from_slice(data)) {
        match r {
            Ok(m) => messages.push(m),
            Err(s) => {
                // Framing errors are tonic's words; a message the codec
                // refuses is always INVALID_ARGUMENT.
                let _ = s.to_string();
            }
        }
    }
    for m in messages {
        match m.kind {
            Some(Kind::Item(signed)) => {
                let _ = envelope::claimed_id(&signed);
                if envelope::open(&signed, &f.trust, &Limits::default(), f.now).is_ok() {
                    assert!(f.is_good_cert(&signed.signer_cert));
                }
            }
            Some(Kind::Ack(ack)) => {
                for id in &ack.item_ids {
                    let _ = envelope::check_id(id);
                }
            }
            Some(Kind::Chunk(c)) => {
                let _ = envelope::check_id(&c.item_id);
            }
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }
});
