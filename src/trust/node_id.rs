//! Node ids: a peer's identity comes only from its verified certificate, as
//! the `urn:zhibao:node:<id>` URI SAN, and an id must be usable both there
//! and as a DNS name.

/// The URI SAN prefix that names a node in its certificate.
pub const NODE_URI_PREFIX: &str = "urn:zhibao:node:";

/// A node id that cannot name a node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid node id {0:?}: use 1-63 characters from a-z, 0-9 and '-', starting and ending with a letter or digit"
)]
pub struct BadNodeId(pub String);

/// Checks that a node id is usable both in the URI SAN and as a DNS name.
pub fn validate_node_id(id: &str) -> Result<(), BadNodeId> {
    let ok = !id.is_empty()
        && id.len() <= 63
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
        && !id.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(BadNodeId(id.to_string()))
    }
}

/// The node id in a certificate's `urn:zhibao:node:<id>` URI SAN, if it
/// names exactly one valid node (a certificate naming two is ambiguous and
/// names none).
pub fn node_id_of(cert_der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    let mut ids = san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri) => uri.strip_prefix(NODE_URI_PREFIX),
            _ => None,
        });
    let id = ids.next()?;
    if ids.next().is_some() || validate_node_id(id).is_err() {
        return None;
    }
    Some(id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_with_uris(uris: &[&str]) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.subject_alt_names = uris
            .iter()
            .map(|u| rcgen::SanType::URI((*u).try_into().unwrap()))
            .collect();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn a_certificate_names_one_node_or_none() {
        assert_eq!(
            node_id_of(&cert_with_uris(&["urn:zhibao:node:county-a"])).as_deref(),
            Some("county-a")
        );
        assert_eq!(
            node_id_of(&cert_with_uris(&["urn:zhibao:node:a", "urn:zhibao:node:b"])),
            None
        );
        assert_eq!(
            node_id_of(&cert_with_uris(&["urn:zhibao:node:Bad_Id"])),
            None
        );
        assert_eq!(node_id_of(&cert_with_uris(&["https://example.org/"])), None);
        assert_eq!(node_id_of(b"not a certificate"), None);
    }

    #[test]
    fn node_ids_are_checked() {
        assert!(validate_node_id("county-7").is_ok());
        for bad in ["", "-a", "a-", "A", "a_b", "a/b", &"x".repeat(64)] {
            assert!(validate_node_id(bad).is_err(), "{bad:?}");
        }
    }
}
