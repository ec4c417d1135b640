//! Capped exponential backoff with full jitter, between reconnections.

use std::time::Duration;

/// Capped exponential backoff with full jitter.
#[derive(Debug)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            current: min,
        }
    }

    /// Back to the shortest wait, after a session that got somewhere.
    pub(crate) fn reset(&mut self) {
        self.current = self.min;
    }

    /// The next wait: uniformly random in [min, current], then current doubles.
    pub(crate) fn next_delay(&mut self) -> Duration {
        use ring::rand::SecureRandom;
        let mut b = [0u8; 4];
        // Without randomness the wait is `min`: still a wait, just no jitter.
        let _ = ring::rand::SystemRandom::new().fill(&mut b);
        let frac = f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX);
        let span = self.current.saturating_sub(self.min);
        let delay = self.min + span.mul_f64(frac);
        self.current = (self.current * 2).min(self.max);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
        let mut last_cap = Duration::ZERO;
        for _ in 0..20 {
            let d = b.next_delay();
            assert!(
                d >= Duration::from_millis(50) && d <= Duration::from_secs(2),
                "{d:?}"
            );
            last_cap = b.current;
        }
        assert_eq!(last_cap, Duration::from_secs(2));
        b.reset();
        assert_eq!(b.current, Duration::from_millis(50));
    }
}
