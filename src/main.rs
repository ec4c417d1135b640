//! The `zhibao` command: parse, set up logging, dispatch into the library.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use zhibao::class::Class;
use zhibao::client::{self, ClientError};
use zhibao::config::NodeConfig;
use zhibao::proto::Cursor;
use zhibao::{cli_fmt, demo, node, pki, telemetry};

/// Exit code for an unusable configuration (sysexits EX_USAGE).
const EX_USAGE: u8 = 64;
/// Exit code when the node is not running (sysexits EX_UNAVAILABLE).
const EX_UNAVAILABLE: u8 = 69;

#[derive(Parser, Debug)]
#[command(
    name = "zhibao",
    version,
    about = "直报 — secure store-and-forward relay for urgent reports"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a node (county point, relay or hub) from a TOML configuration.
    Serve {
        /// Configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Manage the region's certificates.
    Certs {
        #[command(subcommand)]
        action: CertsCommand,
    },
    /// Submit a report to the local node.
    Submit {
        #[command(flatten)]
        target: Target,
        /// emergency, bad_news or routine.
        #[arg(long, short)]
        priority: String,
        /// The report's title.
        #[arg(long, short)]
        title: String,
        /// The body as text.
        #[arg(long, conflicts_with = "body_file")]
        body: Option<String>,
        /// Read the body from a file (otherwise from stdin).
        #[arg(long)]
        body_file: Option<PathBuf>,
        /// Attach a file (scan, photo); may be given several times.
        #[arg(long = "attach")]
        attach: Vec<PathBuf>,
        /// An earlier receipt deadline than the class's, in seconds from now.
        #[arg(long)]
        deadline_secs: Option<u64>,
        /// Wait for the receipt and print it.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits, e.g. `30s`, `5m`.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Show an item's class, state, times and receipt.
    Status {
        /// The item id printed by `submit`.
        id: String,
        #[command(flatten)]
        target: Target,
    },
    /// Follow the node's events live: submissions, receipts, overdue items,
    /// escalations, alarms, routes going up and down.
    Watch {
        #[command(flatten)]
        target: Target,
    },
    /// List items, newest first.
    List {
        /// Only items that missed their deadline.
        #[arg(long)]
        overdue: bool,
        /// At most this many.
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        #[command(flatten)]
        target: Target,
    },
    /// Read a hub's inbox over mutual TLS.
    Inbox {
        /// The hub's relay address, host:port.
        #[arg(long)]
        hub: String,
        /// The hub's node id (its certificate must name it).
        #[arg(long, default_value = "hub")]
        hub_id: String,
        /// PKI directory holding ca.pem and our certificate and key.
        #[arg(long, default_value = "certs")]
        certs: PathBuf,
        /// Our name in the PKI directory (<name>.pem, <name>.key).
        #[arg(long = "as", default_value = "hub")]
        name: String,
        /// Resume after this cursor: `emergency,bad_news,routine` positions.
        #[arg(long, default_value = "0,0,0")]
        from: String,
        /// Keep waiting for new items.
        #[arg(long)]
        follow: bool,
    },
    /// Run a whole small region on loopback and show it working.
    Demo,
    /// Measure throughput and latency on loopback (hub ingest, end to end,
    /// emergency under load) and print a table.
    Bench {
        /// Items for the hub ingest throughput run.
        #[arg(long, default_value_t = 100_000)]
        items: usize,
        /// Concurrent Relay.Forward streams into the hub.
        #[arg(long, default_value_t = 64)]
        streams: usize,
        /// Items in flight per stream.
        #[arg(long, default_value_t = 32)]
        window: usize,
        /// Report body size, bytes.
        #[arg(long, default_value_t = 1024)]
        body: usize,
        /// County nodes for the end-to-end runs.
        #[arg(long, default_value_t = 4)]
        nodes: usize,
        /// Items for the end-to-end throughput run.
        #[arg(long, default_value_t = 20_000)]
        e2e_items: usize,
        /// Concurrent operators per node.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Emergency probes per measurement.
        #[arg(long, default_value_t = 300)]
        probes: usize,
        /// Also write the results as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Instead: queue this many routine items at a node whose hub is
        /// unreachable, and report the node's memory.
        #[arg(long, default_value_t = 0)]
        queue_items: usize,
    },
}

#[derive(clap::Args, Debug)]
struct Target {
    /// The node's configuration (to find its operator socket).
    #[arg(long, short, default_value = "config/node.toml")]
    config: PathBuf,
    /// The operator socket; overrides the configuration.
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Use the node's TCP operator listener (mutual TLS) at host:port instead.
    #[arg(long, requires = "node_id")]
    tcp: Option<String>,
    /// With --tcp: the node's id (its certificate must name it).
    #[arg(long)]
    node_id: Option<String>,
    /// With --tcp: PKI directory holding ca.pem and our certificate and key.
    #[arg(long, default_value = "certs")]
    certs: PathBuf,
    /// With --tcp: our name in the PKI directory (<name>.pem, <name>.key).
    #[arg(long = "as", default_value = "operator")]
    name: String,
}

impl Target {
    async fn connect(&self) -> anyhow::Result<client::Operator> {
        if let (Some(addr), Some(node_id)) = (&self.tcp, &self.node_id) {
            let (cert, key) = pki::node_paths(&self.certs, &self.name);
            let ca = self.certs.join(pki::CA_CERT);
            return Ok(client::Operator::connect_tls(addr, node_id, &ca, &cert, &key).await?);
        }
        Ok(client::Operator::connect(&self.socket()?).await?)
    }

    fn socket(&self) -> anyhow::Result<PathBuf> {
        if let Some(s) = &self.socket {
            return Ok(s.clone());
        }
        let cfg = NodeConfig::load(&self.config)
            .with_context(|| "cannot find the operator socket (give --socket or --config)")?;
        Ok(cfg.operator_socket())
    }
}

#[derive(Subcommand, Debug)]
enum CertsCommand {
    /// Create a region CA, a hub certificate and node certificates.
    Init {
        /// Directory to write into.
        #[arg(long)]
        dir: PathBuf,
        /// The hub's node id.
        #[arg(long)]
        hub: String,
        /// Node ids, comma-separated.
        #[arg(long, value_delimiter = ',')]
        nodes: Vec<String>,
        /// The region's name, for the CA's subject.
        #[arg(long, default_value = "region")]
        region: String,
    },
    /// Issue a certificate for one more node.
    Issue {
        /// PKI directory.
        #[arg(long)]
        dir: PathBuf,
        /// The node id.
        #[arg(long)]
        node: String,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: i64,
    },
    /// Revoke a node's certificate (updates crl.pem, which nodes reload).
    Revoke {
        /// PKI directory.
        #[arg(long)]
        dir: PathBuf,
        /// The node id.
        #[arg(long)]
        node: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_log = match cli.command {
        Command::Serve { .. } => "info,h2=warn,tower=warn,hyper=warn",
        _ => "warn",
    };
    telemetry::init(default_log);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            let bad_config = e.downcast_ref::<zhibao::config::ConfigError>().is_some()
                || matches!(
                    e.downcast_ref::<node::NodeError>(),
                    Some(node::NodeError::Config(_))
                );
            if bad_config {
                return ExitCode::from(EX_USAGE);
            }
            if let Some(ClientError::NotRunning { .. }) = e.downcast_ref::<ClientError>() {
                return ExitCode::from(EX_UNAVAILABLE);
            }
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { config } => {
            let cfg = NodeConfig::load(&config)?;
            let running = node::start(cfg).await?;
            // One machine-readable line once everything is bound, for
            // supervisors and tests to wait on.
            println!(
                "ready node={} relay={} operator={}",
                running.node_id,
                running
                    .relay_addr
                    .map_or_else(|| "-".to_string(), |a| a.to_string()),
                running.operator_socket.display()
            );
            node::shutdown_signal().await;
            running.shutdown(Duration::from_secs(10)).await;
        }
        Command::Certs { action } => certs(action)?,
        Command::Submit {
            target,
            priority,
            title,
            body,
            body_file,
            attach,
            deadline_secs,
            wait,
            timeout,
        } => {
            let mut attachments = Vec::new();
            for path in &attach {
                let data =
                    std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                let name = path
                    .file_name()
                    .map_or_else(|| "attachment".into(), |n| n.to_string_lossy().into_owned());
                attachments.push((name, data));
            }
            let class: Class = priority.parse()?;
            let body = match (body, body_file) {
                (Some(b), _) => b.into_bytes(),
                (None, Some(f)) => {
                    std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?
                }
                (None, None) => {
                    let mut b = Vec::new();
                    std::io::stdin()
                        .read_to_end(&mut b)
                        .context("reading the body from stdin")?;
                    b
                }
            };
            let deadline = deadline_secs.map_or(0, |s| {
                zhibao::envelope::now_ms() + i64::try_from(s).unwrap_or(i64::MAX / 2) * 1000
            });
            let mut op = target.connect().await?;
            let id = op
                .submit_with(class, &title, body, deadline, attachments)
                .await?;
            println!("{id}");
            if wait {
                let status = op.wait_receipt(&id, timeout).await?;
                print!("{}", cli_fmt::status(&status));
            }
        }
        Command::Status { id, target } => {
            let mut op = target.connect().await?;
            let status = op.status(&id).await?;
            print!("{}", cli_fmt::status(&status));
        }
        Command::Watch { target } => {
            let mut op = target.connect().await?;
            let mut events = op.watch().await?;
            while let Some(e) = events.message().await.map_err(ClientError::from)? {
                println!("{}", cli_fmt::event(&e));
            }
        }
        Command::List {
            overdue,
            limit,
            target,
        } => {
            let mut op = target.connect().await?;
            let (items, overdue_total) = op.list(overdue, limit).await?;
            for s in &items {
                println!("{}", cli_fmt::status_line(s));
            }
            eprintln!(
                "{} listed; {overdue_total} items have missed their deadline at this node",
                items.len()
            );
        }
        Command::Inbox {
            hub,
            hub_id,
            certs,
            name,
            from,
            follow,
        } => {
            let cursor = parse_cursor(&from)?;
            let (cert, key) = pki::node_paths(&certs, &name);
            let mut inbox =
                client::Inbox::connect(&hub, &hub_id, &certs.join(pki::CA_CERT), &cert, &key)
                    .await?;
            let mut stream = inbox.subscribe(cursor, follow).await?;
            while let Some(item) = stream.message().await.map_err(ClientError::from)? {
                println!("{}", cli_fmt::inbox_item(&item));
            }
        }
        Command::Bench {
            items,
            streams,
            window,
            body,
            nodes,
            e2e_items,
            concurrency,
            probes,
            json,
            queue_items,
        } => {
            if queue_items > 0 {
                zhibao::bench::queue_memory(queue_items, body).await?;
                return Ok(ExitCode::SUCCESS);
            }
            zhibao::bench::run(zhibao::bench::BenchOptions {
                ingest_items: items,
                streams,
                window,
                body,
                nodes,
                e2e_items,
                e2e_concurrency: concurrency,
                probes,
                json,
                queue_items,
            })
            .await?;
        }
        Command::Demo => {
            let ok = demo::run().await?;
            return Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_cursor(s: &str) -> anyhow::Result<Cursor> {
    let parts: Vec<u64> = s
        .split(',')
        .map(|p| p.trim().parse::<u64>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("cursor {s:?} is not three numbers like 0,0,0"))?;
    let [emergency, bad_news, routine] = parts[..] else {
        bail!("cursor {s:?} is not three numbers like 0,0,0");
    };
    Ok(Cursor {
        emergency,
        bad_news,
        routine,
    })
}

fn certs(action: CertsCommand) -> anyhow::Result<()> {
    match action {
        CertsCommand::Init {
            dir,
            hub,
            nodes,
            region,
        } => {
            pki::init(&dir, &region, &hub, &nodes)?;
            println!(
                "wrote region CA, CRL and certificates for {hub}{}{} in {}",
                if nodes.is_empty() { "" } else { ", " },
                nodes.join(", "),
                dir.display()
            );
        }
        CertsCommand::Issue { dir, node, days } => {
            let mut opts = pki::IssueOptions::default();
            opts.not_after = opts.not_before + time::Duration::days(days.max(1));
            pki::issue_with(&dir, &node, &opts)?;
            println!("issued {}", pki::node_paths(&dir, &node).0.display());
        }
        CertsCommand::Revoke { dir, node } => {
            pki::revoke(&dir, &node)?;
            println!("revoked {node}; {} updated", dir.join(pki::CRL).display());
        }
    }
    Ok(())
}
