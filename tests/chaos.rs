//! Chaos with the real binary: a county node, a regional relay and the hub
//! run as `zhibao serve` processes; while operators submit without pause,
//! each is SIGKILLed and restarted at random and the county's link to the
//! relay is cut and restored through the test proxy. At the end every
//! acknowledged item must be in the hub's inbox exactly once, and every
//! receipt (custody from the relay, delivery from the hub, down at the
//! county) must verify.
//!
//! `CHAOS_SEED` replays a run's choices (the seed is printed at the start);
//! the timing of the processes is not replayed. `CHAOS_CYCLES` sets the
//! length of the long run (`cargo test --release --test chaos -- --ignored
//! --nocapture`). Daemon logs (`CHAOS_LOG` sets their filter) and stores
//! are kept in the directory printed at the start when the test fails.

mod common;

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{HUB, LinkProxy, Region};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::watch;
use zhibao::class::Class;
use zhibao::client::{ClientError, Operator};
use zhibao::config::{NodeConfig, RelayListen, Role, UpstreamConfig};
use zhibao::proto::{ItemState, ItemStatus, ReceiptKind};
use zhibao::{envelope, receipt};

const RELAY: &str = "region";
const COUNTY: &str = "county-a";
const OPERATORS: usize = 2;

/// How long a daemon may take to print its `ready` line.
const START_PATIENCE: Duration = Duration::from_secs(30);
/// How long one operator or inbox call may take before the node is called hung.
const CALL_PATIENCE: Duration = Duration::from_secs(30);
/// How long a cycle waits for the operators' next acknowledgements.
const FLOW_PATIENCE: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_short_every_acknowledged_item_arrives_once() {
    let figures = run(12, Duration::from_secs(120)).await;
    assert_eq!(figures.cycles, 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: CHAOS_CYCLES=1000 cargo test --release --test chaos -- --ignored --nocapture"]
async fn chaos_long_every_acknowledged_item_arrives_once() {
    let cycles = env_u64("CHAOS_CYCLES").map_or(1000, |n| n as usize);
    run(cycles, Duration::from_secs(600)).await;
}

/// What a run did and found.
#[derive(Debug, Default)]
struct Figures {
    seed: u64,
    cycles: usize,
    hub_kills: usize,
    relay_kills: usize,
    county_kills: usize,
    link_cuts: usize,
    /// Restarts that found their port still taken and were tried again.
    bind_retries: usize,
    /// Cycles in which no new item was acknowledged within [`FLOW_PATIENCE`].
    stalls: usize,
    acknowledged: usize,
    /// Submissions that got no id (the county was killed under them, or
    /// was down).
    failed_submissions: usize,
    lost: usize,
    duplicated: usize,
    /// In the inbox, once, but never acknowledged to an operator (stored
    /// by a county killed before it could answer).
    extra: usize,
    inbox: usize,
    /// From the end of the chaos to every delivery receipt at the county.
    drain: Duration,
    wall: Duration,
}

/// Runs `cycles` cycles of chaos, then checks everything; `drain` bounds the
/// wait for the last delivery receipts.
async fn run(cycles: usize, drain: Duration) -> Figures {
    let started = Instant::now();
    let seed = env_u64("CHAOS_SEED").unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    let mut rng = Rng(seed);
    let region = Region::new(&[COUNTY, RELAY]);
    // Stores, configs and logs: kept when the test fails, removed when it passes.
    let work = tempfile::Builder::new()
        .prefix("zhibao-chaos-")
        .tempdir()
        .unwrap()
        .keep();
    eprintln!(
        "chaos: seed {seed} (CHAOS_SEED={seed} replays the choices), {cycles} cycles, logs and stores in {}",
        work.display()
    );

    // Ports from their own generator: the blows replay whatever ports were free.
    let mut ports = Rng(seed ^ 0x9047_5EED);
    let hub_addr = fixed_port(&mut ports);
    let relay_addr = fixed_port(&mut ports);
    let mut hub = Daemon::new(&work, {
        let mut c = config(&region, &work, HUB);
        c.relay = Some(listen(hub_addr));
        c
    });
    let mut relay = Daemon::new(&work, {
        let mut c = config(&region, &work, RELAY);
        c.relay = Some(listen(relay_addr));
        c.upstream = upstream(HUB, hub_addr);
        c
    });
    let link = LinkProxy::start(relay_addr).await;
    let mut county = Daemon::new(&work, {
        let mut c = config(&region, &work, COUNTY);
        c.upstream = upstream(RELAY, link.addr);
        c
    });
    hub.start().await;
    relay.start().await;
    county.start().await;

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let (acks, mut acked) = watch::channel(0usize);
    let acks = Arc::new(acks);
    let stop = Arc::new(AtomicBool::new(false));
    let operators: Vec<_> = (0..OPERATORS)
        .map(|n| {
            tokio::spawn(operate(
                n,
                county.socket.clone(),
                rng.next(),
                ledger.clone(),
                acks.clone(),
                stop.clone(),
            ))
        })
        .collect();

    let mut f = Figures {
        seed,
        cycles,
        ..Figures::default()
    };
    // The first items, before any chaos.
    f.stalls += flow(&mut acked, 5).await;
    for cycle in 0..cycles {
        for d in [&mut hub, &mut county, &mut relay] {
            d.assert_alive();
        }
        match rng.below(4) {
            0 => {
                f.hub_kills += 1;
                hub.kill9().await;
                // Down for a while: items pile up at the relay.
                flow(&mut acked, rng.below(8)).await;
                hub.start().await;
            }
            1 => {
                f.relay_kills += 1;
                relay.kill9().await;
                flow(&mut acked, rng.below(8)).await;
                relay.start().await;
            }
            2 => {
                f.county_kills += 1;
                county.kill9().await;
                // Down: nothing can be acknowledged, so wait by the clock.
                tokio::time::sleep(Duration::from_millis(rng.below(200))).await;
                county.start().await;
            }
            _ => {
                f.link_cuts += 1;
                link.cut();
                f.stalls += flow(&mut acked, 1 + rng.below(15)).await;
                link.restore();
            }
        }
        // Let items flow before the next blow.
        f.stalls += flow(&mut acked, 3 + rng.below(12)).await;
        if (cycle + 1) % 100 == 0 {
            eprintln!(
                "chaos: {} cycles, {} acknowledged, {:.0?}",
                cycle + 1,
                *acked.borrow(),
                started.elapsed()
            );
        }
    }

    // Calm: link up, every daemon running, operators stopped.
    link.restore();
    for d in [&mut hub, &mut county, &mut relay] {
        d.assert_alive();
    }
    stop.store(true, Ordering::SeqCst);
    for op in operators {
        op.await.unwrap();
    }
    let calm = Instant::now();
    let (acknowledged, failed_titles) = {
        let l = ledger.lock().unwrap();
        (l.acked.clone(), l.failed.clone())
    };
    f.acknowledged = acknowledged.len();
    f.failed_submissions = failed_titles.len();
    f.bind_retries = hub.bind_retries + relay.bind_retries + county.bind_retries;

    // Every acknowledged item's delivery receipt travels back to the county.
    let mut op = within("connect to the county", Operator::connect(&county.socket))
        .await
        .unwrap();
    let mut statuses: HashMap<String, ItemStatus> = HashMap::new();
    let mut pending: Vec<&Acked> = acknowledged.iter().collect();
    loop {
        let mut still = Vec::new();
        for a in pending {
            let st = match within("status", op.status(&a.id)).await {
                Ok(st) => st,
                Err(e) => panic!(
                    "acknowledged item {} ({}) unknown at the county: {e}; logs in {}",
                    a.id,
                    a.title,
                    work.display()
                ),
            };
            assert_ne!(
                st.state,
                ItemState::Refused as i32,
                "{} ({}) refused: {}; logs in {}",
                a.id,
                a.title,
                st.refusal,
                work.display()
            );
            // The delivery receipt can come down before the relay's custody
            // receipt for a re-sent copy: both are awaited.
            if st.state == ItemState::Receipted as i32 && st.delivery.is_some() {
                statuses.insert(a.id.clone(), st);
            } else {
                still.push(a);
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        if calm.elapsed() > drain {
            let mut msg = String::new();
            for a in pending.iter().take(10) {
                let st = op.status(&a.id).await.unwrap();
                let _ = writeln!(
                    msg,
                    "  {} ({}): state {:?}, attempts {}, delivery receipt {}",
                    a.id,
                    a.title,
                    ItemState::try_from(st.state),
                    st.attempts,
                    st.delivery.is_some()
                );
            }
            panic!(
                "seed {seed}: {} of {} acknowledged items are not receipted with a delivery receipt at the county {drain:?} after the chaos ended; first ones:\n{msg}logs in {}",
                pending.len(),
                acknowledged.len(),
                work.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    f.drain = calm.elapsed();

    // The hub's inbox: every item verified, counted by id.
    let trust = region.trust();
    let now = SystemTime::now();
    let items = within(
        "read the hub's inbox",
        common::inbox_items(&region, hub_addr),
    )
    .await;
    f.inbox = items.len();
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut inbox: HashMap<String, ([u8; 32], String, Class)> = HashMap::new();
    for item in &items {
        let v = envelope::open(item, &trust, &Default::default(), now)
            .unwrap_or_else(|e| panic!("an inbox item does not verify: {e}"));
        assert_eq!(v.report().origin, COUNTY);
        assert_eq!(v.holder(), RELAY, "{}: handed over by the relay", v.id());
        *counts.entry(v.id().to_string()).or_default() += 1;
        inbox.insert(
            v.id().to_string(),
            (*v.sha256(), v.report().title.clone(), v.class()),
        );
    }
    let acked_ids: HashSet<&str> = acknowledged.iter().map(|a| a.id.as_str()).collect();
    let acked_titles: HashSet<&str> = acknowledged.iter().map(|a| a.title.as_str()).collect();
    let failed_titles: HashSet<&str> = failed_titles.iter().map(String::as_str).collect();
    let lost: Vec<&Acked> = acknowledged
        .iter()
        .filter(|a| !counts.contains_key(&a.id))
        .collect();
    let duplicated: Vec<(&String, &usize)> = counts.iter().filter(|(_, n)| **n > 1).collect();
    let extra: Vec<&String> = counts
        .keys()
        .filter(|id| !acked_ids.contains(id.as_str()))
        .collect();
    f.lost = lost.len();
    f.duplicated = duplicated.len();
    f.extra = extra.len();
    f.wall = started.elapsed();
    eprintln!("chaos: {}", f.summary());
    assert!(
        lost.is_empty() && duplicated.is_empty(),
        "seed {seed}: lost {:?}, duplicated {duplicated:?}; logs in {}",
        lost.iter().take(10).collect::<Vec<_>>(),
        work.display()
    );
    // Extras are submissions that failed at the operator, never a second
    // copy of an acknowledged one under another id.
    for id in &extra {
        let title = inbox[id.as_str()].1.as_str();
        assert!(
            failed_titles.contains(title) && !acked_titles.contains(title),
            "{id} ({title}) is in the inbox but was never submitted, or was acknowledged under another id"
        );
    }

    // Every receipt at the county verifies, for the bytes the hub holds.
    for a in &acknowledged {
        let (sha256, title, class) = &inbox[a.id.as_str()];
        assert_eq!((title, *class), (&a.title, a.class), "{}", a.id);
        let st = &statuses[&a.id];
        assert_eq!(st.state, ItemState::Receipted as i32, "{}", a.id);
        let custody = st.receipt.as_ref().expect("custody receipt");
        let custody = receipt::open_for(custody, &trust, now, &a.id, sha256, Some(RELAY))
            .unwrap_or_else(|e| panic!("{}: custody receipt: {e}", a.id));
        assert_eq!(custody.kind, ReceiptKind::Custody as i32, "{}", a.id);
        let delivery = st.delivery.as_ref().unwrap();
        assert_eq!(delivery.route, HUB, "{}", a.id);
        let signed = delivery.receipt.as_ref().expect("delivery receipt");
        let delivery = receipt::open_for(signed, &trust, now, &a.id, sha256, Some(HUB))
            .unwrap_or_else(|e| panic!("{}: delivery receipt: {e}", a.id));
        assert_eq!(delivery.kind, ReceiptKind::Delivery as i32, "{}", a.id);
    }
    assert!(f.acknowledged > 0, "no item was ever acknowledged");

    drop(county);
    drop(relay);
    drop(hub);
    let _ = std::fs::remove_dir_all(&work);
    f
}

impl Figures {
    fn summary(&self) -> String {
        format!(
            "seed {} | {} cycles: {} hub kills, {} relay kills, {} county kills, {} link cuts | {} items acknowledged, {} lost, {} duplicated, {} extra (stored, not acknowledged) of {} failed submissions, {} in the inbox | {} restarts retried for the port, {} stalled cycles | drain {:.1?}, wall {:.1?}",
            self.seed,
            self.cycles,
            self.hub_kills,
            self.relay_kills,
            self.county_kills,
            self.link_cuts,
            self.acknowledged,
            self.lost,
            self.duplicated,
            self.extra,
            self.failed_submissions,
            self.inbox,
            self.bind_retries,
            self.stalls,
            self.drain,
            self.wall,
        )
    }
}

/// Waits until `n` more items are acknowledged, at most [`FLOW_PATIENCE`];
/// 1 if they were not (a stall), else 0.
async fn flow(acked: &mut watch::Receiver<usize>, n: u64) -> usize {
    let target = *acked.borrow() + n as usize;
    match tokio::time::timeout(FLOW_PATIENCE, acked.wait_for(|k| *k >= target)).await {
        Ok(r) => {
            r.unwrap();
            0
        }
        Err(_) => 1,
    }
}

/// An item an operator got an id for: the county has it on disk.
#[derive(Debug, Clone)]
struct Acked {
    id: String,
    title: String,
    class: Class,
}

/// What the operators were told.
#[derive(Debug, Default)]
struct Ledger {
    acked: Vec<Acked>,
    /// Titles of submissions that got no id.
    failed: Vec<String>,
}

/// One operator: submits small reports of every class until `stop`,
/// reconnecting whenever the county went away under it.
async fn operate(
    n: usize,
    socket: PathBuf,
    seed: u64,
    ledger: Arc<Mutex<Ledger>>,
    acks: Arc<watch::Sender<usize>>,
    stop: Arc<AtomicBool>,
) {
    let mut rng = Rng(seed);
    let mut client: Option<Operator> = None;
    let mut seq = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let op = match &mut client {
            Some(op) => op,
            None => match Operator::connect(&socket).await {
                Ok(op) => client.insert(op),
                Err(_) => {
                    // The county is down; it is restarted by the chaos loop.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        seq += 1;
        let title = format!("op{n} #{seq}");
        let class = Class::ALL[rng.below(3) as usize];
        let body = vec![b'a' + (seq % 26) as u8; 16 + rng.below(500) as usize];
        let answer = tokio::time::timeout(CALL_PATIENCE, op.submit(class, &title, body, 0)).await;
        match answer {
            Ok(Ok(id)) => {
                ledger
                    .lock()
                    .unwrap()
                    .acked
                    .push(Acked { id, title, class });
                acks.send_modify(|k| *k += 1);
            }
            Ok(Err(e)) => {
                if !matches!(e, ClientError::Status(_) | ClientError::Transport { .. }) {
                    eprintln!("chaos: op{n}: {e}");
                }
                ledger.lock().unwrap().failed.push(title);
                client = None;
            }
            Err(_) => {
                eprintln!("chaos: op{n}: no answer to a submission within {CALL_PATIENCE:?}");
                ledger.lock().unwrap().failed.push(title);
                client = None;
            }
        }
        // A steady trickle, not a flood: two cores are shared with the daemons.
        tokio::time::sleep(Duration::from_millis(10 + rng.below(50))).await;
    }
}

/// A `zhibao serve` process that can be SIGKILLed and started again with
/// the same configuration, addresses and store.
struct Daemon {
    name: String,
    config: PathBuf,
    log: PathBuf,
    socket: PathBuf,
    child: Option<(Child, BufReader<ChildStdout>)>,
    starts: usize,
    bind_retries: usize,
}

impl Daemon {
    fn new(work: &Path, cfg: NodeConfig) -> Self {
        let config = work.join(format!("{}.toml", cfg.node_id));
        std::fs::write(&config, cfg.to_toml().unwrap()).unwrap();
        Self {
            log: work.join(format!("{}.log", cfg.node_id)),
            socket: cfg.operator_socket(),
            name: cfg.node_id,
            config,
            child: None,
            starts: 0,
            bind_retries: 0,
        }
    }

    /// Starts `zhibao serve` and waits for its `ready` line; tries again
    /// while its port is still taken (for a while), fails the test otherwise.
    async fn start(&mut self) {
        assert!(self.child.is_none(), "{} is running", self.name);
        let deadline = Instant::now() + START_PATIENCE;
        loop {
            self.starts += 1;
            let mut log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)
                .unwrap();
            writeln!(log, "=== chaos: start #{} ===", self.starts).unwrap();
            let filter = std::env::var("CHAOS_LOG")
                .unwrap_or_else(|_| "info,h2=warn,tower=warn,hyper=warn".into());
            let mut child = Command::new(env!("CARGO_BIN_EXE_zhibao"))
                .args(["serve", "--config"])
                .arg(&self.config)
                .env("RUST_LOG", filter)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(log)
                .kill_on_drop(true)
                .spawn()
                .expect("start zhibao serve");
            // Kept open: the daemon must never write into a closed pipe.
            let mut stdout = BufReader::new(child.stdout.take().unwrap());
            let mut line = String::new();
            let read = tokio::time::timeout(START_PATIENCE, stdout.read_line(&mut line)).await;
            if matches!(read, Ok(Ok(_))) && line.starts_with("ready ") {
                self.child = Some((child, stdout));
                return;
            }
            let _ = child.start_kill();
            let status = child.wait().await;
            let tail = self.log_tail(40);
            if tail.contains("in use") && Instant::now() < deadline {
                // The old process's port, or a stranger on it for a moment.
                self.bind_retries += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            panic!(
                "{} did not come back (start #{}): first line {line:?}, {status:?}; {}:\n{tail}",
                self.name,
                self.starts,
                self.log.display()
            );
        }
    }

    /// SIGKILL: no chance to flush or clean up.
    async fn kill9(&mut self) {
        let (mut child, _) = self.child.take().expect("running");
        child.start_kill().unwrap();
        child.wait().await.unwrap();
    }

    /// Fails the test if the daemon died by itself.
    fn assert_alive(&mut self) {
        let (child, _) = self.child.as_mut().expect("running");
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "{} exited by itself ({status}); {}:\n{}",
                self.name,
                self.log.display(),
                self.log_tail(40)
            );
        }
    }

    fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

fn config(region: &Region, work: &Path, name: &str) -> NodeConfig {
    let mut c = NodeConfig::for_node(name, &region.pki(), &work.join(name));
    c.limits.max_backoff_secs = 1;
    c
}

fn listen(addr: SocketAddr) -> RelayListen {
    RelayListen {
        listen: addr,
        consumers: Vec::new(),
    }
}

fn upstream(name: &str, addr: SocketAddr) -> Vec<UpstreamConfig> {
    vec![UpstreamConfig {
        node_id: name.into(),
        addr: addr.to_string(),
        role: Role::Primary,
    }]
}

/// A free loopback port for a listener that must keep its address across
/// restarts. Taken below the kernel's ephemeral range when it can be, so no
/// outgoing connection is given it while its daemon is down.
fn fixed_port(rng: &mut Rng) -> SocketAddr {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(32768);
    if ephemeral_low > 12_000 {
        for _ in 0..100 {
            let port = 10_000 + rng.below(ephemeral_low - 10_000);
            if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port as u16)) {
                return l.local_addr().unwrap();
            }
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// `fut`, or a failed test naming `what` if it takes longer than [`CALL_PATIENCE`].
async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(CALL_PATIENCE, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {CALL_PATIENCE:?}"))
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
    )
}

/// SplitMix64: small, deterministic, good enough to pick blows.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform enough in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
