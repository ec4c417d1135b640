//! Test support: a fresh region PKI per test, real nodes on 127.0.0.1:0 with
//! their own stores, clients, and a log capture to check what nodes say.

#![allow(dead_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};
use zhibao::client::Operator;
use zhibao::config::{NodeConfig, RelayListen, UpstreamConfig};
use zhibao::node::{self, RunningNode};
use zhibao::proto::relay_client::RelayClient;
use zhibao::trust::{Identity, Trust};
use zhibao::{pki, trust};

pub const HUB: &str = "hub";

/// Runs the `zhibao` command with `args` and waits for it.
pub fn zhibao(args: &[&str]) -> std::process::Output {
    zhibao_in(args, None)
}

/// [`zhibao`] with `ZHIBAO_LANG` set to `lang`, or, with `None`, with no
/// language from the environment at all (no `ZHIBAO_LANG`, `LC_ALL` or
/// `LANG`): the output is English unless the command line asks, whatever
/// the machine running the tests is set to.
pub fn zhibao_in(args: &[&str], lang: Option<&str>) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_zhibao"));
    cmd.args(args)
        .env_remove("ZHIBAO_LANG")
        .env_remove("LC_ALL")
        .env_remove("LANG");
    if let Some(lang) = lang {
        cmd.env("ZHIBAO_LANG", lang);
    }
    cmd.output().expect("run zhibao")
}

/// What a command wrote to standard error.
pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every log line any node in this test process wrote.
fn log_buffer() -> &'static Arc<Mutex<Vec<u8>>> {
    static BUF: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUF.get_or_init(|| Arc::new(Mutex::new(Vec::new())))
}

#[derive(Clone)]
struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        log_buffer().lock().unwrap().extend_from_slice(buf);
        std::io::stderr().write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs logging into the capture buffer (once per process).
pub fn init_logs() {
    zhibao::tls::install_crypto_provider();
    let _ = tracing_subscriber::fmt()
        .with_env_filter("info,h2=warn,tower=warn,hyper=warn")
        .with_ansi(false)
        .with_writer(|| Capture)
        .try_init();
}

/// The captured log lines containing every one of `needles`.
pub fn log_lines_with(needles: &[&str]) -> Vec<String> {
    let buf = log_buffer().lock().unwrap();
    String::from_utf8_lossy(&buf)
        .lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .map(str::to_string)
        .collect()
}

/// Waits until `f` returns true, checking whenever the node logs, at most
/// `patience`. Used only where no event can be awaited directly (log lines
/// written by another task).
pub async fn eventually(patience: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        if f() {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A temporary region: PKI and data directories.
pub struct Region {
    pub dir: tempfile::TempDir,
}

impl Region {
    /// A CA, a hub and the given county nodes.
    pub fn new(nodes: &[&str]) -> Self {
        init_logs();
        let dir = tempfile::tempdir().unwrap();
        let nodes: Vec<String> = nodes.iter().map(|s| s.to_string()).collect();
        pki::init(&dir.path().join("certs"), "test", HUB, &nodes).unwrap();
        Self { dir }
    }

    pub fn pki(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    pub fn data(&self, node: &str) -> PathBuf {
        self.dir.path().join("data").join(node)
    }

    pub fn trust(&self) -> Trust {
        Trust::load(
            &self.pki().join(trust::CA_CERT),
            Some(&self.pki().join(trust::CRL)),
        )
        .unwrap()
    }

    pub fn identity(&self, node: &str) -> Identity {
        let (c, k) = trust::node_paths(&self.pki(), node);
        Identity::load(&c, &k).unwrap()
    }

    pub fn hub_config(&self, addr: SocketAddr) -> NodeConfig {
        self.named_hub_config(HUB, addr)
    }

    /// A hub (no upstream) called `name`, listening on `addr`.
    pub fn named_hub_config(&self, name: &str, addr: SocketAddr) -> NodeConfig {
        let mut cfg = NodeConfig::for_node(name, &self.pki(), &self.data(name));
        cfg.relay = Some(RelayListen {
            listen: addr,
            consumers: Vec::new(),
        });
        cfg
    }

    pub async fn start_named_hub(&self, name: &str) -> RunningNode {
        node::start(self.named_hub_config(name, "127.0.0.1:0".parse().unwrap()))
            .await
            .unwrap()
    }

    pub async fn start_hub(&self) -> RunningNode {
        node::start(self.hub_config("127.0.0.1:0".parse().unwrap()))
            .await
            .unwrap()
    }

    pub async fn restart_hub(&self, addr: SocketAddr) -> RunningNode {
        node::start(self.hub_config(addr)).await.unwrap()
    }

    pub fn node_config(&self, name: &str, hub: SocketAddr) -> NodeConfig {
        let mut cfg = NodeConfig::for_node(name, &self.pki(), &self.data(name));
        cfg.upstream = vec![UpstreamConfig {
            node_id: HUB.into(),
            addr: hub.to_string(),
            role: zhibao::config::Role::Primary,
        }];
        cfg.limits.max_backoff_secs = 1;
        cfg
    }

    pub async fn start_node(&self, name: &str, hub: SocketAddr) -> RunningNode {
        node::start(self.node_config(name, hub)).await.unwrap()
    }
}

pub async fn operator(node: &RunningNode) -> Operator {
    Operator::connect(&node.operator_socket).await.unwrap()
}

/// A Relay client over TLS with an arbitrary client configuration.
pub async fn relay_with(
    addr: SocketAddr,
    config: rustls::ClientConfig,
) -> Result<RelayClient<Channel>, tonic::transport::Error> {
    Ok(RelayClient::new(channel_with(addr, config).await?))
}

/// A Relay client over TLS to node `name` at `addr`.
pub async fn relay_with_name(
    addr: SocketAddr,
    config: rustls::ClientConfig,
    name: &'static str,
) -> Result<RelayClient<Channel>, tonic::transport::Error> {
    Ok(RelayClient::new(channel_named(addr, config, name).await?))
}

/// A gRPC channel to the hub at `addr` over TLS with an arbitrary client
/// configuration.
pub async fn channel_with(
    addr: SocketAddr,
    config: rustls::ClientConfig,
) -> Result<Channel, tonic::transport::Error> {
    channel_named(addr, config, HUB).await
}

/// A gRPC channel to node `name` at `addr` over TLS.
pub async fn channel_named(
    addr: SocketAddr,
    config: rustls::ClientConfig,
    name: &'static str,
) -> Result<Channel, tonic::transport::Error> {
    let config = Arc::new(config);
    let connector = tower::service_fn(move |_: http::Uri| {
        let config = config.clone();
        async move {
            let tcp = TcpStream::connect(addr).await?;
            let name = ServerName::try_from(name).unwrap();
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_with_connector(connector)
        .await
}

/// An emergency report from `origin`, not signed yet.
pub fn report(origin: &str) -> zhibao::proto::Report {
    zhibao::proto::Report {
        id: zhibao::envelope::new_item_id(),
        origin: origin.into(),
        priority: zhibao::class::Class::Emergency.to_proto() as i32,
        title: "flood".into(),
        body: b"the river road is under water".to_vec(),
        created_unix_ms: zhibao::clock::now_ms(),
        ..Default::default()
    }
}

/// A Relay client connected as `node` (a certificate in `pki_dir`).
pub async fn relay_as(
    pki_dir: &Path,
    node: &str,
    trust_dir: &Path,
    addr: SocketAddr,
) -> RelayClient<Channel> {
    let (c, k) = trust::node_paths(pki_dir, node);
    let id = Identity::load(&c, &k).unwrap();
    let trust = Trust::load(&trust_dir.join(trust::CA_CERT), None).unwrap();
    let cfg = zhibao::tls::client_config(&id, &trust.snapshot(), HUB).unwrap();
    relay_with(addr, cfg).await.unwrap()
}

/// Everything in the hub's inbox at `addr`, read as the hub's own consumer.
pub async fn inbox_items(region: &Region, addr: SocketAddr) -> Vec<zhibao::proto::SignedReport> {
    named_inbox_items(region, HUB, addr).await
}

/// Everything in the inbox of hub `name` at `addr`.
pub async fn named_inbox_items(
    region: &Region,
    name: &str,
    addr: SocketAddr,
) -> Vec<zhibao::proto::SignedReport> {
    let (cert, key) = trust::node_paths(&region.pki(), name);
    let ca = region.pki().join(trust::CA_CERT);
    let mut inbox = zhibao::client::Inbox::connect(&addr.to_string(), name, &ca, &cert, &key)
        .await
        .unwrap();
    let mut stream = inbox.subscribe(Default::default(), false).await.unwrap();
    let mut out = Vec::new();
    while let Some(item) = stream.message().await.unwrap() {
        out.push(item.item.unwrap());
    }
    out
}

/// A TCP proxy between a node and its upstream that a test can cut and
/// restore, and that can cap bandwidth and add latency, to play a county's
/// slow, flaky link.
pub struct LinkProxy {
    pub addr: SocketAddr,
    up: Arc<tokio::sync::watch::Sender<bool>>,
    /// Connections opened before this many [`LinkProxy::stall`]s pass
    /// nothing more.
    stalls: Arc<std::sync::atomic::AtomicU64>,
}

/// How a [`LinkProxy`] shapes traffic, each way.
#[derive(Clone, Copy, Default)]
pub struct Shape {
    /// Bits per second; `None` = as fast as loopback goes.
    pub bits_per_sec: Option<u64>,
    /// Added to every piece of data passed on.
    pub latency: Duration,
}

/// Copies `from` to `to` as `shape` allows, until the link is stalled
/// past `born` (then what arrives is swallowed: a black hole).
async fn shaped_copy(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    shape: Shape,
    stalls: Arc<std::sync::atomic::AtomicU64>,
    born: u64,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Small pieces, so a capped link really sends at its rate.
    let mut buf = vec![0u8; 4096];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if stalls.load(std::sync::atomic::Ordering::SeqCst) > born {
            continue;
        }
        if !shape.latency.is_zero() {
            tokio::time::sleep(shape.latency).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        if let Some(bps) = shape.bits_per_sec {
            tokio::time::sleep(Duration::from_secs_f64(n as f64 * 8.0 / bps as f64)).await;
        }
    }
    if stalls.load(std::sync::atomic::Ordering::SeqCst) > born {
        // A black hole passes on no close either: the other end finds out
        // by itself, or never.
        std::future::pending::<()>().await;
    }
    let _ = to.shutdown().await;
}

impl LinkProxy {
    /// Starts forwarding connections on a fresh loopback port to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        Self::shaped(target, Shape::default()).await
    }

    /// Like [`LinkProxy::start`], with traffic shaped both ways.
    pub async fn shaped(target: SocketAddr, shape: Shape) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(tokio::sync::watch::channel(true).0);
        let state = up.clone();
        let stalls = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stalled = stalls.clone();
        tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    return;
                };
                if !*state.borrow() {
                    continue; // cut: the connection is dropped at once
                }
                let mut link = state.subscribe();
                let stalls = stalled.clone();
                let born = stalls.load(std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (in_r, in_w) = inbound.into_split();
                    let (out_r, out_w) = outbound.into_split();
                    tokio::select! {
                        _ = async {
                            tokio::join!(
                                shaped_copy(in_r, out_w, shape, stalls.clone(), born),
                                shaped_copy(out_r, in_w, shape, stalls, born)
                            )
                        } => {}
                        _ = link.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Self { addr, up, stalls }
    }

    /// Makes every open connection a black hole, as a link whose far end
    /// vanished without a word (a NAT that forgot it, a cable pulled):
    /// the sockets stay open and what is sent is lost, both ways. New
    /// connections pass as before.
    pub fn stall(&self) {
        self.stalls
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Cuts the link: open connections drop, new ones are refused.
    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    /// Restores the link.
    pub fn restore(&self) {
        self.up.send_replace(true);
    }
}

/// Reads events from a watch stream until one satisfies `f`, at most `patience`.
pub async fn await_event(
    events: &mut tonic::Streaming<zhibao::proto::Event>,
    patience: Duration,
    mut f: impl FnMut(&zhibao::proto::Event) -> bool,
) -> zhibao::proto::Event {
    tokio::time::timeout(patience, async {
        loop {
            let e = events.message().await.unwrap().expect("event stream ended");
            if f(&e) {
                return e;
            }
        }
    })
    .await
    .expect("no such event in time")
}

/// A `zhibao serve` child process.
pub struct Daemon {
    child: std::process::Child,
    pub relay: Option<SocketAddr>,
    pub socket: PathBuf,
}

impl Daemon {
    /// Starts `zhibao serve` and waits for its `ready` line.
    pub fn start(config: &Path) -> Self {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_zhibao"))
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("start zhibao serve");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
        assert!(
            line.starts_with("ready "),
            "unexpected first line: {line:?}"
        );
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(&format!("{name}=")))
                .unwrap()
                .to_string()
        };
        Self {
            relay: field("relay").parse().ok(),
            socket: PathBuf::from(field("operator")),
            child,
        }
    }

    /// SIGTERM, and wait for a clean stop.
    pub fn stop(mut self) {
        let _ = std::process::Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }

    pub fn kill9(mut self) {
        // Child::kill sends SIGKILL on Unix: no chance to flush or clean up.
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
