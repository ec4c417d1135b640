//! `zhibao demo`.
