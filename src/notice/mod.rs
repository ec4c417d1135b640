//! Signed notices: what an office publishes to every node below it —
//! solicitations (约稿: a topic, a text, a deadline, the class answers
//! travel in, the counties asked) and bulletins (通报: a period's figures).
//!
//! A notice is published once and may change later (a solicitation
//! extended or withdrawn, a bulletin published again): every change is a
//! whole new statement with the next `version`, naming the digest of the
//! one before, so a node that holds them sees any gap or substitution. The
//! highest version is in force.
//!
//! Every node on the way down verifies a notice ([`open`]) before keeping
//! and passing it on: signed by a node of the region (CA, CRL) that is one
//! of the publishers this node's configuration names, fields within bounds.
//! The signature covers [`CONTEXT`] followed by the encoded notice, so a
//! notice can never verify as a report, receipt or decision.
//!
//! No network and no store here: plain functions over bytes.

use std::time::SystemTime;

use prost::Message;

use crate::class::Class;
use crate::digest::sha256;
use crate::proto::{Bulletin, Notice, SignedNotice, Solicitation, notice};
use crate::trust::{Identity, SignerError, Trust};

/// What a notice's signature covers before the notice's bytes.
pub const CONTEXT: &[u8] = b"zhibao.v1.Notice\n";

/// Longest topic or title, bytes.
pub const MAX_TOPIC_BYTES: usize = 512;

/// Longest solicitation text or note, bytes.
pub const MAX_TEXT_BYTES: usize = 16 * 1024;

/// Largest bulletin document (HTML and JSON together), bytes: with its
/// signature and certificate it must fit the smallest message any node
/// takes on its upstream stream (1 MiB + 64 KiB, whatever the limits say).
pub const MAX_BULLETIN_BYTES: usize = 960 * 1024;

/// Most counties one solicitation may name.
pub const MAX_COUNTIES: usize = 4096;

/// Most versions of one notice.
pub const MAX_VERSIONS: u32 = 1000;

/// Longest staff name, bytes.
pub const MAX_STAFF_BYTES: usize = 256;

/// Why a notice was refused, made or received.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NoticeError {
    /// The signer's certificate or the signature did not verify.
    #[error(transparent)]
    Signer(#[from] SignerError),
    /// The bytes are not a notice.
    #[error("notice does not decode: {0}")]
    Malformed(prost::DecodeError),
    /// The notice names a publisher other than its signer.
    #[error("notice names publisher {named:?} but is signed by {signer:?}")]
    PublisherMismatch {
        /// Publisher in the notice.
        named: String,
        /// Node in the signing certificate.
        signer: String,
    },
    /// The signer is not one of the publishers this node takes notices from.
    #[error(
        "notice {id} is signed by {signer:?}, which is not a publisher of this node (office.publishers: {allowed})"
    )]
    NotAPublisher {
        /// The notice.
        id: String,
        /// Who signed it.
        signer: String,
        /// The configured publishers.
        allowed: String,
    },
    /// A field breaks the rules.
    #[error("notice {id}: {why}")]
    Invalid {
        /// The notice.
        id: String,
        /// What is wrong.
        why: String,
    },
}

/// A notice id's kind, from its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `SOL-…`
    Solicitation,
    /// `BUL-…`
    Bulletin,
}

/// Checks a notice id's form: `SOL-` and 16 lowercase hex digits, or
/// `BUL-` and a period (`2026-11`, `2026Q4`, `2026`).
pub fn check_id(id: &str) -> Result<Kind, String> {
    if let Some(hex) = id.strip_prefix("SOL-") {
        if hex.len() == 16
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Ok(Kind::Solicitation);
        }
    } else if let Some(period) = id.strip_prefix("BUL-")
        && (4..=8).contains(&period.len())
        && period
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'-' || b == b'Q')
    {
        return Ok(Kind::Bulletin);
    }
    Err(format!(
        "{:?} is not a notice id (SOL- and 16 hex digits, or BUL- and a period)",
        id.chars().take(40).collect::<String>()
    ))
}

/// A new solicitation id, time-ordered, from a time and random bits.
pub fn new_solicitation_id(now_ms: i64) -> String {
    let mut rnd = [0u8; 3];
    // An id only needs to be unique at one publisher; if the system RNG
    // fails the time alone still orders it, and a collision is refused
    // by the store as a conflict.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut rnd);
    let t = u64::try_from(now_ms).unwrap_or(0) & 0xff_ffff_ffff;
    format!(
        "SOL-{t:010x}{:06x}",
        u32::from_be_bytes([0, rnd[0], rnd[1], rnd[2]])
    )
}

/// The rules every notice keeps, whoever made it.
pub fn check(n: &Notice) -> Result<Kind, NoticeError> {
    let bad = |why: String| NoticeError::Invalid {
        id: n.id.chars().take(40).collect(),
        why,
    };
    let kind = check_id(&n.id).map_err(bad)?;
    if n.version == 0 || n.version > MAX_VERSIONS {
        return Err(bad(format!(
            "version {} is out of range (1 to {MAX_VERSIONS})",
            n.version
        )));
    }
    if (n.version == 1) != n.previous_sha256.is_empty()
        || !matches!(n.previous_sha256.len(), 0 | 32)
    {
        return Err(bad("the link to the previous version is malformed".into()));
    }
    if n.staff.len() > MAX_STAFF_BYTES {
        return Err(bad(format!(
            "the staff name is over {MAX_STAFF_BYTES} bytes"
        )));
    }
    match (&n.body, kind) {
        (Some(notice::Body::Solicitation(s)), Kind::Solicitation) => {
            check_solicitation(s).map_err(bad)?
        }
        (Some(notice::Body::Bulletin(b)), Kind::Bulletin) => {
            check_bulletin(b, &n.id).map_err(bad)?
        }
        _ => return Err(bad("its body does not match its id".into())),
    }
    Ok(kind)
}

fn check_solicitation(s: &Solicitation) -> Result<(), String> {
    if s.topic.trim().is_empty() {
        return Err("a solicitation needs a topic".into());
    }
    if s.topic.len() > MAX_TOPIC_BYTES {
        return Err(format!("the topic is over {MAX_TOPIC_BYTES} bytes"));
    }
    if s.text.len() > MAX_TEXT_BYTES || s.note.len() > MAX_TEXT_BYTES {
        return Err(format!("the text or note is over {MAX_TEXT_BYTES} bytes"));
    }
    if s.deadline_unix_ms <= 0 {
        return Err("a solicitation needs a deadline".into());
    }
    if Class::from_proto(s.priority).is_none() {
        return Err("the class answers travel in is not emergency, bad_news or routine".into());
    }
    if s.counties.len() > MAX_COUNTIES {
        return Err(format!("it names over {MAX_COUNTIES} counties"));
    }
    if let Some(c) = s
        .counties
        .iter()
        .find(|c| crate::trust::validate_node_id(c).is_err())
    {
        return Err(format!(
            "{:?} is not a node id",
            c.chars().take(80).collect::<String>()
        ));
    }
    Ok(())
}

fn check_bulletin(b: &Bulletin, id: &str) -> Result<(), String> {
    if id.strip_prefix("BUL-") != Some(b.period.as_str()) {
        return Err("its period does not match its id".into());
    }
    if b.title.len() > MAX_TOPIC_BYTES {
        return Err(format!("the title is over {MAX_TOPIC_BYTES} bytes"));
    }
    if !matches!(b.lang.as_str(), "zh" | "en") {
        return Err("its language is not zh or en".into());
    }
    if b.html.len().saturating_add(b.figures_json.len()) > MAX_BULLETIN_BYTES {
        return Err(format!("the document is over {MAX_BULLETIN_BYTES} bytes"));
    }
    Ok(())
}

/// Signs `notice` as `identity` (its `publisher` is set to our node id).
pub fn issue(identity: &Identity, mut notice: Notice) -> SignedNotice {
    notice.publisher = identity.node_id().to_string();
    let bytes = notice.encode_to_vec();
    SignedNotice {
        signature: identity.sign(&signed_message(&bytes)),
        signer_cert: identity.cert().to_vec(),
        notice: bytes,
    }
}

fn signed_message(bytes: &[u8]) -> Vec<u8> {
    crate::trust::in_context(CONTEXT, bytes)
}

/// Verifies a notice at `now`: the signer's certificate (CA, CRL), the
/// signature, that the notice names its signer, that the signer is one of
/// `publishers`, and that its fields keep the rules.
pub fn open(
    signed: &SignedNotice,
    trust: &Trust,
    now: SystemTime,
    publishers: &[String],
) -> Result<Notice, NoticeError> {
    let signer = trust.verify_signed(
        &signed.signer_cert,
        &signed_message(&signed.notice),
        &signed.signature,
        now,
    )?;
    let body = Notice::decode(signed.notice.as_slice()).map_err(NoticeError::Malformed)?;
    if body.publisher != signer {
        return Err(NoticeError::PublisherMismatch {
            named: body.publisher,
            signer,
        });
    }
    if !publishers.contains(&signer) {
        return Err(NoticeError::NotAPublisher {
            id: body.id.chars().take(40).collect(),
            signer,
            allowed: if publishers.is_empty() {
                "none configured".into()
            } else {
                publishers.join(", ")
            },
        });
    }
    check(&body)?;
    Ok(body)
}

/// Decodes a notice *without verifying it*, to show or route one that was
/// verified when it was stored.
pub fn peek(signed: &SignedNotice) -> Option<Notice> {
    Notice::decode(signed.notice.as_slice()).ok()
}

/// The digest the next version names as its previous.
pub fn digest(signed: &SignedNotice) -> [u8; 32] {
    sha256(&signed.notice)
}

/// Whether solicitation `s` asks `county`.
pub fn asks(s: &Solicitation, county: &str) -> bool {
    s.counties.is_empty() || s.counties.iter().any(|c| c == county)
}

#[cfg(test)]
mod tests;
