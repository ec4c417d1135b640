//! Unit tests of the deadline watch on tokio's paused clock.
