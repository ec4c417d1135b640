//! `zhibao bench`: throughput and latency on loopback, measured, not asserted.
//!
//! The hub and the county nodes run as real `zhibao serve` child processes
//! (so their peak RSS can be read from `/proc`); the load generators run
//! in this process.
//!
//! - **hub ingest**: reports signed in advance (in the order they are sent,
//!   so their ids rise across the streams together, as a live feed's do)
//!   are streamed straight into the hub over mutual TLS `Relay.Forward`,
//!   the way a broker benchmark publishes and awaits acks: one stream with
//!   one item at a time (latency), then many streams with a window each
//!   (throughput). Every item is verified, stored with fsync and answered
//!   with a signed receipt.
//! - **end to end**: operators submit to county nodes over their sockets and
//!   wait for the hub's receipt to come back to the node.
//! - **emergency under load**: the emergency p99 on an idle system, then
//!   while routine reports saturate every node.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use zhibao::class::Class;
use zhibao::client::Operator;
use zhibao::clock::now_ms;
use zhibao::config::{NodeConfig, RelayListen, Role, UpstreamConfig};
use zhibao::envelope;
use zhibao::proto::{
    ForwardRequest, Report, SignedReport, forward_request, forward_response,
    relay_client::RelayClient,
};
use zhibao::trust::{Identity, Trust};
use zhibao::{pki, trust};

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Items for the ingest throughput run.
    pub ingest_items: usize,
    /// Concurrent `Relay.Forward` streams for the ingest throughput run.
    pub streams: usize,
    /// Items in flight per stream.
    pub window: usize,
    /// Report body size, bytes.
    pub body: usize,
    /// County nodes for the end-to-end runs.
    pub nodes: usize,
    /// Items per end-to-end throughput run.
    pub e2e_items: usize,
    /// Concurrent operator calls per node in the end-to-end runs.
    pub e2e_concurrency: usize,
    /// Emergency probes (sequential) per emergency measurement.
    pub probes: usize,
    /// Write the results as JSON here.
    pub json: Option<PathBuf>,
    /// One TLS connection per ingest stream (as the brokers' benchmarks
    /// open one per publisher) rather than one per county identity.
    pub connection_per_stream: bool,
    /// The hub serves its Prometheus metrics during the runs.
    pub hub_metrics: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            ingest_items: 100_000,
            streams: 64,
            window: 32,
            body: 1024,
            nodes: 4,
            e2e_items: 20_000,
            e2e_concurrency: 64,
            probes: 300,
            json: None,
            connection_per_stream: false,
            hub_metrics: false,
        }
    }
}

/// Latency figures in microseconds.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Latency {
    /// Samples.
    pub n: usize,
    /// Median.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Maximum.
    pub max_us: u64,
}

impl Latency {
    /// This p99 ÷ `idle`'s; 0 without an idle figure.
    fn p99_over(&self, idle: &Latency) -> f64 {
        if idle.p99_us > 0 {
            self.p99_us as f64 / idle.p99_us as f64
        } else {
            0.0
        }
    }

    fn of(mut samples: Vec<Duration>) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort();
        let at = |q: f64| {
            let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
            u64::try_from(samples[i].as_micros()).unwrap_or(u64::MAX)
        };
        Self {
            n: samples.len(),
            p50_us: at(0.50),
            p99_us: at(0.99),
            max_us: at(1.0),
        }
    }
}

/// One benchmark's results.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Results {
    /// Report body size, bytes.
    pub body_bytes: usize,
    /// Hub ingest, one stream, one item at a time.
    pub ingest_single: Latency,
    /// Hub ingest throughput, items/s.
    pub ingest_items_per_s: f64,
    /// Streams and window used for it.
    pub ingest_streams: usize,
    /// Items in flight per stream.
    pub ingest_window: usize,
    /// TLS connections the ingest streams share (one per county identity).
    pub ingest_connections: usize,
    /// The hub's bounds as the run set them: HTTP/2 streams at once on
    /// one connection, items in flight from one child, and routine bytes
    /// in flight node-wide (`limits.*`; see `admit_ingest`).
    pub hub_streams_per_connection: u32,
    pub hub_items_per_peer: usize,
    pub hub_bytes_in_flight: usize,
    /// County nodes in the end-to-end runs.
    pub nodes: usize,
    /// Concurrent operators per node in the end-to-end runs.
    pub e2e_concurrency: usize,
    /// Send→receipt latency during the throughput run.
    pub ingest_latency: Latency,
    /// Emergencies sent straight into an idle hub, one at a time, on their
    /// own connection.
    pub hub_emergency_idle: Latency,
    /// The same, during the ingest throughput run (only probes answered
    /// while it still ran).
    pub hub_emergency_loaded: Latency,
    /// End to end, one operator, one item at a time.
    pub e2e_single: Latency,
    /// End-to-end throughput, items/s, all nodes together.
    pub e2e_items_per_s: f64,
    /// End-to-end latency per class during the throughput run.
    pub e2e_by_class: HashMap<String, Latency>,
    /// Emergency latency on an idle system.
    pub emergency_idle: Latency,
    /// Emergency latency under a saturating routine load.
    pub emergency_loaded: Latency,
    /// Emergency latency end to end (an operator at a county node, submit
    /// → the hub's receipt stored there), during a second hub ingest run
    /// like the first (only probes answered while it still ran): the
    /// county quiet, the hub saturated.
    pub emergency_hub_loaded: Latency,
    /// Items of that second run: the first run's, or more, so that it
    /// lasts for every probe (see `outlasting_probes`).
    pub hub_loaded_items: usize,
    /// Routine items receipted during the loaded emergency run, per second.
    pub loaded_routine_items_per_s: f64,
    /// The hub process's CPU time (user and system, all its threads) during
    /// the ingest throughput run, per receipted item, µs.
    pub ingest_hub_cpu_us_per_item: f64,
    /// The hub's peak RSS, KiB.
    pub hub_peak_rss_kib: u64,
    /// A county node's peak RSS, KiB.
    pub node_peak_rss_kib: u64,
    /// The disk's and the CPU's own figures, measured as the run started.
    pub floor: super::bench_floor::Floor,
}

/// Items the hub's metrics at `addr` count as accepted, all classes.
async fn scrape_accepted(addr: std::net::SocketAddr) -> anyhow::Result<u64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await?;
    let req = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await?;
    let mut text = String::new();
    tcp.read_to_string(&mut text).await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("zhibao_items_accepted_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum())
}

/// A `zhibao serve` child process.
pub(super) struct Daemon {
    child: Child,
    pub(super) socket: PathBuf,
}

impl Daemon {
    pub(super) fn start(cfg: &NodeConfig, dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(format!("{}.toml", cfg.node_id));
        std::fs::write(&path, cfg.to_toml()?)?;
        let mut child = Command::new(std::env::current_exe()?)
            .args(["serve", "--config"])
            .arg(&path)
            .env(
                "RUST_LOG",
                std::env::var("ZHIBAO_BENCH_LOG").unwrap_or_else(|_| "error".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting zhibao serve")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        if !line.starts_with("ready ") {
            bail!("{} did not start: {line:?}", cfg.node_id);
        }
        Ok(Self {
            child,
            socket: cfg.operator_socket(),
        })
    }

    /// CPU time the process has used so far (user and system, all
    /// threads), from `/proc/<pid>/stat`.
    fn cpu_time(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name, which ends at the last ')':
        // utime and stime are the 12th and 13th of them, in clock ticks.
        let ticks: u64 = stat
            .rsplit_once(')')
            .map(|(_, rest)| {
                rest.split_whitespace()
                    .skip(11)
                    .take(2)
                    .filter_map(|f| f.parse::<u64>().ok())
                    .sum()
            })
            .unwrap_or(0);
        let per_second = rustix::param::clock_ticks_per_second().max(1);
        Duration::from_secs_f64(ticks as f64 / per_second as f64)
    }

    /// Peak resident set size, KiB (VmHWM).
    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SIGTERM for a clean store close, then reap.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn sign_reports(ids: &[Arc<Identity>], n: usize, body: usize, class: Class) -> Vec<SignedReport> {
    (0..n)
        .map(|i| sign_report(&ids[i % ids.len()], i, body, class))
        .collect()
}

fn sign_report(id: &Identity, i: usize, body: usize, class: Class) -> SignedReport {
    let report = Report {
        id: envelope::new_item_id(),
        origin: id.node_id().to_string(),
        priority: class.to_proto() as i32,
        title: format!("bench {i}"),
        body: vec![b'x'; body],
        created_unix_ms: now_ms(),
        ..Default::default()
    };
    envelope::sign(&report, id)
}

/// A signed report ready to send, with the digest its receipt will name:
/// taken when it is signed, so that the load generator does not spend the
/// run's CPU hashing what it sends (no broker's client does).
struct Outgoing {
    signed: SignedReport,
    sha256: [u8; 32],
}

impl From<SignedReport> for Outgoing {
    fn from(signed: SignedReport) -> Self {
        let sha256 = zhibao::digest::sha256(&signed.report);
        Self { signed, sha256 }
    }
}

/// `n` reports for `streams` streams, signed in the order they will be
/// sent (report `k` on stream `k % streams`), so that their ids and
/// creation times rise across the streams together, as a live feed's do.
/// Stream `i` signs as `ids[i % ids.len()]`.
fn sign_streams(
    ids: &[Arc<Identity>],
    streams: usize,
    n: usize,
    body: usize,
    class: Class,
) -> Vec<Vec<Outgoing>> {
    let mut chunks: Vec<Vec<Outgoing>> = (0..streams)
        .map(|_| Vec::with_capacity(n.div_ceil(streams)))
        .collect();
    for k in 0..n {
        let i = k % streams;
        chunks[i].push(sign_report(&ids[i % ids.len()], k, body, class).into());
    }
    chunks
}

/// Raises the hub's per-connection and per-child bounds, where their
/// defaults are lower, to what the ingest run puts in flight at once:
/// `opts.streams` streams over `connections` connections made as
/// `identities` counties in turn, `opts.window` deep each. Past the first
/// bound a stream waits for an earlier one to end, and past the second
/// items wait unread, so the load would be less than it says (with the
/// defaults, 8 streams and 256 items of a 64 × 32 run). The bounds on
/// bytes in flight stay as configured: they are what keeps the hub's
/// memory flat, and the run measures them.
fn admit_ingest(
    limits: &mut zhibao::config::Limits,
    opts: &BenchOptions,
    connections: usize,
    identities: usize,
) {
    let streams = opts.streams.max(1);
    let per_connection = streams.div_ceil(connections.max(1));
    let per_peer = streams.div_ceil(connections.min(identities).max(1)) * opts.window.max(1);
    limits.max_streams_per_connection = limits
        .max_streams_per_connection
        .max(u32::try_from(per_connection).unwrap_or(u32::MAX));
    limits.max_items_in_flight_per_peer = limits.max_items_in_flight_per_peer.max(per_peer);
}

/// The ingest run's connections to the hub: connection `i` as county
/// `i % identities.len()`.
async fn ingest_channels(
    identities: &[Arc<Identity>],
    trust: &Trust,
    hub_addr: &str,
    connections: usize,
) -> anyhow::Result<Vec<tonic::transport::Channel>> {
    let mut channels = Vec::with_capacity(connections);
    for i in 0..connections {
        let id = &identities[i % identities.len()];
        let tls = Arc::new(zhibao::tls::client_config(id, &trust.snapshot(), "hub")?);
        channels
            .push(zhibao::tls::connect_channel(hub_addr, tls, "hub", Default::default()).await?);
    }
    Ok(channels)
}

/// A relay client that takes messages as large as the bench sends.
fn big(channel: tonic::transport::Channel) -> RelayClient<tonic::transport::Channel> {
    RelayClient::new(channel)
        .max_decoding_message_size(4 << 20)
        .max_encoding_message_size(4 << 20)
}

/// The ingest load: chunk `i` on stream `i`, over connection `i %
/// channels.len()`, each task `window` in flight; every item's
/// send→receipt latency.
async fn ingest_load(
    channels: Vec<tonic::transport::Channel>,
    chunks: Vec<Vec<Outgoing>>,
    window: usize,
) -> anyhow::Result<Vec<Duration>> {
    let mut tasks = Vec::with_capacity(chunks.len());
    let mut total = 0;
    for (i, chunk) in chunks.into_iter().enumerate() {
        total += chunk.len();
        let client = big(channels[i % channels.len()].clone());
        tasks.push(tokio::spawn(forward_stream(client, chunk, window)));
    }
    let mut all = Vec::with_capacity(total);
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(all)
}

/// Streams `items` through one `Relay.Forward` stream with `window` in flight;
/// returns send→receipt latencies.
async fn forward_stream(
    mut client: RelayClient<tonic::transport::Channel>,
    items: Vec<Outgoing>,
    window: usize,
) -> anyhow::Result<Vec<Duration>> {
    let (tx, rx) = mpsc::channel(window.max(1));
    let mut responses = client.forward(ReceiverStream::new(rx)).await?.into_inner();
    let mut sent: HashMap<[u8; 32], Instant> = HashMap::with_capacity(window);
    let mut latencies = Vec::with_capacity(items.len());
    let mut queue = items.into_iter();
    for item in queue.by_ref().take(window) {
        sent.insert(item.sha256, Instant::now());
        tx.send(ForwardRequest {
            kind: Some(forward_request::Kind::Item(item.signed)),
        })
        .await?;
    }
    while !sent.is_empty() {
        let resp = responses
            .message()
            .await?
            .context("hub closed the stream")?;
        let r = match resp.result {
            Some(forward_response::Result::Receipt(r)) => r,
            // Pushed unasked when the stream opens.
            Some(forward_response::Result::Crl(_)) => continue,
            _ => bail!("hub refused a benchmark item: {resp:?}"),
        };
        let receipt: zhibao::proto::Receipt = prost::Message::decode(r.receipt.as_slice())?;
        if let Some(t) = <[u8; 32]>::try_from(receipt.report_sha256.as_slice())
            .ok()
            .and_then(|d| sent.remove(&d))
        {
            latencies.push(t.elapsed());
        }
        if let Some(item) = queue.next() {
            sent.insert(item.sha256, Instant::now());
            tx.send(ForwardRequest {
                kind: Some(forward_request::Kind::Item(item.signed)),
            })
            .await?;
        }
    }
    Ok(latencies)
}

/// How often the hub's emergency probe sends one: apart, like emergencies
/// that come independently of the load, so that a loaded run's probes are
/// spread over seconds of it (its full commits among them) rather than
/// sent back to back in its first tenth of a second.
const PROBE_EVERY: Duration = Duration::from_millis(20);

/// How long after a loaded run starts its probes begin: once the load has
/// had a moment to fill the hub.
const PROBES_AFTER: Duration = Duration::from_millis(300);

/// Items for the second hub ingest run, under which a county's
/// emergencies are probed: as many as the first run's, or more if at the
/// first run's `rate` (items/s) they would run out before all `probes`
/// are sent. A p99 over fewer than 51 samples is their worst one (a run of
/// 40,000 items at 64 streams used to end after 49 probes, and whether
/// one of them met the hub's full commit decided the figure).
fn outlasting_probes(first: usize, rate: f64, probes: usize) -> usize {
    // Each probe waits for its receipt before the next is due: a few
    // milliseconds under load; and a margin for a slower second run.
    let probe = PROBE_EVERY + Duration::from_millis(10);
    let needed = PROBES_AFTER + probe * u32::try_from(probes).unwrap_or(u32::MAX);
    let needed = needed.as_secs_f64() * 1.5;
    // Bounded, so that a mismeasured rate cannot make the bench sign
    // millions of reports (never below `first`: ten times it, saturated).
    let cap = first.saturating_mul(10);
    if rate.is_finite() && rate > 0.0 {
        ((rate * needed).ceil() as usize).clamp(first, cap)
    } else {
        first
    }
}

/// Sends `n` emergencies into the hub one at a time, [`PROBE_EVERY`]
/// apart, as `id`, from a thread, runtime and connection of their own (so
/// they measure the hub, not this process's queue of load tasks); the
/// connection asks to be served apart, as a county's forwarder does for
/// its urgent items. With `during`, they start at its instant, and only
/// those answered while its flag is still set count.
fn hub_probe(
    addr: &str,
    id: &Arc<Identity>,
    trust: &Trust,
    n: usize,
    body: usize,
    during: Option<(Instant, Arc<std::sync::atomic::AtomicBool>)>,
) -> std::thread::JoinHandle<anyhow::Result<Vec<Duration>>> {
    let (addr, id, snapshot) = (addr.to_string(), id.clone(), trust.snapshot());
    let items = sign_reports(std::slice::from_ref(&id), n, body, Class::Emergency);
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let tls =
                zhibao::tls::asking_urgent(zhibao::tls::client_config(&id, &snapshot, "hub")?);
            let channel =
                zhibao::tls::connect_channel(&addr, Arc::new(tls), "hub", Default::default())
                    .await?;
            let mut client = RelayClient::new(channel);
            let (tx, rx) = mpsc::channel(1);
            let mut answers = client.forward(ReceiverStream::new(rx)).await?.into_inner();
            if let Some((at, _)) = &during {
                tokio::time::sleep_until((*at).into()).await;
            }
            let mut out = Vec::with_capacity(n);
            let mut every = tokio::time::interval(PROBE_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for item in items {
                every.tick().await;
                let t = Instant::now();
                tx.send(ForwardRequest {
                    kind: Some(forward_request::Kind::Item(item)),
                })
                .await?;
                loop {
                    let resp = answers.message().await?.context("hub closed the stream")?;
                    match resp.result {
                        Some(forward_response::Result::Receipt(_)) => break,
                        Some(forward_response::Result::Crl(_)) => continue,
                        _ => bail!("hub refused a benchmark emergency: {resp:?}"),
                    }
                }
                let took = t.elapsed();
                if let Some((_, running)) = &during
                    && !running.load(std::sync::atomic::Ordering::SeqCst)
                {
                    break;
                }
                out.push(took);
            }
            Ok(out)
        })
    })
}

async fn join_probe(
    probe: std::thread::JoinHandle<anyhow::Result<Vec<Duration>>>,
) -> anyhow::Result<Vec<Duration>> {
    tokio::task::spawn_blocking(move || probe.join())
        .await?
        .map_err(|_| anyhow::anyhow!("probe thread panicked"))?
}

/// Queues `n` routine items at a node that cannot reach its hub; prints its
/// peak and current RSS and the store's size.
pub async fn queue_memory(n: usize, body: usize) -> anyhow::Result<()> {
    zhibao::tls::install_crypto_provider();
    let tmp = super::scratch::ScratchDir::new("run")?;
    let dir = tmp.path();
    let pki_dir = dir.join("certs");
    pki::init(&pki_dir, "bench", "hub", &["county-1".to_string()])?;
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let mut cfg = NodeConfig::for_node("county-1", &pki_dir, &dir.join("data/county-1"));
    cfg.upstream = vec![UpstreamConfig {
        node_id: "hub".into(),
        addr: nowhere.to_string(),
        role: Role::Primary,
    }];
    let node = Daemon::start(&cfg, dir)?;
    let op = Operator::connect(&node.socket).await?;
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let mut op = op.clone();
        let next = next.clone();
        let payload = vec![b'q'; body];
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < n {
                op.submit(Class::Routine, "queued", payload.clone(), 0)
                    .await?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    let status = std::fs::read_to_string(format!("/proc/{}/status", node.child.id()))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map_or_else(String::new, |v| v.trim().to_string())
    };
    let store = std::fs::metadata(dir.join("data/county-1/store.redb"))?.len();
    println!(
        "{n} routine items of {body} bytes queued in {secs:.0} s ({:.0} submissions/s); node RSS now {}, peak {}; store {} MiB",
        n as f64 / secs,
        field("VmRSS:"),
        field("VmHWM:"),
        store >> 20
    );
    Ok(())
}

/// The worst one child can do to a hub's memory with one connection: for
/// `length`, it pushes reports of the largest size the hub takes on as many
/// streams as a connection may open, never reading the answers. Prints the
/// hub's peak RSS, which the configured per-child bounds must keep flat.
pub(crate) async fn flood_memory(length: Duration) -> anyhow::Result<()> {
    zhibao::tls::install_crypto_provider();
    let tmp = super::scratch::ScratchDir::new("flood")?;
    let dir = tmp.path();
    let pki_dir = dir.join("certs");
    pki::init(&pki_dir, "bench", "hub", &["county-1".to_string()])?;
    let free = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let mut cfg = NodeConfig::for_node("hub", &pki_dir, &dir.join("data/hub"));
    cfg.relay = Some(RelayListen {
        listen: free,
        consumers: Vec::new(),
    });
    let limits = cfg.limits.clone();
    let hub = Daemon::start(&cfg, dir)?;
    let baseline = hub.peak_rss_kib();
    let (cert, key) = trust::node_paths(&pki_dir, "county-1");
    let county = Identity::load(&cert, &key)?;
    let trust = Trust::load(&pki_dir.join(trust::CA_CERT), None)?;
    let tls = Arc::new(zhibao::tls::client_config(
        &county,
        &trust.snapshot(),
        "hub",
    )?);
    let channel =
        zhibao::tls::connect_channel(&free.to_string(), tls, "hub", Default::default()).await?;
    // One report as large as the hub takes, sent again and again: each copy
    // is read, verified and answered like a new one.
    let body = limits.max_report_bytes - 4096;
    let report = Report {
        id: envelope::new_item_id(),
        origin: "county-1".into(),
        priority: Class::Routine.to_proto() as i32,
        title: "flood".into(),
        body: vec![b'f'; body],
        created_unix_ms: now_ms(),
        ..Default::default()
    };
    let item = envelope::sign(&report, &county);
    let stop = Instant::now() + length;
    let mut tasks = Vec::new();
    for _ in 0..limits.max_streams_per_connection {
        let mut client = RelayClient::new(channel.clone())
            .max_decoding_message_size(4 << 20)
            .max_encoding_message_size(4 << 20);
        let item = item.clone();
        tasks.push(tokio::spawn(async move {
            let (tx, rx) = mpsc::channel(4);
            let call = client.forward(ReceiverStream::new(rx));
            let feed = async move {
                while Instant::now() < stop {
                    let req = ForwardRequest {
                        kind: Some(forward_request::Kind::Item(item.clone())),
                    };
                    if tx.send(req).await.is_err() {
                        break;
                    }
                }
            };
            // The answers are never read: the hub must push back, not buffer.
            let _ = tokio::time::timeout_at(stop.into(), futures::future::join(call, feed)).await;
        }));
    }
    let mut peak = baseline;
    while Instant::now() < stop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        peak = peak.max(hub.peak_rss_kib());
    }
    for t in tasks {
        let _ = t.await;
    }
    println!(
        "hub peak RSS {} MiB (at start {} MiB) after {} s of one county pushing {} KiB reports on {} streams of one connection without reading answers; bounds: {} MiB and {} items in flight per child",
        peak / 1024,
        baseline / 1024,
        length.as_secs(),
        body / 1024,
        limits.max_streams_per_connection,
        limits.max_bytes_in_flight_per_peer >> 20,
        limits.max_items_in_flight_per_peer,
    );
    Ok(())
}

/// Runs the benchmark and prints a table.
pub async fn run(opts: BenchOptions) -> anyhow::Result<Results> {
    zhibao::tls::install_crypto_provider();
    let tmp = super::scratch::ScratchDir::new("run")?;
    let dir = tmp.path();
    let pki_dir = dir.join("certs");
    let counties: Vec<String> = (1..=opts.nodes.max(1))
        .map(|i| format!("county-{i}"))
        .collect();
    pki::init(&pki_dir, "bench", "hub", &counties)?;
    let mut res = Results {
        body_bytes: opts.body,
        ingest_streams: opts.streams,
        ingest_window: opts.window,
        ingest_connections: if opts.connection_per_stream {
            opts.streams.max(1)
        } else {
            opts.streams.min(counties.len())
        },
        nodes: counties.len(),
        e2e_concurrency: opts.e2e_concurrency,
        ..Default::default()
    };
    let identities: Vec<Arc<Identity>> = counties
        .iter()
        .map(|c| {
            let (cert, key) = trust::node_paths(&pki_dir, c);
            Identity::load(&cert, &key).map(Arc::new)
        })
        .collect::<Result<_, _>>()?;
    // Before any node starts, so that nothing else writes to the disk.
    res.floor = super::bench_floor::Floor::measure(dir, &identities[0])
        .context("measuring this machine's floors in the scratch directory")?;

    let free = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let mut hub_cfg = NodeConfig::for_node("hub", &pki_dir, &dir.join("data/hub"));
    hub_cfg.relay = Some(RelayListen {
        listen: free,
        consumers: Vec::new(),
    });
    hub_cfg.limits.max_in_flight = opts.window.max(64);
    // Every ingest stream may be one county's connection; the emergency
    // probes and the county nodes' forwarders add their own.
    hub_cfg.limits.max_connections_per_peer = opts.streams.max(64) + 4;
    // Each stream connects as the county whose reports it carries: a hub
    // takes an item only from the node its custody chain says holds it.
    let connections = if opts.connection_per_stream {
        opts.streams.max(1)
    } else {
        identities.len()
    };
    admit_ingest(&mut hub_cfg.limits, &opts, connections, identities.len());
    res.hub_streams_per_connection = hub_cfg.limits.max_streams_per_connection;
    res.hub_items_per_peer = hub_cfg.limits.max_items_in_flight_per_peer;
    res.hub_bytes_in_flight = hub_cfg.limits.max_bytes_in_flight;
    if opts.hub_metrics {
        hub_cfg.metrics.listen = Some(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?);
    }
    let hub = Daemon::start(&hub_cfg, dir)?;
    let hub_addr = free.to_string();

    // Hub ingest.
    let trust = Trust::load(&pki_dir.join(trust::CA_CERT), None)?;
    let channels = ingest_channels(&identities, &trust, &hub_addr, connections).await?;

    eprintln!("hub ingest: one stream, one item at a time...");
    let single = sign_reports(&identities[..1], 2_000, opts.body, Class::Routine)
        .into_iter()
        .map(Outgoing::from)
        .collect();
    // On a task of its own, as the load's streams below and each of the
    // peer bench's clients are: the thread that drives the bench is woken
    // more slowly than a worker, which the figure would count.
    let lat = tokio::spawn(forward_stream(big(channels[0].clone()), single, 1)).await??;
    res.ingest_single = Latency::of(lat);

    eprintln!("hub ingest: emergency on an idle hub...");
    let probe = hub_probe(
        &hub_addr,
        &identities[0],
        &trust,
        opts.probes,
        opts.body,
        None,
    );
    res.hub_emergency_idle = Latency::of(join_probe(probe).await?);

    // The ingest run's reports; each run signs its own, fresh ids.
    let ingest_reports = |items: usize| {
        sign_streams(
            &identities,
            opts.streams.max(1),
            items,
            opts.body,
            Class::Routine,
        )
    };
    eprintln!("signing {} reports...", opts.ingest_items);
    let chunks = ingest_reports(opts.ingest_items);
    eprintln!(
        "hub ingest: {} streams x {} in flight...",
        opts.streams, opts.window
    );
    let total: usize = chunks.iter().map(Vec::len).sum();
    let cpu_before = hub.cpu_time();
    let started = Instant::now();
    let load = tokio::spawn(ingest_load(channels.clone(), chunks, opts.window));
    // Emergencies from another county while the load runs; they start once
    // the load has had a moment to fill the hub.
    let loaded = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let probe = hub_probe(
        &hub_addr,
        &identities[1 % identities.len()],
        &trust,
        opts.probes,
        opts.body,
        Some((started + PROBES_AFTER, loaded.clone())),
    );
    let all = load.await??;
    loaded.store(false, std::sync::atomic::Ordering::SeqCst);
    res.ingest_items_per_s = total as f64 / started.elapsed().as_secs_f64();
    res.ingest_hub_cpu_us_per_item =
        hub.cpu_time().saturating_sub(cpu_before).as_secs_f64() * 1e6 / total.max(1) as f64;
    res.ingest_latency = Latency::of(all);
    res.hub_emergency_loaded = Latency::of(join_probe(probe).await?);
    drop(channels);
    if let Some(addr) = hub_cfg.metrics.listen {
        let accepted = scrape_accepted(addr).await?;
        eprintln!("hub metrics on: {accepted} items counted as accepted");
    }

    // End to end through county nodes.
    let mut nodes = Vec::new();
    for c in &counties {
        let mut cfg = NodeConfig::for_node(c, &pki_dir, &dir.join("data").join(c));
        cfg.upstream = vec![UpstreamConfig {
            node_id: "hub".into(),
            addr: hub_addr.clone(),
            role: Role::Primary,
        }];
        if let Ok(w) = std::env::var("ZHIBAO_BENCH_NODE_WINDOW") {
            cfg.limits.max_in_flight = w.parse()?;
        }
        nodes.push(Daemon::start(&cfg, dir)?);
    }
    let mut ops = Vec::new();
    for n in &nodes {
        ops.push(Operator::connect(&n.socket).await?);
    }
    let body = vec![b'y'; opts.body];

    eprintln!("end to end: one operator, one item at a time...");
    // On a task of its own, as the hub's one-at-a-time stream above.
    let one = {
        let (mut op, body) = (ops[0].clone(), body.clone());
        tokio::spawn(async move { sequential(&mut op, Class::Routine, 1_000, &body).await })
    };
    res.e2e_single = Latency::of(one.await??);

    // Before the concurrent run: right after it the stores' next full
    // commits write out everything it left, tens of milliseconds that one
    // emergency in a hundred would meet, and the "idle" figure would not
    // be one.
    eprintln!("emergency on an idle system...");
    let probe = e2e_probe(&nodes[0].socket, opts.probes, &body, None);
    res.emergency_idle = Latency::of(join_probe(probe).await?);

    eprintln!(
        "end to end: {} nodes x {} concurrent operators...",
        nodes.len(),
        opts.e2e_concurrency
    );
    let started = Instant::now();
    let mix = |i: usize| match i % 10 {
        0 => Class::Emergency,
        1 | 2 => Class::BadNews,
        _ => Class::Routine,
    };
    let by_class = concurrent(&ops, opts.e2e_items, opts.e2e_concurrency, &body, mix, None).await?;
    res.e2e_items_per_s = opts.e2e_items as f64 / started.elapsed().as_secs_f64();
    res.e2e_by_class = by_class
        .into_iter()
        .map(|(c, v)| (c.name().to_string(), Latency::of(v)))
        .collect();

    eprintln!("emergency under a saturating routine load...");
    let stop = tokio_util::sync::CancellationToken::new();
    let load_ops = ops.clone();
    let load_body = body.clone();
    let load_stop = stop.clone();
    let load_started = Instant::now();
    let load = tokio::spawn(async move {
        concurrent(
            &load_ops,
            usize::MAX,
            opts.e2e_concurrency,
            &load_body,
            |_| Class::Routine,
            Some(load_stop),
        )
        .await
    });
    let probe = e2e_probe(&nodes[0].socket, opts.probes, &body, None);
    res.emergency_loaded = Latency::of(join_probe(probe).await?);
    stop.cancel();
    let loaded = load.await??;
    let routine_done: usize = loaded.values().map(Vec::len).sum();
    res.loaded_routine_items_per_s = routine_done as f64 / load_started.elapsed().as_secs_f64();

    // The hub saturated as in its ingest run, and an operator's emergency
    // going through a county node that is otherwise quiet.
    res.hub_loaded_items =
        outlasting_probes(opts.ingest_items, res.ingest_items_per_s, opts.probes);
    eprintln!(
        "end to end: emergency during a second hub ingest run ({} items)...",
        res.hub_loaded_items
    );
    let chunks = ingest_reports(res.hub_loaded_items);
    let channels = ingest_channels(&identities, &trust, &hub_addr, connections).await?;
    let started = Instant::now();
    let load = tokio::spawn(ingest_load(channels, chunks, opts.window));
    let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let probe = e2e_probe(
        &nodes[0].socket,
        opts.probes,
        &body,
        Some((started + PROBES_AFTER, running.clone())),
    );
    load.await??;
    running.store(false, std::sync::atomic::Ordering::SeqCst);
    res.emergency_hub_loaded = Latency::of(join_probe(probe).await?);

    res.hub_peak_rss_kib = hub.peak_rss_kib();
    res.node_peak_rss_kib = nodes.iter().map(Daemon::peak_rss_kib).max().unwrap_or(0);
    drop(ops);
    drop(nodes);
    drop(hub);

    print!("{}", table(&res));
    if let Some(path) = &opts.json {
        std::fs::write(path, serde_json::to_string_pretty(&res)?)?;
    }
    Ok(res)
}

/// Submits one item and waits for its receipt, in one call (as an
/// operator's program would: `SubmitRequest.wait_receipt_ms`).
async fn submit_receipted(
    op: &mut Operator,
    class: Class,
    title: &str,
    body: Vec<u8>,
    wait: Duration,
) -> anyhow::Result<()> {
    let req = zhibao::proto::SubmitRequest {
        priority: class.to_proto() as i32,
        title: title.to_string(),
        body,
        ..Default::default()
    };
    let (id, status) = op.submit_and_wait(req, wait).await?;
    if status.state != zhibao::proto::ItemState::Receipted as i32 {
        bail!("{id} not receipted within {wait:?}: state {}", status.state);
    }
    Ok(())
}

/// `n` emergencies submitted one after another at the node whose operator
/// socket is `socket`, each waiting for its receipt, on a thread, runtime
/// and connection of their own: under load, so that they measure the
/// nodes rather than this process's queue of load tasks, and idle the same
/// way, so that the two figures compare.
fn e2e_probe(
    socket: &Path,
    n: usize,
    body: &[u8],
    during: Option<(Instant, Arc<std::sync::atomic::AtomicBool>)>,
) -> std::thread::JoinHandle<anyhow::Result<Vec<Duration>>> {
    let (socket, body) = (socket.to_path_buf(), body.to_vec());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let mut op = Operator::connect(&socket).await?;
            let Some((at, running)) = during else {
                return sequential(&mut op, Class::Emergency, n, &body).await;
            };
            // Apart, as the hub's probe during its ingest run.
            tokio::time::sleep_until(at.into()).await;
            let mut out = Vec::with_capacity(n);
            let mut every = tokio::time::interval(PROBE_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for i in 0..n {
                every.tick().await;
                let took = probe_once(&mut op, Class::Emergency, i, &body).await?;
                if !running.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                out.push(took);
            }
            Ok(out)
        })
    })
}

/// Submits `n` items one after another, each waiting for its receipt.
async fn sequential(
    op: &mut Operator,
    class: Class,
    n: usize,
    body: &[u8],
) -> anyhow::Result<Vec<Duration>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(probe_once(op, class, i, body).await?);
    }
    Ok(out)
}

/// Submits probe `i` and waits for its receipt; how long that took.
async fn probe_once(
    op: &mut Operator,
    class: Class,
    i: usize,
    body: &[u8],
) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let title = format!("probe {i}");
    submit_receipted(op, class, &title, body.to_vec(), Duration::from_secs(60)).await?;
    Ok(t.elapsed())
}

/// Submits up to `n` items across `ops` with `concurrency` callers per node,
/// each waiting for its receipt; stops early when `stop` is cancelled.
async fn concurrent(
    ops: &[Operator],
    n: usize,
    concurrency: usize,
    body: &[u8],
    class_of: fn(usize) -> Class,
    stop: Option<tokio_util::sync::CancellationToken>,
) -> anyhow::Result<HashMap<Class, Vec<Duration>>> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for op in ops {
        for _ in 0..concurrency {
            let mut op = op.clone();
            let next = next.clone();
            let body = body.to_vec();
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let mut out: Vec<(Class, Duration)> = Vec::new();
                loop {
                    if stop.as_ref().is_some_and(|s| s.is_cancelled()) {
                        break;
                    }
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let class = class_of(i);
                    let t = Instant::now();
                    submit_receipted(
                        &mut op,
                        class,
                        "load",
                        body.clone(),
                        Duration::from_secs(120),
                    )
                    .await?;
                    out.push((class, t.elapsed()));
                }
                Ok::<_, anyhow::Error>(out)
            }));
        }
    }
    let mut by_class: HashMap<Class, Vec<Duration>> = HashMap::new();
    for t in tasks {
        for (c, d) in t.await?? {
            by_class.entry(c).or_default().push(d);
        }
    }
    Ok(by_class)
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

/// The results as a table.
pub fn table(r: &Results) -> String {
    let mut s = String::new();
    let row = |s: &mut String, name: &str, l: &Latency| {
        let _ = writeln!(
            s,
            "{name:<44} {:>8} {:>9} {:>9} {:>9}",
            l.n,
            ms(l.p50_us),
            ms(l.p99_us),
            ms(l.max_us)
        );
    };
    let _ = writeln!(
        s,
        "\nzhibao bench — {} byte reports, fsync before every receipt\n",
        r.body_bytes
    );
    let _ = writeln!(
        s,
        "hub ingest: reports signed in advance in the order they are sent, on Relay.Forward\n  \
         over mutual TLS, \
         each verified, stored (fsync) and answered with a signed receipt;\n  \
         1 stream x 1 in flight, then {} streams x {} in flight over {} connection(s)\n  \
         (the hub admitting {} streams per connection, {} items per county, {} MiB of\n  \
         routine bytes in flight);\n  \
         emergencies one at a time, one every {} ms, on an urgent connection of their own\n  \
         (as a forwarder opens for its urgent items), idle, then during that run\n\
         end to end: operators on each node's socket, submit -> the hub's receipt stored\n  \
         at the node (one Submit call that waits for it); 1 operator, then {} node(s) x {}\n  \
         concurrent operators; emergencies from one operator, idle, under those operators'\n  \
         routine load, then one every {} ms during a second hub ingest run like the first,\n  \
         of {} items (as many, or more, to last for every probe)\n",
        r.ingest_streams,
        r.ingest_window,
        r.ingest_connections,
        r.hub_streams_per_connection,
        r.hub_items_per_peer,
        r.hub_bytes_in_flight >> 20,
        PROBE_EVERY.as_millis(),
        r.nodes,
        r.e2e_concurrency,
        PROBE_EVERY.as_millis(),
        r.hub_loaded_items
    );
    let _ = writeln!(
        s,
        "{:<44} {:>8} {:>9} {:>9} {:>9}",
        "latency (ms)", "n", "p50", "p99", "max"
    );
    row(
        &mut s,
        "hub ingest, 1 stream, 1 in flight",
        &r.ingest_single,
    );
    row(
        &mut s,
        &format!(
            "hub ingest, {} stream(s) x {} in flight",
            r.ingest_streams, r.ingest_window
        ),
        &r.ingest_latency,
    );
    row(&mut s, "hub: emergency, idle hub", &r.hub_emergency_idle);
    row(
        &mut s,
        "hub: emergency, during the ingest run",
        &r.hub_emergency_loaded,
    );
    row(
        &mut s,
        "end to end, 1 operator, submit→receipt",
        &r.e2e_single,
    );
    let mut classes: Vec<_> = r.e2e_by_class.iter().collect();
    classes.sort_by_key(|(c, _)| c.parse::<Class>().map(Class::lane).unwrap_or(9));
    for (c, l) in classes {
        row(&mut s, &format!("end to end under load, {c}"), l);
    }
    row(&mut s, "emergency, idle system", &r.emergency_idle);
    row(
        &mut s,
        "emergency, saturating routine load",
        &r.emergency_loaded,
    );
    row(
        &mut s,
        "emergency, during a 2nd hub ingest run",
        &r.emergency_hub_loaded,
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "hub ingest throughput        {:>10.0} receipted items/s",
        r.ingest_items_per_s
    );
    let _ = writeln!(
        s,
        "hub CPU during the ingest run {:>9.0} µs per item (user + system, all threads)",
        r.ingest_hub_cpu_us_per_item
    );
    let _ = writeln!(
        s,
        "end-to-end throughput        {:>10.0} receipted items/s",
        r.e2e_items_per_s
    );
    let _ = writeln!(
        s,
        "routine under the probe load {:>10.0} receipted items/s",
        r.loaded_routine_items_per_s
    );
    let ratio = r.emergency_loaded.p99_over(&r.emergency_idle);
    let hub_ratio = r.hub_emergency_loaded.p99_over(&r.hub_emergency_idle);
    let hub_loaded_ratio = r.emergency_hub_loaded.p99_over(&r.emergency_idle);
    let _ = writeln!(s, "hub emergency p99 loaded/idle {hub_ratio:>9.2}x");
    let _ = writeln!(s, "emergency p99 loaded / idle  {ratio:>10.2}x");
    let _ = writeln!(
        s,
        "emergency p99, hub ingest run / idle {hub_loaded_ratio:>4.2}x (end to end, the hub saturated)"
    );
    let _ = writeln!(
        s,
        "peak RSS: hub {} MiB, county node {} MiB",
        r.hub_peak_rss_kib / 1024,
        r.node_peak_rss_kib / 1024
    );
    let _ = writeln!(
        s,
        "this machine as the run started: a 1 KiB overwrite and its fdatasync {} ms (p50),\n  \
         one Ed25519 signature {:.1} µs (the peer bench's limits step measures both alike)",
        ms(r.floor.fdatasync_p50_us),
        r.floor.ed25519_sign_us
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The second run lasts for every probe at the first run's rate, is
    /// never shorter than the first, and a rate that makes no sense
    /// leaves it as the first.
    #[test]
    fn the_second_hub_run_outlasts_its_probes() {
        let (first, probes) = (40_000, 100);
        let rate = 25_000.0;
        let items = outlasting_probes(first, rate, probes);
        let lasts = items as f64 / rate;
        let probes_take =
            (PROBES_AFTER + (PROBE_EVERY + Duration::from_millis(2)) * 100).as_secs_f64();
        assert!(lasts > probes_take, "{items} items last {lasts} s");
        assert_eq!(outlasting_probes(first, 1_000.0, probes), first);
        assert_eq!(outlasting_probes(first, 0.0, probes), first);
        assert_eq!(outlasting_probes(first, f64::NAN, probes), first);
        assert_eq!(outlasting_probes(first, 1e12, probes), 10 * first);
    }

    /// The ingest run is what it says: every stream of a connection open
    /// at once, every item of a stream's window taken, whatever the
    /// defaults; the bounds on bytes are the ones under test.
    #[test]
    fn the_hub_admits_the_whole_ingest_load_and_keeps_its_byte_bounds() {
        let defaults = zhibao::config::Limits::default();
        let deep = BenchOptions {
            streams: 64,
            window: 32,
            ..Default::default()
        };
        let mut l = defaults.clone();
        admit_ingest(&mut l, &deep, 1, 1);
        assert_eq!(l.max_streams_per_connection, 64);
        assert_eq!(l.max_items_in_flight_per_peer, 2048);
        // Four connections as four counties: 16 streams of 32 each.
        let mut l = defaults.clone();
        admit_ingest(&mut l, &deep, 4, 4);
        assert_eq!(l.max_streams_per_connection, 16);
        assert_eq!(l.max_items_in_flight_per_peer, 512);
        assert_eq!(l.max_bytes_in_flight, defaults.max_bytes_in_flight);
        assert_eq!(
            l.max_bytes_in_flight_per_peer,
            defaults.max_bytes_in_flight_per_peer
        );
        // One stream per connection, one in flight: the defaults already do.
        let one = BenchOptions {
            streams: 64,
            window: 1,
            connection_per_stream: true,
            ..Default::default()
        };
        let mut l = defaults.clone();
        admit_ingest(&mut l, &one, 64, 4);
        assert_eq!(
            l.max_streams_per_connection,
            defaults.max_streams_per_connection
        );
        assert_eq!(
            l.max_items_in_flight_per_peer,
            defaults.max_items_in_flight_per_peer
        );
    }

    /// Report `k` goes on stream `k % streams`, signed in that order: read
    /// in the order they are sent, the reports' ids (milliseconds first)
    /// and creation times never go back, across the streams.
    #[test]
    fn reports_for_streams_are_signed_in_the_order_they_are_sent() {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        let nodes = ["county-a".to_string(), "county-b".to_string()];
        pki::init(&certs, "test", "hub", &nodes).unwrap();
        let ids: Vec<Arc<Identity>> = nodes
            .iter()
            .map(|n| {
                let (cert, key) = trust::node_paths(&certs, n);
                Arc::new(Identity::load(&cert, &key).unwrap())
            })
            .collect();
        let chunks = sign_streams(&ids, 3, 10, 16, Class::Routine);
        assert_eq!(chunks.iter().map(Vec::len).collect::<Vec<_>>(), [4, 3, 3]);
        let sent: Vec<Report> = (0..10)
            .map(|k| {
                let out = &chunks[k % 3][k / 3];
                assert_eq!(out.sha256, zhibao::digest::sha256(&out.signed.report));
                prost::Message::decode(out.signed.report.as_slice()).unwrap()
            })
            .collect();
        for (k, report) in sent.iter().enumerate() {
            assert_eq!(
                report.title,
                format!("bench {k}"),
                "signed in sending order"
            );
            assert_eq!(
                report.origin,
                ids[(k % 3) % 2].node_id(),
                "stream i signs as ids[i % 2]"
            );
        }
        assert!(
            sent.windows(2)
                .all(|w| w[0].id[..12] <= w[1].id[..12]
                    && w[0].created_unix_ms <= w[1].created_unix_ms),
            "ids and creation times rise in sending order"
        );
    }
}
