//! The region's CRL: checked against the CA before it is used, numbered, and
//! with a freshness the node watches.
//!
//! A CRL is taken only if the region CA signed it. A node keeps the last
//! good one when the file disappears or goes bad, and only ever replaces it
//! by one with a higher CRL number when it comes down the tree. Past its
//! `nextUpdate` a CRL is tolerated for a configured grace, with an alarm;
//! after that the node refuses relay traffic until a fresh one arrives.

use std::time::{Duration, SystemTime};

use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

/// What a CRL says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrlInfo {
    /// Its CRL number (0 if it has none).
    pub number: u64,
    /// `thisUpdate`, Unix seconds.
    pub this_update: i64,
    /// `nextUpdate`, Unix seconds, if it names one.
    pub next_update: Option<i64>,
}

/// Why a CRL is not the region's.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CrlError {
    /// The bytes are not a CRL.
    #[error("not a CRL: {0}")]
    Malformed(String),
    /// Issued by another authority than the region CA.
    #[error("issued by {issuer:?}, not by the region CA {ca:?}")]
    OtherIssuer {
        /// The CRL's issuer.
        issuer: String,
        /// The CA's subject.
        ca: String,
    },
    /// The signature does not verify with the CA's key.
    #[error("its signature does not verify with the region CA's key")]
    BadSignature,
}

/// Checks that `crl_der` is a CRL the region CA (`ca_der`) signed; returns
/// what it says about itself.
pub fn check(ca_der: &[u8], crl_der: &[u8]) -> Result<CrlInfo, CrlError> {
    let malformed = |e: &dyn std::fmt::Display| CrlError::Malformed(e.to_string());
    let (_, ca) = x509_parser::parse_x509_certificate(ca_der).map_err(|e| malformed(&e))?;
    let (rest, crl) = CertificateRevocationList::from_der(crl_der).map_err(|e| malformed(&e))?;
    // Strict DER, as the TLS layer will parse it: x509-parser alone lets
    // through an outer signature algorithm with the wrong tag (found by
    // fuzzing), which would make one signed CRL many different byte strings.
    if !rest.is_empty() {
        return Err(CrlError::Malformed("trailing bytes after the CRL".into()));
    }
    webpki::OwnedCertRevocationList::from_der(crl_der).map_err(|e| malformed(&format!("{e:?}")))?;
    if crl.signature_algorithm != crl.tbs_cert_list.signature {
        return Err(CrlError::Malformed(
            "its signature algorithm differs from the one inside what is signed".into(),
        ));
    }
    if crl.issuer().as_raw() != ca.subject().as_raw() {
        return Err(CrlError::OtherIssuer {
            issuer: crl.issuer().to_string(),
            ca: ca.subject().to_string(),
        });
    }
    x509_parser::verify::verify_signature(
        ca.public_key(),
        &crl.signature_algorithm,
        &crl.signature_value,
        crl.tbs_cert_list.as_ref(),
    )
    .map_err(|_| CrlError::BadSignature)?;
    Ok(CrlInfo {
        number: crl
            .crl_number()
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0),
        this_update: crl.last_update().timestamp(),
        next_update: crl.next_update().map(|t| t.timestamp()),
    })
}

/// How fresh the CRL in force is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// No CRL is configured.
    None,
    /// Before its `nextUpdate` (or it names none).
    Fresh,
    /// Past its `nextUpdate`, within the grace: tolerated, alarmed.
    Grace {
        /// Its `nextUpdate`, Unix seconds.
        expired: i64,
        /// When relay traffic stops, Unix seconds.
        refuse_at: i64,
    },
    /// Past the grace: relay traffic is refused until a fresh CRL arrives.
    Stale {
        /// Its `nextUpdate`, Unix seconds.
        expired: i64,
    },
}

impl Freshness {
    /// The freshness of `crl` at `now`, with `grace` after its `nextUpdate`.
    pub fn of(crl: Option<&CrlInfo>, grace: Duration, now: SystemTime) -> Self {
        let Some(next) = crl.and_then(|c| c.next_update) else {
            return if crl.is_some() {
                Self::Fresh
            } else {
                Self::None
            };
        };
        let now = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let refuse_at = next.saturating_add(i64::try_from(grace.as_secs()).unwrap_or(i64::MAX));
        if now < next {
            Self::Fresh
        } else if now < refuse_at {
            Self::Grace {
                expired: next,
                refuse_at,
            }
        } else {
            Self::Stale { expired: next }
        }
    }

    /// Whether relay traffic must stop.
    pub fn is_stale(&self) -> bool {
        matches!(self, Self::Stale { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_der_the_ca_signed_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        crate::pki::init(&certs, "test", "hub", &[]).unwrap();
        let trust = crate::trust::Trust::load(
            &certs.join(crate::trust::CA_CERT),
            Some(&certs.join(crate::trust::CRL)),
        )
        .unwrap();
        let ca = trust.snapshot().ca.clone();
        let crl = trust.crl_der().unwrap();
        assert!(check(&ca, &crl).is_ok());
        // The outer signature algorithm is outside what is signed: a wrong
        // tag there (fuzzing found it let through) is refused.
        let tbs_len = {
            let (_, parsed) = CertificateRevocationList::from_der(&crl).unwrap();
            parsed.tbs_cert_list.as_ref().len()
        };
        let header = if crl[1] & 0x80 != 0 {
            2 + usize::from(crl[1] & 0x7f)
        } else {
            2
        };
        let mut wrong_tag = crl.clone();
        assert_eq!(
            wrong_tag[header + tbs_len],
            0x30,
            "the outer AlgorithmIdentifier"
        );
        wrong_tag[header + tbs_len] = 0x70;
        assert!(matches!(
            check(&ca, &wrong_tag),
            Err(CrlError::Malformed(_))
        ));
        let mut trailing = crl.clone();
        trailing.push(0);
        assert!(matches!(check(&ca, &trailing), Err(CrlError::Malformed(_))));
    }
}
