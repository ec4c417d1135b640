//! Writes the committed seed corpus, `fuzz/seeds/<target>/`, from the fixture
//! PKI: valid messages of every kind the byte-level targets read, so that
//! fuzzing starts from inputs that get all the way through.
//!
//! ```text
//! cd fuzz && cargo run --example make_seeds
//! ```
//!
//! Deterministic (Ed25519 signatures are), so re-running it changes nothing
//! unless the fixture or the wire contract changed.

use std::fs;
use std::path::Path;

use prost::Message;
use zhibao::envelope::{self, hops};
use zhibao::proto::{
    AttachmentRef, Chunk, ChunkNeed, DeliveryAck, ForwardRequest, ForwardResponse, Priority,
    ReceiptKind, Refusal, Report, SignedReceipt, SignedReport, forward_request, forward_response,
};
use zhibao::receipt::{self, Statement};
use zhibao_fuzz::{Who, fixture};

fn report(id: &str, origin: &str, attachments: Vec<AttachmentRef>) -> Report {
    // A minute before the fixture's now: inside every date rule.
    let created = zhibao_fuzz::unix_ms(fixture().now) - 60_000;
    Report {
        id: id.into(),
        origin: origin.into(),
        priority: Priority::Emergency as i32,
        title: "dam overflow at km 12".into(),
        body: "water 40 cm over the crest; evacuating two villages".into(),
        created_unix_ms: created,
        deadline_unix_ms: 0,
        attachments,
        ..Default::default()
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let f = fixture();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let write = |target: &str, name: &str, bytes: &[u8]| -> std::io::Result<()> {
        let dir = root.join(target);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join(name), bytes)
    };
    let id = |w: Who| f.signer(w).identity().expect("a loadable fixture node");
    let county = id(Who::CountyA);
    let (r1, r2, hub) = (id(Who::Relay1), id(Who::Relay2), id(Who::Hub));

    // Reports: plain, through one and two relays, with attachments, and
    // one signed by a revoked node.
    let plain = envelope::sign(&report("0190a1b2c3d4-seed-1", "county-a", vec![]), county);
    let mut one_hop = plain.clone();
    hops::add(&mut one_hop, r1, "county-a", 1_795_618_801_000);
    let mut two_hops = one_hop.clone();
    hops::add(&mut two_hops, r2, "relay-1", 1_795_618_802_000);
    let with_attachments = envelope::sign(
        &report(
            "0190a1b2c3d4-seed-2",
            "county-a",
            vec![AttachmentRef {
                name: "photo.jpg".into(),
                size: 200_000,
                sha256: vec![7; 32],
                chunk_size: 65_536,
            }],
        ),
        county,
    );
    let revoked = envelope::sign(
        &report("0190a1b2c3d4-seed-3", "revoked", vec![]),
        id(Who::Revoked),
    );
    let reports: [(&str, &SignedReport); 5] = [
        ("plain", &plain),
        ("one-hop", &one_hop),
        ("two-hops", &two_hops),
        ("attachments", &with_attachments),
        ("revoked-signer", &revoked),
    ];
    for (name, r) in reports {
        envelope::open(r, &f.trust, &envelope::Limits::default(), f.now)
            .map(|_| ())
            .or_else(|e| {
                if name == "revoked-signer" {
                    Ok(())
                } else {
                    Err(e)
                }
            })?;
        write("open_report", name, &r.encode_to_vec())?;
    }

    // Receipts: custody by a relay, delivery by the hub.
    let digest = zhibao::digest::sha256(&plain.report);
    let custody = receipt::issue(
        r1,
        &Statement {
            item_id: "0190a1b2c3d4-seed-1",
            report_sha256: &digest,
            stored_unix_ms: 1_795_618_801_000,
            kind: ReceiptKind::Custody,
            on_time: true,
        },
    );
    let delivery = receipt::issue(
        hub,
        &Statement {
            item_id: "0190a1b2c3d4-seed-1",
            report_sha256: &digest,
            stored_unix_ms: 1_795_618_803_000,
            kind: ReceiptKind::Delivery,
            on_time: false,
        },
    );
    let receipts: [(&str, &SignedReceipt); 2] = [("custody", &custody), ("delivery", &delivery)];
    for (name, r) in receipts {
        receipt::open(r, &f.trust, f.now)?;
        write("open_receipt", name, &r.encode_to_vec())?;
    }

    // Forward streams, both ways.
    use forward_request::Kind as Up;
    let up = |kind| ForwardRequest { kind: Some(kind) }.encode_to_vec();
    let chunk = Chunk {
        item_id: "0190a1b2c3d4-seed-2".into(),
        attachment: 0,
        index: 3,
        data: vec![0xab; 64],
    };
    write("forward_request", "item", &up(Up::Item(two_hops.clone())))?;
    write(
        "forward_request",
        "ack",
        &up(Up::Ack(DeliveryAck {
            item_ids: vec!["0190a1b2c3d4-seed-1".into(), "0190a1b2c3d4-seed-2".into()],
            notices: vec![zhibao::proto::NoticeRef {
                id: "SOL-0190a1b2c3d4e5f6".into(),
                version: 2,
            }],
            ..Default::default()
        })),
    )?;
    write("forward_request", "chunk", &up(Up::Chunk(chunk.clone())))?;
    let mut mixed = up(Up::Item(plain.clone()));
    mixed.extend(up(Up::Chunk(chunk)));
    write("forward_request", "mixed-item-chunk", &mixed)?;
    write("forward_request", "empty", &[])?;

    use forward_response::Result as Down;
    let down = |kind| ForwardResponse { result: Some(kind) }.encode_to_vec();
    write(
        "forward_response",
        "receipt",
        &down(Down::Receipt(custody.clone())),
    )?;
    write(
        "forward_response",
        "delivered",
        &down(Down::Delivered(delivery.clone())),
    )?;
    write(
        "forward_response",
        "refusal",
        &down(Down::Refusal(Refusal {
            item_id: "0190a1b2c3d4-seed-1".into(),
            code: 3,
            message: "report claims origin \"x\" but is signed by node \"county-a\"".into(),
        })),
    )?;
    write(
        "forward_response",
        "need",
        &down(Down::Need(ChunkNeed {
            item_id: "0190a1b2c3d4-seed-2".into(),
            attachment: 0,
            next: 2,
        })),
    )?;
    write("forward_response", "crl", &down(Down::Crl(f.crl_der())))?;
    let mut mixed = down(Down::Receipt(custody));
    mixed.extend(down(Down::Delivered(delivery.clone())));
    write("forward_response", "mixed-receipt-delivered", &mixed)?;

    // CRLs: the one in force, and a certificate (not a CRL).
    write("crl", "region-crl", &f.crl_der())?;
    write("crl", "ca-certificate", &f.trust.snapshot().ca)?;

    // The office's statements: a decision by the hub (with its delivery
    // receipt as proof) and a held notice by a relay, each behind the
    // target's selector byte.
    let decision = zhibao::disposition::issue(
        hub,
        zhibao::disposition::Item {
            id: "0190a1b2c3d4-seed-1",
            sha256: &digest,
            origin: "county-a",
        },
        &zhibao::disposition::Decision {
            kind: zhibao::proto::DispositionKind::Adopted,
            text: "《情况专报》第12期".into(),
            answer_by_unix_ms: 0,
            staff: "王芳".into(),
        },
        zhibao::disposition::Place {
            seq: 1,
            previous: None,
        },
        1_795_618_804_000,
        delivery.clone(),
    );
    zhibao::disposition::open_for(&decision, &f.trust, f.now, "0190a1b2c3d4-seed-1", &digest)?;
    let mut bytes = vec![0u8];
    bytes.extend(decision.encode_to_vec());
    write("open_statement", "decision", &bytes)?;
    let held = zhibao::held::issue(
        r1,
        zhibao::proto::HeldNotice {
            item_id: "0190a1b2c3d4-seed-1".into(),
            origin: "county-a".into(),
            priority: Priority::Emergency as i32,
            since_unix_ms: 1_795_618_801_000,
            deadline_unix_ms: 1_795_618_861_000,
            why: "not yet taken by hub".into(),
            at_unix_ms: 1_795_618_862_000,
            report_sha256: digest.to_vec(),
            ..Default::default()
        },
    );
    zhibao::held::open(&held, &f.trust, f.now)?;
    let mut bytes = vec![1u8];
    bytes.extend(held.encode_to_vec());
    write("open_statement", "held", &bytes)?;
    let solicitation = zhibao::notice::issue(
        hub,
        zhibao::proto::Notice {
            id: "SOL-0190a1b2c3d4e5f6".into(),
            version: 1,
            staff: "王芳".into(),
            at_unix_ms: 1_795_618_804_000,
            body: Some(zhibao::proto::notice::Body::Solicitation(
                zhibao::proto::Solicitation {
                    topic: "秋汛防御".into(),
                    text: "请报送".into(),
                    deadline_unix_ms: 1_795_700_000_000,
                    priority: Priority::Routine as i32,
                    counties: vec!["county-a".into()],
                    ..Default::default()
                },
            )),
            ..Default::default()
        },
    );
    zhibao::notice::open(&solicitation, &f.trust, f.now, &["hub".to_string()])?;
    let mut bytes = vec![2u8];
    bytes.extend(solicitation.encode_to_vec());
    write("open_statement", "solicitation", &bytes)?;

    // Configurations: the repository's own examples.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for dir in ["config", "tests/common"] {
        for entry in fs::read_dir(repo.join(dir))? {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) == Some("toml") {
                let name = format!(
                    "{}-{}",
                    dir.replace('/', "-"),
                    path.file_name().and_then(|n| n.to_str()).unwrap_or("x")
                );
                write("config", &name, &fs::read(&path)?)?;
            }
        }
    }
    println!("wrote {}", root.display());
    Ok(())
}
