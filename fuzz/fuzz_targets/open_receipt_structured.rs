//! `receipt::open` and `open_for` on receipts the fuzzer builds: every field
//! of the `Receipt`, who signs it (`receipt::issue` where nothing is
//! changed) and with which certificate, bytes tampered with after signing,
//! and what `open_for` is asked to match. Signatures are real (fixture
//! keys), so the fuzzer reaches the receiver, item and digest checks; a
//! model of the rules says what must open and what must be refused.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use zhibao::proto::{Receipt, ReceiptKind, SignedReceipt};
use zhibao::receipt::{self, Statement};
use zhibao_fuzz::{CertChoice, Clock, Expect, Tamper, Who, fixture, signer_expect};

#[derive(Arbitrary, Debug)]
enum Body {
    Fields {
        item_id: String,
        sha256: [u8; 32],
        /// `None`: the signer's own node id.
        receiver: Option<String>,
        stored_unix_ms: i64,
        kind: i32,
        on_time: bool,
        trailing: Vec<u8>,
    },
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Ask {
    /// What the receipt says.
    Same,
    Other(String),
}

#[derive(Arbitrary, Debug)]
struct Case {
    body: Body,
    signer: Who,
    cert: CertChoice,
    receipt_tamper: Option<Tamper>,
    signature_tamper: Option<Tamper>,
    ask_item: Ask,
    ask_sha: Option<Vec<u8>>,
    ask_receiver: Option<Ask>,
    clock: Clock,
}

fuzz_target!(|case: Case| {
    let f = fixture();
    let Some(now) = case.clock.at(f) else {
        return;
    };
    let signer = f.signer(case.signer);
    let cert = case.cert.bytes(f, signer);
    let mut expect = signer_expect(f, signer, &cert, case.clock);
    let (mut signed, fields) = match &case.body {
        Body::Fields {
            item_id,
            sha256,
            receiver,
            stored_unix_ms,
            kind,
            on_time,
            trailing,
        } => {
            let receiver = receiver
                .clone()
                .unwrap_or_else(|| signer.name().to_string());
            expect = expect
                .unless(receiver != signer.name())
                .doubt(!trailing.is_empty());
            let kind_known = ReceiptKind::try_from(*kind).ok();
            let signed = match (signer.identity(), kind_known) {
                // The real thing, as every receiver does it.
                (Some(identity), Some(k))
                    if trailing.is_empty() && receiver == identity.node_id() =>
                {
                    let s = receipt::issue(
                        identity,
                        &Statement {
                            item_id,
                            report_sha256: sha256,
                            stored_unix_ms: *stored_unix_ms,
                            kind: k,
                            on_time: *on_time,
                        },
                    );
                    SignedReceipt {
                        signer_cert: cert,
                        ..s
                    }
                }
                _ => {
                    let mut bytes = Receipt {
                        item_id: item_id.clone(),
                        report_sha256: sha256.to_vec(),
                        receiver: receiver.clone(),
                        stored_unix_ms: *stored_unix_ms,
                        kind: *kind,
                        on_time: *on_time,
                    }
                    .encode_to_vec();
                    bytes.extend_from_slice(trailing);
                    SignedReceipt {
                        signature: signer.sign(&bytes),
                        signer_cert: cert,
                        receipt: bytes,
                        group: None,
                    }
                }
            };
            (signed, Some((item_id.clone(), sha256.to_vec(), receiver)))
        }
        Body::Raw(bytes) => {
            expect = expect.doubt(true);
            let signed = SignedReceipt {
                signature: signer.sign(bytes),
                signer_cert: cert,
                receipt: bytes.clone(),
                group: None,
            };
            (signed, None)
        }
    };
    if let Some(t) = &case.receipt_tamper {
        let before = signed.receipt.clone();
        t.apply(&mut signed.receipt);
        expect = expect.unless(signed.receipt != before);
    }
    if let Some(t) = &case.signature_tamper {
        let before = signed.signature.clone();
        t.apply(&mut signed.signature);
        expect = expect.doubt(signed.signature != before);
    }

    let peeked = receipt::peek(&signed);
    let opened = receipt::open(&signed, &f.trust, now);
    match &opened {
        Ok(r) => {
            assert_ne!(
                expect,
                Expect::Fail,
                "opened a receipt the rules refuse: {case:#?}"
            );
            assert!(f.may_verify(&signed.signer_cert, case.clock));
            assert_eq!(peeked.as_ref(), Some(r));
            assert_eq!(
                Some(r.receiver.clone()),
                zhibao::trust::node_id_of(&signed.signer_cert)
            );
        }
        Err(e) => {
            let _ = e.to_string();
            assert_ne!(
                expect,
                Expect::Pass,
                "refused a receipt the rules accept: {e}\n{case:#?}"
            );
        }
    }

    let said = peeked.clone().unwrap_or_default();
    let item = match &case.ask_item {
        Ask::Same => said.item_id.clone(),
        Ask::Other(s) => s.clone(),
    };
    let sha = case
        .ask_sha
        .clone()
        .unwrap_or_else(|| said.report_sha256.clone());
    let receiver = case.ask_receiver.as_ref().map(|a| match a {
        Ask::Same => said.receiver.clone(),
        Ask::Other(s) => s.clone(),
    });
    let for_ = receipt::open_for(&signed, &f.trust, now, &item, &sha, receiver.as_deref());
    let matches = item == said.item_id
        && sha == said.report_sha256
        && receiver.as_ref().is_none_or(|r| *r == said.receiver);
    match &for_ {
        Ok(r) => {
            assert!(opened.is_ok(), "open_for accepted what open refuses");
            assert!(
                matches,
                "open_for accepted a receipt for something else: {r:?}"
            );
        }
        Err(e) => {
            let _ = e.to_string();
            assert!(
                opened.is_err() || !matches,
                "open_for refused a matching receipt that opens: {e}"
            );
        }
    }
    if let (Some((id, digest, rcv)), Ok(r)) = (fields, &opened) {
        if expect == Expect::Pass {
            assert_eq!(
                (&r.item_id, &r.report_sha256, &r.receiver),
                (&id, &digest, &rcv)
            );
        }
    }
});
