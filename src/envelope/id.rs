//! Item ids: chosen by the origin, time-ordered, checked wherever one
//! arrives from the network.

use crate::clock::now_ms;
use crate::digest::hex;

/// Longest item id accepted from the network.
pub const MAX_ID_LEN: usize = 64;

/// An item id that cannot be one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadItemId {
    /// Empty or longer than [`MAX_ID_LEN`].
    #[error("item id must be 1 to {MAX_ID_LEN} characters")]
    Length,
    /// A character outside letters, digits, `-` and `_`.
    #[error("item id may hold only letters, digits, '-' and '_'")]
    Character,
}

/// A new item id: 12 hex digits of milliseconds, then 20 random hex digits,
/// so ids sort by creation time and never collide.
///
/// # Panics
/// If the operating system's random number generator fails, as key
/// generation would a moment earlier.
pub fn new_item_id() -> String {
    use ring::rand::SecureRandom;
    let mut random = [0u8; 10];
    ring::rand::SystemRandom::new()
        .fill(&mut random)
        .expect("the OS random number generator failed");
    format!("{:012x}{}", now_ms() & 0xffff_ffff_ffff, hex(&random))
}

/// Checks an id from the network: short, printable, no separators.
pub fn check_id(id: &str) -> Result<(), BadItemId> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(BadItemId::Length);
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(BadItemId::Character);
    }
    Ok(())
}
