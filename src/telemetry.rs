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
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
