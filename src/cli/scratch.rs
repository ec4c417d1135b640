//! A scratch directory for `demo` and `bench`: a fresh directory under the
//! system's temporary directory, removed again when dropped.

use std::path::{Path, PathBuf};

/// A directory that is removed, with everything in it, on drop.
#[derive(Debug)]
pub(crate) struct ScratchDir(PathBuf);

impl ScratchDir {
    /// Creates `<tmp>/zhibao-<what>-<pid>-<random>`.
    pub(crate) fn new(what: &str) -> std::io::Result<Self> {
        use ring::rand::SecureRandom;
        let mut random = [0u8; 6];
        ring::rand::SystemRandom::new()
            .fill(&mut random)
            .map_err(|_| std::io::Error::other("the OS random number generator failed"))?;
        let name = format!(
            "zhibao-{what}-{}-{}",
            std::process::id(),
            zhibao::digest::hex(&random)
        );
        let path = std::env::temp_dir().join(name);
        // `create_dir` (not `_all`) fails if it exists: the directory is ours.
        std::fs::create_dir(&path)?;
        Ok(Self(path))
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
