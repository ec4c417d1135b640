//! The key usage a certificate must allow for what zhibao does with its
//! key: sign (a TLS 1.3 handshake, a report, a hop record, a receipt).
//!
//! webpki checks the extended key usage (client or server authentication)
//! but not the key usage extension (RFC 5280 §4.2.1.3). RFC 8446 §4.4.2.2
//! asks for `digitalSignature` where that extension is present, and so does
//! a signed report: a key whose certificate allows it only to sign
//! certificates or CRLs, or only to agree keys, signs nothing here. A
//! certificate without the extension is not limited by it (RFC 5280).

/// Whether `cert_der`'s key may make digital signatures; `Err` says why
/// not: the certificate does not parse, its key usage extension is
/// malformed or repeated, or it leaves out `digitalSignature`.
pub fn may_sign(cert_der: &[u8]) -> Result<(), &'static str> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|_| "the certificate does not parse")?;
    match cert.key_usage() {
        Ok(None) => Ok(()),
        Ok(Some(ku)) if ku.value.digital_signature() => Ok(()),
        Ok(Some(_)) => Err("its key usage leaves out digitalSignature"),
        Err(_) => Err("its key usage extension is malformed or repeated"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::KeyUsagePurpose as K;

    fn cert_with(usages: Option<Vec<K>>) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let mut params = rcgen::CertificateParams::default();
        if let Some(usages) = usages {
            params.key_usages = usages;
        }
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn a_key_signs_only_if_its_key_usage_allows_digital_signatures() {
        assert_eq!(may_sign(&cert_with(None)), Ok(()), "no extension: no limit");
        assert_eq!(
            may_sign(&cert_with(Some(vec![K::DigitalSignature]))),
            Ok(())
        );
        for only in [vec![K::KeyCertSign, K::CrlSign], vec![K::KeyAgreement]] {
            assert_eq!(
                may_sign(&cert_with(Some(only))),
                Err("its key usage leaves out digitalSignature")
            );
        }
        assert!(may_sign(b"not a certificate").is_err());
    }
}
