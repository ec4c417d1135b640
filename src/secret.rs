//! Shared secrets a person or a program presents to a node (the web desk's
//! login token and CSRF tokens, the metrics scraper's bearer token):
//! compared in constant time, and read from files an operator writes.

use std::path::Path;

/// Whether two secrets are equal, in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a secret's file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    /// It could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It holds nothing but white space, or is not UTF-8 text.
    #[error("{path}: holds no secret (write one line of text, e.g. `openssl rand -hex 32`)")]
    Empty {
        /// The file.
        path: std::path::PathBuf,
    },
}

/// The secret in `path`: its text without the white space around it (a
/// trailing newline, as editors and `echo` leave). Refuses an empty one.
pub fn read_secret_file(path: &Path) -> Result<String, SecretFileError> {
    let bytes = std::fs::read(path).map_err(|source| SecretFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    match String::from_utf8(bytes) {
        Ok(text) if !text.trim().is_empty() => Ok(text.trim().to_string()),
        _ => Err(SecretFileError::Empty {
            path: path.to_path_buf(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
        assert!(!same_secret("", "a"));
    }

    #[test]
    fn a_secret_file_is_read_trimmed_and_an_empty_or_missing_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  s3cret\n").unwrap();
        assert_eq!(read_secret_file(&path).unwrap(), "s3cret");
        std::fs::write(&path, " \n\t").unwrap();
        let e = read_secret_file(&path).unwrap_err();
        assert!(matches!(e, SecretFileError::Empty { .. }), "{e}");
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        assert!(matches!(
            read_secret_file(&path),
            Err(SecretFileError::Empty { .. })
        ));
        let e = read_secret_file(&dir.path().join("absent")).unwrap_err();
        assert!(matches!(e, SecretFileError::Read { .. }), "{e}");
        assert!(e.to_string().contains("absent"), "{e}");
    }
}
