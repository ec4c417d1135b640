//! The chain of custody: each relay that stores and forwards an item
//! countersigns a hop record ("I, relay, received these report bytes from
//! X and stored them at T"), linked to the previous hop by its digest. A
//! receiver checks the whole chain and learns who holds the item now.

use std::time::SystemTime;

use prost::Message;

use crate::digest::sha256;
use crate::proto::{HopRecord, HopStatement, SignedReport};
use crate::trust::{Identity, SignerError, Trust};

/// Most relays an item may pass through.
pub const MAX_HOPS: usize = 16;

/// What is wrong with one hop record.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HopError {
    /// The relay's certificate or signature does not verify.
    #[error(transparent)]
    Signer(#[from] SignerError),
    /// The signed statement is not a hop statement.
    #[error("statement does not decode: {0}")]
    Malformed(prost::DecodeError),
    /// Signed by one relay, naming another.
    #[error("signed by {signer:?} but names relay {named:?}")]
    RelayMismatch {
        /// The node in the signing certificate.
        signer: String,
        /// The relay the statement names.
        named: String,
    },
    /// The statement is about other report bytes.
    #[error("it is for other report bytes")]
    OtherReport,
    /// The relay says it took the item from someone who did not hold it.
    #[error("says it came from {said:?}, but {held:?} held it")]
    WrongSender {
        /// Whom the statement names.
        said: String,
        /// Who held the item according to the chain so far.
        held: String,
    },
    /// The statement does not name the previous hop's digest.
    #[error("it does not follow the previous hop")]
    NotLinked,
}

/// Appends our countersigned hop to an item we hold and forward: we
/// received it from `received_from` and stored it at `stored_unix_ms`.
pub fn add(
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

/// Verifies every hop of the chain that starts at `origin` over the report
/// bytes with digest `report_sha256`; returns the last holder and, on
/// failure, the index of the first bad hop.
pub(super) fn check(
    hops: &[HopRecord],
    origin: &str,
    report_sha256: &[u8; 32],
    trust: &Trust,
    now: SystemTime,
) -> Result<String, (usize, HopError)> {
    let mut holder = origin.to_string();
    let mut previous = Vec::new();
    for (index, hop) in hops.iter().enumerate() {
        let at = |e: HopError| (index, e);
        let relay = trust
            .verify_signed(&hop.signer_cert, &hop.statement, &hop.signature, now)
            .map_err(|e| at(e.into()))?;
        let st = HopStatement::decode(hop.statement.as_slice())
            .map_err(|e| at(HopError::Malformed(e)))?;
        if st.relay != relay {
            return Err(at(HopError::RelayMismatch {
                signer: relay,
                named: st.relay,
            }));
        }
        if st.report_sha256 != report_sha256 {
            return Err(at(HopError::OtherReport));
        }
        if st.received_from != holder {
            return Err(at(HopError::WrongSender {
                said: st.received_from,
                held: holder,
            }));
        }
        if st.previous_hop_sha256 != previous {
            return Err(at(HopError::NotLinked));
        }
        previous = sha256(&hop.statement).to_vec();
        holder = relay;
    }
    Ok(holder)
}
