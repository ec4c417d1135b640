//! Structured logs on stderr, filtered by `RUST_LOG`; errors in one line.

/// Installs the log subscriber with `default` as the filter unless
/// `RUST_LOG` says otherwise; a second call is harmless.
pub fn init(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// `e` and its sources in one line, `a: b: c`. For errors whose top level
/// says little on its own (tonic's "transport error").
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        // Wrappers often repeat what they wrap; say it once.
        let text = c.to_string();
        if !s.ends_with(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = c.source();
    }
    s
}

/// A log line that repeats is written the first time, then at most once per
/// period with how many were left out in between: a flood of refusals or a
/// long outage stays visible without burying everything else.
#[derive(Debug)]
pub struct Throttle {
    every: std::time::Duration,
    state: std::sync::Mutex<(Option<tokio::time::Instant>, u64)>,
}

impl Throttle {
    /// Lets a line through at most once per `every`.
    pub const fn new(every: std::time::Duration) -> Self {
        Self {
            every,
            state: std::sync::Mutex::new((None, 0)),
        }
    }

    /// Whether to write the line now; if so, how many were left out since
    /// the last one written.
    pub fn allow(&self) -> Option<u64> {
        let now = tokio::time::Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (last, left_out) = &mut *state;
        match last {
            Some(at) if now.duration_since(*at) < self.every => {
                *left_out += 1;
                None
            }
            _ => {
                *last = Some(now);
                Some(std::mem::take(left_out))
            }
        }
    }
}

/// [`Throttle`]s by key (a peer and a reason, say), so that one peer's
/// repeated refusals are summarised without hiding another's first one.
/// Holds at most [`Throttles::MAX_KEYS`] keys; past that it starts afresh.
#[derive(Debug)]
pub struct Throttles {
    every: std::time::Duration,
    by_key: std::sync::Mutex<std::collections::HashMap<String, (tokio::time::Instant, u64)>>,
}

impl Throttles {
    /// Keys remembered at most.
    pub const MAX_KEYS: usize = 4096;

    /// Lets a line per key through at most once per `every`.
    pub fn new(every: std::time::Duration) -> Self {
        Self {
            every,
            by_key: std::sync::Mutex::default(),
        }
    }

    /// Like [`Throttle::allow`], for the line about `key`.
    pub fn allow(&self, key: &str) -> Option<u64> {
        let now = tokio::time::Instant::now();
        let mut all = self.by_key.lock().unwrap_or_else(|e| e.into_inner());
        if all.len() >= Self::MAX_KEYS && !all.contains_key(key) {
            all.clear();
        }
        match all.get_mut(key) {
            Some((at, left_out)) if now.duration_since(*at) < self.every => {
                *left_out += 1;
                None
            }
            Some((at, left_out)) => {
                *at = now;
                Some(std::mem::take(left_out))
            }
            None => {
                all.insert(key.to_string(), (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_throttle_lets_the_first_through_then_one_per_period_with_a_count() {
        let t = Throttle::new(Duration::from_secs(60));
        assert_eq!(t.allow(), Some(0));
        assert_eq!(t.allow(), None);
        assert_eq!(t.allow(), None);
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(t.allow(), Some(2), "two left out since the last line");
        assert_eq!(t.allow(), None);
    }
}
