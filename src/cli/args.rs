//! The command line: every subcommand and its options (clap).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "zhibao",
    version,
    about = "直报 — secure store-and-forward relay for urgent reports"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    /// Log lines as text for people, or one JSON object per line for log
    /// shippers [default: the configuration's `[log] format`, else text].
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub(crate) log_format: Option<zhibao::telemetry::LogFormat>,
    /// Show times in UTC rather than the node's local time
    /// (`deadlines.utc_offset`).
    #[arg(long, global = true)]
    pub(crate) utc: bool,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
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
        /// emergency, bad_news or routine (or 紧急, 报忧, 动态). With
        /// --supplements or --corrects it may be left out: the earlier
        /// report's class.
        #[arg(long, short, required_unless_present_any = ["supplements", "corrects", "answers"])]
        priority: Option<String>,
        /// This report adds information to an earlier one of this node
        /// (e.g. the answer to the office's question when it was returned).
        #[arg(long, value_name = "ID", conflicts_with = "corrects")]
        supplements: Option<String>,
        /// This report is a corrected version of an earlier one of this
        /// node, which it supersedes (if that has not left yet, it never
        /// will).
        #[arg(long, value_name = "ID")]
        corrects: Option<String>,
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
        /// This report answers the office's solicitation (约稿) SOL-ID; its
        /// class may then be left out: the one the solicitation asks for.
        #[arg(long, value_name = "SOL-ID")]
        answers: Option<String>,
    },
    /// Withdraw an earlier report of this node, saying why: a signed
    /// withdrawal travels the report's way (if the report has not left
    /// yet, it never will).
    Withdraw {
        /// The item id.
        id: String,
        /// Why it is withdrawn.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        target: Target,
    },
    /// Show an item's class, state, times, receipts and the office's
    /// decisions. Without an id: the node itself (its CRL, certificate and
    /// routes).
    Status {
        /// The item id printed by `submit`.
        id: Option<String>,
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        out: Output,
    },
    /// Show a whole report as a person reads it: its text, attachments,
    /// hop chain, receipts and every decision on it, verified now.
    Show {
        /// The item id.
        id: String,
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        out: Output,
    },
    /// Save an attachment of an item to a file, checking it against the
    /// digest the origin signed.
    Fetch {
        /// The item id.
        id: String,
        /// Which attachment (0 = the first; `show` lists them).
        #[arg(long, default_value_t = 0)]
        attachment: u32,
        /// The file to write (refuses to overwrite one that exists).
        #[arg(long, short)]
        output: PathBuf,
        #[command(flatten)]
        target: Target,
    },
    /// Record the office's decision on a report from below (signed by this
    /// node, carried down to the county that wrote it).
    #[command(group(clap::ArgGroup::new("decision").required(true).args([
        "adopted", "not_adopted", "return_", "forward", "instruction", "close"
    ])))]
    Dispose {
        /// The item id.
        id: String,
        /// Adopted (采用) into a publication: give --outlet.
        #[arg(long, requires = "outlet")]
        adopted: bool,
        /// Where it was adopted, e.g. "《情况专报》2026年第12期".
        #[arg(long)]
        outlet: Option<String>,
        /// Not adopted (不采用): give --reason.
        #[arg(long, requires = "reason")]
        not_adopted: bool,
        /// Why it was not adopted.
        #[arg(long)]
        reason: Option<String>,
        /// Returned for more information (退回补充): give --question and --by.
        #[arg(long = "return", requires_all = ["question", "by"])]
        return_: bool,
        /// What the county must answer.
        #[arg(long)]
        question: Option<String>,
        /// When the answer is due: a time, e.g. 2026-12-01T12:00 (node's
        /// local time), or a span from now, e.g. 2h or 3days.
        #[arg(long)]
        by: Option<String>,
        /// Passed on to the level above (上报).
        #[arg(long)]
        forward: bool,
        /// A leader's instruction (批示), its text.
        #[arg(long, value_name = "TEXT")]
        instruction: Option<String>,
        /// Closed (办结).
        #[arg(long)]
        close: bool,
        /// A note with --forward or --close.
        #[arg(long)]
        note: Option<String>,
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        out: Output,
    },
    /// Follow the node's events live: submissions, receipts, decisions,
    /// overdue items, escalations, alarms, routes going up and down.
    Watch {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        out: Output,
    },
    /// List items, newest first, with their county, class, state, deadline
    /// and the start of their text.
    List {
        /// Only items that missed their deadline.
        #[arg(long)]
        overdue: bool,
        /// At most this many.
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        /// Only this class: emergency, bad_news, routine (or 紧急, 报忧, 动态).
        #[arg(long)]
        class: Option<String>,
        /// Only items from this county (origin node id).
        #[arg(long)]
        county: Option<String>,
        /// Only items in this state: queued, receipted, refused, delivered,
        /// awaiting_review, returned_by_review.
        #[arg(long)]
        state: Option<String>,
        /// Only items written at or after this time, e.g. 2026-11-01.
        #[arg(long)]
        since: Option<String>,
        /// Only items written before this time.
        #[arg(long)]
        until: Option<String>,
        /// Only items whose title contains this text (any case).
        #[arg(long)]
        title: Option<String>,
        /// Only items not yet closed (办结) nor withdrawn, oldest first.
        #[arg(long, conflicts_with = "overdue")]
        open: bool,
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        out: Output,
    },
    /// Ask counties for reports on a topic by a date (约稿), change or
    /// withdraw such a request, and see who answered.
    Solicitation {
        #[command(subcommand)]
        action: SolicitationCommand,
    },
    /// The solicitations (约稿) addressed to this node, or published by it,
    /// still current; with --all every one known here.
    Solicitations {
        /// Also withdrawn ones, those long past, and those for others.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        out: Output,
    },
    /// The office's figures for a month, quarter or year, per county:
    /// reports by class, on time and late, adopted (采用) by outlet and by
    /// the level above, instructions, answers to solicitations, points,
    /// rank and progress towards the yearly target.
    Stats {
        #[command(flatten)]
        period: Period,
        /// Only this county.
        #[arg(long)]
        county: Option<String>,
        /// Comma-separated values, one line per county.
        #[arg(long, conflicts_with = "json")]
        csv: bool,
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        out: Output,
    },
    /// Write the monthly bulletin (月度通报) or the quarterly summary
    /// (季度小结) as an HTML document (Chinese unless --lang en); with
    /// --publish, also sign it and push it down to every county.
    Bulletin {
        #[command(flatten)]
        period: Period,
        /// The HTML file to write (refuses to overwrite one that exists).
        #[arg(long, short, required_unless_present_any = ["publish", "json"])]
        output: Option<PathBuf>,
        /// Sign the bulletin and push it down to every node below.
        #[arg(long)]
        publish: bool,
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        out: Output,
    },
    /// The bulletins (通报) published by the office above (or here).
    Bulletins {
        /// One bulletin, e.g. BUL-2026-11.
        #[arg(long)]
        id: Option<String>,
        /// With --id: write its HTML document to this file.
        #[arg(long, short, requires = "id")]
        output: Option<PathBuf>,
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        out: Output,
    },
    /// Yearly targets per county (目标分解).
    Target {
        #[command(subcommand)]
        action: TargetCommand,
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
        /// Read as this durable consumer of our certificate: the hub keeps
        /// the position; every item is acknowledged once printed, so one
        /// not printed (a crash) comes again.
        #[arg(long, conflicts_with = "from")]
        consumer: Option<String>,
        /// Keep waiting for new items.
        #[arg(long)]
        follow: bool,
        #[command(flatten)]
        out: Output,
    },
    /// Review before sending (把关): for the office's director and deputy.
    Review {
        #[command(subcommand)]
        action: ReviewCommand,
    },
    /// Check a node's custody log: every record linked to the one before,
    /// every signed checkpoint valid and matching. Names the first bad
    /// record.
    Audit {
        #[command(subcommand)]
        action: AuditCommand,
    },
    /// What the node's store holds, and retention (pruning delivered
    /// items' reports and attachments; archiving at the final hub).
    Store {
        #[command(subcommand)]
        action: StoreCommand,
    },
    /// Run a whole small region on loopback and show it working.
    Demo {
        /// Then leave the region running with the office's web desk open
        /// (prints its address and how to log in), until Ctrl-C.
        #[arg(long)]
        web: bool,
        /// zh (中文) or en: the demo's report, and the reports its counties
        /// write; default: ZHIBAO_LANG, else the locale (LANG).
        #[arg(long)]
        lang: Option<String>,
    },
    /// Print a shell completion script: `zhibao completions bash >
    /// /etc/bash_completion.d/zhibao` (zsh: into a directory of $fpath as
    /// `_zhibao`; fish: ~/.config/fish/completions/zhibao.fish).
    Completions {
        /// bash, zsh or fish.
        shell: Shell,
    },
    /// Print the manual page (roff), generated from these options:
    /// `zhibao man > /usr/local/share/man/man1/zhibao.1`.
    Man,
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
        /// One TLS connection per ingest stream (as the brokers' benchmarks
        /// open one per publisher), not one per county.
        #[arg(long)]
        connection_per_stream: bool,
        /// Serve the hub's Prometheus metrics (on a loopback port) while
        /// it is measured, and scrape them once after the ingest run.
        #[arg(long)]
        metrics: bool,
        /// Instead: queue this many routine items at a node whose hub is
        /// unreachable, and report the node's memory.
        #[arg(long, default_value_t = 0)]
        queue_items: usize,
        /// Instead: for this many seconds, one county pushes reports of the
        /// largest size on as many streams as one connection may open,
        /// never reading the answers, and the hub's peak memory is reported.
        #[arg(long, default_value_t = 0)]
        flood_secs: u64,
        /// Instead: time `zhibao stats` and `zhibao bulletin` at a hub
        /// holding a year of history (100 counties, 200,000 reports,
        /// 50,000 decisions, 300 solicitations).
        #[arg(long)]
        stats: bool,
    },
}

/// The shells `zhibao completions` writes for.
#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub(crate) enum Shell {
    /// GNU bash.
    Bash,
    /// Z shell.
    Zsh,
    /// The friendly interactive shell.
    Fish,
}

/// A period of the office's figures: one of --month, --quarter, --year.
#[derive(clap::Args, Debug, Clone)]
#[group(required = true, multiple = false)]
pub(crate) struct Period {
    /// A month, e.g. 2026-11.
    #[arg(long)]
    pub(crate) month: Option<String>,
    /// A quarter, e.g. 2026Q4.
    #[arg(long)]
    pub(crate) quarter: Option<String>,
    /// A year, e.g. 2026.
    #[arg(long)]
    pub(crate) year: Option<String>,
}

impl Period {
    /// The period as the node takes it: `2026-11`, `2026Q4`, `2026`.
    pub(crate) fn text(&self) -> String {
        self.month
            .clone()
            .or_else(|| self.quarter.clone())
            .or_else(|| self.year.clone())
            .unwrap_or_default()
    }
}

/// `zhibao solicitation`.
#[derive(Subcommand, Debug)]
pub(crate) enum SolicitationCommand {
    /// Publish a solicitation: signed by this node and pushed down to
    /// every county below it; those it asks see it and answer with
    /// `zhibao submit --answers ID`.
    Publish {
        /// What it is about, e.g. "秋汛防御情况".
        #[arg(long)]
        topic: String,
        /// What is asked, as text.
        #[arg(long, conflicts_with = "text_file")]
        text: Option<String>,
        /// Read what is asked from a file.
        #[arg(long)]
        text_file: Option<PathBuf>,
        /// When answers are due: 2026-12-01T12:00 (node's local time), or a
        /// span from now such as 36h or 3days.
        #[arg(long)]
        due: String,
        /// The class answers travel in: emergency, bad_news or routine.
        #[arg(long, short, default_value = "routine")]
        priority: String,
        /// A county asked (node id); may be given several times. None: every county.
        #[arg(long = "county")]
        counties: Vec<String>,
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        out: Output,
    },
    /// Give a solicitation a later deadline.
    Extend {
        /// The solicitation's id.
        id: String,
        /// The new deadline: 2026-12-05T12:00, or a span from now (48h).
        #[arg(long)]
        due: String,
        /// Why.
        #[arg(long, default_value = "")]
        note: String,
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        out: Output,
    },
    /// Withdraw a solicitation: no answer is expected any more.
    Withdraw {
        /// The solicitation's id.
        id: String,
        /// Why.
        #[arg(long)]
        note: String,
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        out: Output,
    },
    /// Per county: answered on time, late, not answered, or still open.
    Status {
        /// The solicitation's id.
        id: String,
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        out: Output,
    },
    /// One solicitation in full, verified now.
    Show {
        /// The solicitation's id.
        id: String,
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        out: Output,
    },
}

/// `zhibao target`.
#[derive(Subcommand, Debug)]
pub(crate) enum TargetCommand {
    /// Set a county's target for a year (kept at the node; it overrides
    /// `[[office.targets]]` of the configuration). Both 0 clears it.
    Set {
        /// The county (node id).
        county: String,
        /// The year, e.g. 2026.
        #[arg(long)]
        year: i32,
        /// Points to reach in the year.
        #[arg(long, default_value_t = 0)]
        points: i64,
        /// Adopted reports to reach in the year.
        #[arg(long, default_value_t = 0)]
        adopted: i64,
        #[command(flatten)]
        target: Target,
    },
}

/// How results are printed.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct Output {
    /// One JSON object per line, for scripts.
    #[arg(long)]
    pub(crate) json: bool,
    /// zh (中文) or en; default: ZHIBAO_LANG, else the locale (LANG).
    #[arg(long)]
    pub(crate) lang: Option<String>,
}

#[derive(clap::Args, Debug)]
pub(crate) struct Target {
    /// The node's configuration (to find its operator socket).
    #[arg(long, short, default_value = "config/node.toml")]
    pub(crate) config: PathBuf,
    /// The operator socket; overrides the configuration.
    #[arg(long)]
    pub(crate) socket: Option<PathBuf>,
    /// Use the node's TCP operator listener (mutual TLS) at host:port instead.
    #[arg(long, requires = "node_id")]
    pub(crate) tcp: Option<String>,
    /// With --tcp: the node's id (its certificate must name it).
    #[arg(long)]
    pub(crate) node_id: Option<String>,
    /// With --tcp: PKI directory holding ca.pem and our certificate and key.
    #[arg(long, default_value = "certs")]
    pub(crate) certs: PathBuf,
    /// With --tcp: our name in the PKI directory (<name>.pem, <name>.key).
    #[arg(long = "as", default_value = "operator")]
    pub(crate) name: String,
}

/// `zhibao certs`: the region's PKI in two directories. The node directory
/// (`--dir`, what nodes are configured with) holds `ca.pem`, `crl.pem` and
/// every node's certificates and keys, never the CA key; the CA directory
/// (`--ca-dir`, by default `<dir>-ca`) holds `ca.key`, `ca.pem` and the
/// authoritative `crl.pem`, and never goes to a node.
#[derive(Subcommand, Debug)]
pub(crate) enum CertsCommand {
    /// Create a region CA, a hub certificate and node certificates.
    ///
    /// The CA key (ca.key, mode 0600), ca.pem and crl.pem go into the CA
    /// directory; ca.pem, a copy of crl.pem and the certificates and keys
    /// into the node directory. Refuses if either already holds a CA.
    Init {
        #[command(flatten)]
        dirs: PkiDirs,
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
        #[command(flatten)]
        dirs: PkiDirs,
        /// The node id.
        #[arg(long)]
        node: String,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: i64,
    },
    /// Give a node a new key and certificate for the same node id.
    ///
    /// The node's files are replaced atomically (a running node picks them
    /// up without a restart). The old certificate is kept as
    /// <node>.pem.old and stays valid, so reports signed under it stay
    /// verifiable, until it expires or is revoked with `revoke --old`.
    Renew {
        #[command(flatten)]
        dirs: PkiDirs,
        /// The node id.
        #[arg(long)]
        node: String,
        /// Validity of the new certificate in days.
        #[arg(long, default_value_t = 365)]
        days: i64,
    },
    /// Revoke a node's certificates (updates crl.pem, which nodes reload).
    ///
    /// Without --old or --serial: all of them, the current one and those
    /// renewals replaced, each with its P-256 companion. The CRL is written
    /// to the CA directory, then copied to the node directory.
    Revoke {
        #[command(flatten)]
        dirs: PkiDirs,
        /// The node id.
        #[arg(long)]
        node: String,
        /// Only the certificates renewals replaced (<node>.pem.old): once
        /// the node runs on its new one.
        #[arg(long, conflicts_with = "serial")]
        old: bool,
        /// Only the certificate with this serial number (hex, as `renew`
        /// and `issue` print it).
        #[arg(long, value_name = "HEX")]
        serial: Option<String>,
    },
    /// Sign the CRL again with a new nextUpdate.
    ///
    /// Same revoked certificates, the next CRL number. Run it well before
    /// the CRL's nextUpdate: past it (and the nodes' grace) nodes refuse
    /// relay traffic.
    RefreshCrl {
        #[command(flatten)]
        dirs: PkiDirs,
        /// Days until the new CRL's nextUpdate.
        #[arg(long, default_value_t = zhibao::pki::DEFAULT_CRL_DAYS)]
        days: i64,
    },
    /// Copy exactly the files one node needs into a directory for it.
    ///
    /// ca.pem, crl.pem, <node>.pem, <node>.key, <node>.p256.pem,
    /// <node>.p256.key (those that exist), keys with mode 0600; never the
    /// CA key.
    Bundle {
        /// The node directory to copy from.
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// The node id.
        #[arg(long)]
        node: String,
        /// Directory to write into (created with mode 0700); must not hold
        /// any of the files yet.
        #[arg(long)]
        out: PathBuf,
    },
}

/// The two directories of a region's PKI.
#[derive(clap::Args, Debug)]
pub(crate) struct PkiDirs {
    /// The node directory: ca.pem, crl.pem, every node's certificates and
    /// keys.
    #[arg(long, default_value = "certs")]
    pub(crate) dir: PathBuf,
    /// The CA directory: ca.key, ca.pem and the authoritative crl.pem
    /// [default: <dir>-ca].
    #[arg(long)]
    pub(crate) ca_dir: Option<PathBuf>,
}

/// A node's log filter unless `RUST_LOG` says otherwise.
pub(crate) const SERVE_LOG_FILTER: &str = "info,h2=warn,tower=warn,hyper=warn";

impl Command {
    /// The log filter when `RUST_LOG` does not say otherwise: a daemon says
    /// what it does; a command prints only its result and warnings.
    pub(crate) fn default_log_filter(&self) -> &'static str {
        match self {
            Self::Serve { .. } => SERVE_LOG_FILTER,
            _ => "warn",
        }
    }
}

/// `zhibao review`: what awaits review, and the decisions on it.
#[derive(Subcommand, Debug)]
pub(crate) enum ReviewCommand {
    /// Items awaiting review (or, for emergencies sent at once, sign-off):
    /// author, class, title, who may act now and when each goes without
    /// review.
    List {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        out: Output,
    },
    /// Approve an item: it is signed with your name and sent now (for an
    /// emergency that left already, a signed sign-off follows it).
    Approve {
        /// The item id.
        id: String,
        /// A note signed with the approval.
        #[arg(long)]
        note: Option<String>,
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        out: Output,
    },
    /// Return an item to its author, saying why: it is kept, never sent;
    /// the author can submit a new one.
    Reject {
        /// The item id.
        id: String,
        /// Why, for the author (required).
        #[arg(long)]
        note: Option<String>,
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        out: Output,
    },
}

/// `zhibao store`.
#[derive(Subcommand, Debug)]
pub(crate) enum StoreCommand {
    /// Tables, items by state, pruned items and the files' sizes.
    Stats {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        out: Output,
    },
    /// Prune (at the final hub: archive, then prune) now what the
    /// `[retention]` rules allow, instead of at the next scheduled pass.
    Prune {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        out: Output,
    },
    /// Read the final hub's archive: the reports retention took out of the
    /// store, read from the files themselves (the node may run or not).
    Archive {
        #[command(subcommand)]
        action: ArchiveCommand,
    },
}

/// `zhibao store archive`.
#[derive(Subcommand, Debug)]
pub(crate) enum ArchiveCommand {
    /// One line per archived item: id, when stored, county, class, title.
    List {
        #[command(flatten)]
        from: ArchiveFrom,
        /// Only the items stored in this month (YYYY-MM, the node's time
        /// zone): the file of that month.
        #[arg(long)]
        month: Option<String>,
        #[command(flatten)]
        out: Output,
    },
    /// One archived item: its report, with the signature and every decision
    /// checked against the region CA as of when each was made; with
    /// --attachment and --output, one attachment saved to a file.
    Show {
        /// The item id.
        id: String,
        #[command(flatten)]
        from: ArchiveFrom,
        /// Save this attachment (0 = the first) to --output instead.
        #[arg(long, requires = "output")]
        attachment: Option<u32>,
        /// The file to write the attachment to (refuses to overwrite one).
        #[arg(long, short, requires = "attachment")]
        output: Option<PathBuf>,
        #[command(flatten)]
        out: Output,
    },
}

/// Where `zhibao store archive` finds the archive and the trust to check it.
#[derive(clap::Args, Debug)]
pub(crate) struct ArchiveFrom {
    /// The hub's configuration: its data directory, CA, CRL and time zone.
    #[arg(long, short, default_value = "config/node.toml")]
    pub(crate) config: PathBuf,
    /// The archive directory; default: `archive` in the data directory.
    #[arg(long)]
    pub(crate) dir: Option<PathBuf>,
}

/// `zhibao audit`.
#[derive(Subcommand, Debug)]
pub(crate) enum AuditCommand {
    /// Verify the custody log, from the running node (its operator socket)
    /// or, with --data-dir, from a stopped node's store.
    Verify {
        #[command(flatten)]
        target: Target,
        /// Read the store in this data directory directly (the node must
        /// be stopped); the CA and node id still come from --config.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}
