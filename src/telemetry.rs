//! Logs on stderr (or a file), filtered by `RUST_LOG`: human text by
//! default, or one JSON object per line (`--log-format json`, `[log]
//! format`) for log shippers; errors in one line; rate-limited warnings.
//!
//! A JSON line is tracing-subscriber's standard shape: `timestamp` (UTC,
//! RFC 3339), `level`, `target`, `fields` (with `message` and every
//! structured field of the event: `peer`, `alarm`, `item`, `why`...) and
//! the `span`s it happened in. Text lines are stamped in the node's local
//! time (`deadlines.utc_offset`) with the offset written out.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// One line of text per event, for people (the default).
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Where and how to log.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// The filter unless `RUST_LOG` says otherwise, e.g. `info,h2=warn`.
    pub default_filter: String,
    /// Text or JSON.
    pub format: LogFormat,
    /// Append to this file instead of writing to stderr.
    pub file: Option<PathBuf>,
    /// Text lines' timestamps this many seconds east of UTC (the node's
    /// local time); JSON timestamps are always UTC.
    pub utc_offset_secs: i32,
}

/// Installs the log subscriber with `default` as the filter unless
/// `RUST_LOG` says otherwise; text on stderr. A second call is harmless.
pub fn init(default: &str) {
    let _ = init_with(&LogOptions {
        default_filter: default.to_string(),
        ..LogOptions::default()
    });
}

/// Installs the log subscriber as `opts` says. A second call is harmless
/// (the first one stays).
///
/// # Errors
/// The log file cannot be opened for appending.
pub fn init_with(opts: &LogOptions) -> std::io::Result<()> {
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    use tracing_subscriber::prelude::*;

    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&opts.default_filter));
    let (writer, ansi) = match &opts.file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            (BoxMakeWriter::new(std::sync::Mutex::new(file)), false)
        }
        None => (
            BoxMakeWriter::new(std::io::stderr),
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
        ),
    };
    let layer = match opts.format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(writer)
            .boxed(),
        LogFormat::Text => {
            let offset = time::UtcOffset::from_whole_seconds(opts.utc_offset_secs)
                .unwrap_or(time::UtcOffset::UTC);
            let timer = tracing_subscriber::fmt::time::OffsetTime::new(
                offset,
                time::format_description::well_known::Rfc3339,
            );
            tracing_subscriber::fmt::layer()
                .with_timer(timer)
                .with_ansi(ansi)
                .with_writer(writer)
                .boxed()
        }
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(layer)
        .try_init();
    Ok(())
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
