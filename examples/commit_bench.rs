//! How long one write alone takes the store: a report put into a hub's
//! inbox and made durable (the log frame and its `fdatasync`, redb's
//! apply and commit), committed on the caller's thread as on a quiet node,
//! one after another. It measures the store alone: no TLS, no signature.
//!
//! `cargo run --release --example commit_bench [WRITES] [PAUSE_MS]`
//! (default 4000 writes, back to back); with `PAUSE_MS`, the writes come
//! that far apart, as a quiet node's do (a county's reports minutes apart).
//! The store goes in a temporary directory under `TMPDIR` (else `/tmp`),
//! which should be on the disk under test.

use zhibao::store::{Destination, ItemRecord, Store};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let writes: usize = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 4000,
    };
    if writes == 0 {
        return Err("WRITES must be at least 1".into());
    }
    let pause = match std::env::args().nth(2) {
        Some(ms) => std::time::Duration::from_millis(ms.parse()?),
        None => std::time::Duration::ZERO,
    };
    let dir = tempfile::tempdir()?;
    let store = Store::open(&dir.path().join("s.redb"))?;
    let mut took = Vec::with_capacity(writes);
    for i in 0..writes {
        let record = ItemRecord {
            signed: vec![1; 1200],
            lane: 2,
            deadline_ms: zhibao::clock::now_ms() + 60_000,
            sha256: vec![7; 32],
            from: "county-a".into(),
            ..Default::default()
        };
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        let started = std::time::Instant::now();
        store
            .alone()
            .put(format!("item-{i}"), record, Destination::Inbox)
            .await?;
        took.push(started.elapsed().as_micros() as u64);
    }
    store.close().await;
    took.sort_unstable();
    let at = |q: f64| took[((took.len() - 1) as f64 * q) as usize];
    let mean = took.iter().sum::<u64>() / took.len() as u64;
    let apart = if pause.is_zero() {
        String::new()
    } else {
        format!(" {} ms apart", pause.as_millis())
    };
    println!(
        "{writes} writes alone{apart}, 1,200-byte reports into the inbox: p50 {} µs, p90 {} µs, p99 {} µs, mean {mean} µs",
        at(0.5),
        at(0.9),
        at(0.99)
    );
    Ok(())
}
