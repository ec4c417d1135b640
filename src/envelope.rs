//! Signed reports: sealing at the origin, opening (verifying) anywhere.
//!
//! The origin signs the exact encoded bytes of a [`Report`]; receivers check
//! the signer's certificate against the region CA and CRL, the signature
//! over the bytes they received, and that the report's `origin` is the node
//! the certificate names. Only then are the bytes decoded and trusted.

use std::time::SystemTime;

use prost::Message;

use crate::class::Class;
use crate::proto::{HopRecord, HopStatement, Report, SignedReport};
use crate::trust::{Identity, SignerError, Trust};

/// Longest item id accepted from the network.
pub const MAX_ID_LEN: usize = 64;

/// Why a signed report was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum VerifyError {
    /// The report is larger than this node accepts.
    #[error("report is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// Size of the encoded report.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The signer's certificate or the signature did not verify.
    #[error("{0}")]
    Signer(#[from] SignerError),
    /// The signed bytes are not a report.
    #[error("report bytes do not decode: {0}")]
    Malformed(String),
    /// The report claims an origin other than its signer.
    #[error("report claims origin {claimed:?} but is signed by node {signer:?}")]
    OriginMismatch {
        /// The origin written in the report.
        claimed: String,
        /// The node named in the signer's certificate.
        signer: String,
    },
    /// A field of the report is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// A relay's hop record in the chain of custody does not verify.
    #[error("custody chain broken at hop {index}: {why}")]
    Hop {
        /// Which hop (0 = the first relay after the origin).
        index: usize,
        /// What is wrong with it.
        why: String,
    },
}

impl From<VerifyError> for tonic::Status {
    fn from(e: VerifyError) -> Self {
        let msg = e.to_string();
        match e {
            VerifyError::TooLarge { .. } => Self::resource_exhausted(msg),
            VerifyError::Signer(_) | VerifyError::Hop { .. } => Self::unauthenticated(msg),
            VerifyError::OriginMismatch { .. } => Self::permission_denied(msg),
            VerifyError::Malformed(_) | VerifyError::Invalid(_) => Self::invalid_argument(msg),
        }
    }
}

/// A report whose signature, signer and fields have been checked.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The decoded report.
    pub report: Report,
    /// Its class.
    pub class: Class,
    /// SHA-256 of the signed bytes.
    pub sha256: [u8; 32],
    /// Who holds the item according to its custody chain: the last relay,
    /// or the origin if no relay has handled it. It should be the peer that
    /// handed it over.
    pub holder: String,
}

/// Most attachments on one report.
pub const MAX_ATTACHMENTS: usize = 16;

/// Checks a report's attachment references against `max_total` bytes.
pub fn check_attachments(report: &Report, max_total: u64) -> Result<(), VerifyError> {
    if report.attachments.len() > MAX_ATTACHMENTS {
        return Err(VerifyError::Invalid(format!(
            "{} attachments; at most {MAX_ATTACHMENTS}",
            report.attachments.len()
        )));
    }
    let mut total = 0u64;
    for a in &report.attachments {
        if a.sha256.len() != 32
            || !(1024..=1024 * 1024).contains(&a.chunk_size)
            || a.name.len() > 256
        {
            return Err(VerifyError::Invalid(format!(
                "attachment {:?} is malformed",
                a.name
            )));
        }
        total = total.saturating_add(a.size);
    }
    if total > max_total {
        return Err(VerifyError::TooLarge {
            size: usize::try_from(total).unwrap_or(usize::MAX),
            limit: usize::try_from(max_total).unwrap_or(usize::MAX),
        });
    }
    Ok(())
}

/// How many chunks an attachment travels in.
pub fn chunk_count(a: &crate::proto::AttachmentRef) -> u32 {
    u32::try_from(a.size.div_ceil(u64::from(a.chunk_size.max(1)))).unwrap_or(u32::MAX)
}

/// The length chunk `index` of an attachment must have.
pub fn chunk_len(a: &crate::proto::AttachmentRef, index: u32) -> u64 {
    let start = u64::from(index) * u64::from(a.chunk_size);
    a.size.saturating_sub(start).min(u64::from(a.chunk_size))
}

/// Most relays an item may pass through.
pub const MAX_HOPS: usize = 16;

pub use crate::clock::now_ms;
pub use crate::digest::{hex, sha256};

/// A new item id: 12 hex digits of milliseconds, then 20 random hex digits,
/// so ids sort by creation time and never collide.
pub fn new_item_id() -> String {
    use ring::rand::SecureRandom;
    let mut random = [0u8; 10];
    ring::rand::SystemRandom::new()
        .fill(&mut random)
        .expect("the OS random number generator failed");
    format!("{:012x}{}", now_ms() & 0xffff_ffff_ffff, hex(&random))
}

/// Checks an id from the network: short, printable, no separators.
pub fn check_id(id: &str) -> Result<(), VerifyError> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(VerifyError::Invalid(format!(
            "item id must be 1 to {MAX_ID_LEN} characters"
        )));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(VerifyError::Invalid(
            "item id may hold only letters, digits, '-' and '_'".into(),
        ));
    }
    Ok(())
}

/// Encodes and signs `report` with our key.
pub fn seal(report: &Report, identity: &Identity) -> SignedReport {
    let bytes = report.encode_to_vec();
    SignedReport {
        signature: identity.sign(&bytes),
        signer_cert: identity.cert().to_vec(),
        report: bytes,
        hops: Vec::new(),
    }
}

/// Verifies a signed report received from anywhere.
///
/// # Errors
/// Any failed check, most specific first: size, signer and signature,
/// encoding, origin, fields.
pub fn open(
    signed: &SignedReport,
    trust: &Trust,
    max_report_bytes: usize,
    now: SystemTime,
) -> Result<Verified, VerifyError> {
    if signed.report.len() > max_report_bytes {
        return Err(VerifyError::TooLarge {
            size: signed.report.len(),
            limit: max_report_bytes,
        });
    }
    let signer =
        trust.verify_signed(&signed.signer_cert, &signed.report, &signed.signature, now)?;
    let report = Report::decode(signed.report.as_slice())
        .map_err(|e| VerifyError::Malformed(e.to_string()))?;
    if report.origin != signer {
        return Err(VerifyError::OriginMismatch {
            claimed: report.origin,
            signer,
        });
    }
    check_id(&report.id)?;
    let class = Class::from_proto(report.priority).ok_or_else(|| {
        VerifyError::Invalid(format!(
            "unknown priority class {}: use emergency, bad_news or routine",
            report.priority
        ))
    })?;
    let digest = sha256(&signed.report);
    let holder = check_hops(signed, &report.origin, &digest, trust, now)?;
    Ok(Verified {
        sha256: digest,
        report,
        class,
        holder,
    })
}

/// Verifies the chain of custody; returns the last holder.
fn check_hops(
    signed: &SignedReport,
    origin: &str,
    digest: &[u8; 32],
    trust: &Trust,
    now: SystemTime,
) -> Result<String, VerifyError> {
    if signed.hops.len() > MAX_HOPS {
        return Err(VerifyError::Invalid(format!(
            "{} hops; at most {MAX_HOPS} relays may handle an item",
            signed.hops.len()
        )));
    }
    let mut holder = origin.to_string();
    let mut previous = Vec::new();
    for (index, hop) in signed.hops.iter().enumerate() {
        let broken = |why: String| VerifyError::Hop { index, why };
        let relay = trust
            .verify_signed(&hop.signer_cert, &hop.statement, &hop.signature, now)
            .map_err(|e| broken(e.to_string()))?;
        let st = HopStatement::decode(hop.statement.as_slice())
            .map_err(|e| broken(format!("statement does not decode: {e}")))?;
        if st.relay != relay {
            return Err(broken(format!(
                "signed by {relay:?} but names relay {:?}",
                st.relay
            )));
        }
        if st.report_sha256 != digest {
            return Err(broken("it is for other report bytes".into()));
        }
        if st.received_from != holder {
            return Err(broken(format!(
                "says it came from {:?}, but {holder:?} held it",
                st.received_from
            )));
        }
        if st.previous_hop_sha256 != previous {
            return Err(broken("it does not follow the previous hop".into()));
        }
        previous = sha256(&hop.statement).to_vec();
        holder = relay;
    }
    Ok(holder)
}

/// Appends our countersigned hop to an item we hold and forward: we
/// received it from `received_from` and stored it at `stored_unix_ms`.
pub fn add_hop(
    signed: &mut SignedReport,
    identity: &Identity,
    received_from: &str,
    stored_unix_ms: i64,
) {
    let statement = HopStatement {
        report_sha256: sha256(&signed.report).to_vec(),
        relay: identity.node_id().to_string(),
        received_from: received_from.to_string(),
        stored_unix_ms,
        previous_hop_sha256: signed
            .hops
            .last()
            .map(|h| sha256(&h.statement).to_vec())
            .unwrap_or_default(),
    }
    .encode_to_vec();
    signed.hops.push(HopRecord {
        signature: identity.sign(&statement),
        signer_cert: identity.cert().to_vec(),
        statement,
    });
}
