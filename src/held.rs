//! Held notices: "this item is held here past its deadline", signed by the
//! node holding it and carried up to the final hub ahead of the item.
//!
//! The seed forbids holding reports back anywhere on the way (杜绝压存).
//! An item can only be late at the hub once it arrives; a notice lets the
//! office see it stuck below, where and why, while it still is. Like a
//! decision, the signature covers [`CONTEXT`] and the encoded notice, so it
//! can never pass for anything else the same key signs.

use std::time::SystemTime;

use prost::Message;

use crate::proto::{HeldNotice, SignedHeldNotice};
use crate::trust::{Identity, SignerError, Trust};

/// What a notice's signature covers before the notice's bytes.
pub const CONTEXT: &[u8] = b"zhibao.v1.HeldNotice\n";

/// Longest `why`, bytes.
pub const MAX_WHY_BYTES: usize = 1024;

/// Why a notice was not taken.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HeldError {
    /// The signer's certificate or the signature did not verify.
    #[error(transparent)]
    Signer(#[from] SignerError),
    /// The bytes are not a notice.
    #[error("held notice does not decode: {0}")]
    Malformed(prost::DecodeError),
    /// The notice names a holder other than its signer.
    #[error("held notice names holder {named:?} but is signed by {signer:?}")]
    HolderMismatch {
        /// The holder named.
        named: String,
        /// The signer.
        signer: String,
    },
    /// The notice's fields are not usable.
    #[error("held notice: {0}")]
    Invalid(&'static str),
}

/// Signs `notice` as `identity` (which is set as its holder).
pub fn issue(identity: &Identity, mut notice: HeldNotice) -> SignedHeldNotice {
    notice.holder = identity.node_id().to_string();
    let bytes = notice.encode_to_vec();
    SignedHeldNotice {
        signature: identity.sign(&signed_message(&bytes)),
        signer_cert: identity.cert().to_vec(),
        notice: bytes,
    }
}

fn signed_message(bytes: &[u8]) -> Vec<u8> {
    crate::trust::in_context(CONTEXT, bytes)
}

/// Verifies a notice at `now`: the holder's certificate (CA, CRL), the
/// signature, that it names its signer, a usable item id and bounded text.
pub fn open(
    signed: &SignedHeldNotice,
    trust: &Trust,
    now: SystemTime,
) -> Result<HeldNotice, HeldError> {
    let signer = trust.verify_signed(
        &signed.signer_cert,
        &signed_message(&signed.notice),
        &signed.signature,
        now,
    )?;
    let notice = HeldNotice::decode(signed.notice.as_slice()).map_err(HeldError::Malformed)?;
    if notice.holder != signer {
        return Err(HeldError::HolderMismatch {
            named: notice.holder,
            signer,
        });
    }
    crate::envelope::check_id(&notice.item_id).map_err(|_| HeldError::Invalid("bad item id"))?;
    crate::trust::validate_node_id(&notice.origin).map_err(|_| HeldError::Invalid("bad origin"))?;
    if notice.why.len() > MAX_WHY_BYTES {
        return Err(HeldError::Invalid("why is too long"));
    }
    if !notice.stuck_at.is_empty() {
        crate::trust::validate_node_id(&notice.stuck_at)
            .map_err(|_| HeldError::Invalid("bad stuck_at"))?;
    }
    Ok(notice)
}

/// Decodes a notice *without verifying it*, to show one verified when it
/// was stored.
pub fn peek(signed: &SignedHeldNotice) -> Option<HeldNotice> {
    HeldNotice::decode(signed.notice.as_slice()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_opens_for_its_holder_and_nothing_else_passes() {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        crate::pki::init(&certs, "test", "hub", &["relay".into()]).unwrap();
        let trust = Trust::load(&certs.join(crate::trust::CA_CERT), None).unwrap();
        let (c, k) = crate::trust::node_paths(&certs, "relay");
        let relay = Identity::load(&c, &k).unwrap();
        let notice = HeldNotice {
            item_id: crate::envelope::new_item_id(),
            origin: "county-a".into(),
            why: "route hub unreachable".into(),
            holder: "someone-else".into(),
            ..Default::default()
        };
        let signed = issue(&relay, notice);
        let opened = open(&signed, &trust, SystemTime::now()).unwrap();
        assert_eq!(opened.holder, "relay", "the signer is the holder");
        let mut bad = signed.clone();
        bad.signature = relay.sign(&bad.notice);
        assert!(matches!(
            open(&bad, &trust, SystemTime::now()),
            Err(HeldError::Signer(_))
        ));
        let mut body = peek(&signed).unwrap();
        body.holder = "hub".into();
        let bytes = body.encode_to_vec();
        let forged = SignedHeldNotice {
            signature: relay.sign(&signed_message(&bytes)),
            notice: bytes,
            ..signed
        };
        assert!(matches!(
            open(&forged, &trust, SystemTime::now()),
            Err(HeldError::HolderMismatch { .. })
        ));
    }
}
