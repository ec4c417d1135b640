//! The `zhibao` command (binary side only; the library does not depend on
//! anything here): one function per subcommand over the library's clients
//! and the node, human-readable output ([`fmt`]), and the two programs that
//! run a whole region on loopback: [`demo`] and [`bench`].

mod archive;
pub(crate) mod args;
mod audit;
mod bench;
mod bench_floor;
mod bench_stats;
mod demo;
mod fetch;
mod fmt;
mod office;
mod review;
mod scratch;
mod store;
pub(crate) mod when;

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use zhibao::class::Class;
use zhibao::client::{self, ClientError};
use zhibao::config::NodeConfig;
use zhibao::proto::Cursor;
use zhibao::{node, pki, trust};

use args::{AuditCommand, CertsCommand, Command, Output, Target};
use when::{Lang, Tz, View};

/// Exit code for an unusable configuration (sysexits EX_USAGE).
const EX_USAGE: u8 = 64;
/// Exit code for an item refused upstream (sysexits EX_DATAERR).
const EX_DATAERR: u8 = 65;
/// Exit code when no receipt came in time (sysexits EX_TEMPFAIL).
const EX_TEMPFAIL: u8 = 75;

/// A custody log that does not verify.
#[derive(Debug, thiserror::Error)]
#[error("the custody log of {node} does not verify: {why}")]
struct LogBroken {
    node: String,
    why: String,
}

/// An item was refused by a receiver, for a reason a retry cannot cure.
#[derive(Debug, thiserror::Error)]
#[error("item {id} was refused: {why}")]
struct Refused {
    id: String,
    why: String,
}
/// Exit code when the node is not running (sysexits EX_UNAVAILABLE).
const EX_UNAVAILABLE: u8 = 69;

/// The line `zhibao` ends with on an error, in the language of its
/// output. In Chinese, a node's refusal is said in the Chinese words the
/// node sent with it ([`zhibao::client::refusal_in_chinese`]), and this
/// client's own failures in Chinese ([`ClientError::in_chinese`]); a
/// refusal without Chinese words first says what kind it is
/// ([`zhibao::client::refusal_zh`]), then the details as they were made.
pub(crate) fn error_text(e: &anyhow::Error, lang: Lang) -> String {
    match lang {
        Lang::En => format!("error: {}", error_line(e)),
        Lang::Zh => {
            let status = e.chain().find_map(status_in);
            match status {
                Some(s) if zhibao::client::refusal_in_chinese(s).is_none() => format!(
                    "错误：{}（{}）",
                    zhibao::client::refusal_zh(s.code()),
                    line_of(e, Lang::Zh)
                ),
                _ => format!("错误：{}", line_of(e, Lang::Zh)),
            }
        }
    }
}

/// A node's refusal, if `cause` is one: a status straight from a gRPC
/// call, or as the client wraps it.
fn status_in<'a>(cause: &'a (dyn std::error::Error + 'static)) -> Option<&'a tonic::Status> {
    match cause.downcast_ref::<ClientError>() {
        Some(ClientError::Status(s)) => Some(s),
        _ => cause.downcast_ref::<tonic::Status>(),
    }
}

/// A failed command's error as one line for people: its causes joined,
/// each said once (wrappers often repeat what they wrap, and some say it
/// in their own words and again through their source), and what to do
/// where the kind of failure says it.
pub(crate) fn error_line(e: &anyhow::Error) -> String {
    line_of(e, Lang::En)
}

/// [`error_line`] in `lang`: in Chinese, a node's refusal and this
/// client's failures in their Chinese words where they have them, and the
/// hint in Chinese.
fn line_of(e: &anyhow::Error, lang: Lang) -> String {
    let chinese = lang == Lang::Zh;
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let client = cause.downcast_ref::<ClientError>();
        let status = status_in(cause);
        let in_chinese = if chinese {
            client
                .and_then(ClientError::in_chinese)
                .or_else(|| status.and_then(zhibao::client::refusal_in_chinese))
        } else {
            None
        };
        // A status's message names what is wrong; its own Display is
        // `code: '...', message: "..."`.
        let text = match (in_chinese, status) {
            (Some(words), _) => words,
            (None, Some(s)) if !s.message().trim().is_empty() => s.message().to_string(),
            (None, _) => cause.to_string(),
        };
        let text = text.trim().trim_end_matches('.').to_string();
        if text.is_empty() || parts.iter().any(|p| p.contains(&text)) {
            continue;
        }
        // A later cause that contains an earlier one replaces it.
        parts.retain(|p| !text.contains(p.as_str()));
        parts.push(text);
    }
    let mut line = parts.join(if chinese { "：" } else { ": " });
    if let Some((en, zh)) = hint(e) {
        line.push_str(if chinese { "；" } else { "; " });
        line.push_str(if chinese { zh } else { en });
    }
    line
}

/// The hint for a configuration that does not do.
const FIX_CONFIG: (&str, &str) = (
    "fix it in the configuration (config/*.toml documents every field)",
    "请在配置中改正（config/*.toml 说明了每个字段）",
);

/// What to do about `e`, in English and in Chinese, for the kinds of
/// failure where the message itself does not say.
fn hint(e: &anyhow::Error) -> Option<(&'static str, &'static str)> {
    use zhibao::config::ConfigError;
    // Only when nothing around it already says what to do.
    match e
        .chain()
        .next()
        .and_then(|t| t.downcast_ref::<ConfigError>())
    {
        Some(ConfigError::Parse { .. } | ConfigError::Invalid { .. }) => {
            return Some(FIX_CONFIG);
        }
        Some(ConfigError::Read { .. }) => {
            return Some((
                "give the node's configuration file with --config (examples in config/)",
                "请用 --config 给出节点的配置文件（示例在 config/）",
            ));
        }
        None => {}
    }
    if let Some(start) = e
        .chain()
        .next()
        .and_then(|t| t.downcast_ref::<node::StartError>())
    {
        use node::StartError as S;
        match start {
            S::Bind { .. } => {
                return Some((
                    "stop what holds that address, or give another one in the configuration",
                    "请停止占用该地址的程序，或在配置中另给一个地址",
                ));
            }
            S::Load { .. } | S::NotTrusted { .. } | S::Tls(_) | S::IdentityMismatch { .. } => {
                return Some((
                    "give the node its own files from the region's PKI (`zhibao certs bundle --node ID`)",
                    "请给节点区域 PKI 中它自己的文件（`zhibao certs bundle --node ID`）",
                ));
            }
            S::Config(_) => {
                return Some(FIX_CONFIG);
            }
            S::Secret { .. } => {
                return Some((
                    "write the secret to that file (one line, e.g. `openssl rand -hex 32 > FILE`), readable by the node's user",
                    "请把密钥写进该文件（一行，例如 `openssl rand -hex 32 > FILE`），让节点的用户可以读取",
                ));
            }
            S::Store { .. } | S::CaKeyPresent { .. } => {}
        }
    }
    let store_in_use = e.chain().any(|c| {
        matches!(c.downcast_ref::<zhibao::store::Error>(),
            Some(zhibao::store::Error::Db(db)) if matches!(**db, redb::Error::DatabaseAlreadyOpen))
    });
    if store_in_use {
        return Some((
            "another zhibao process has this data directory open: stop that node first, or give this one its own data_dir",
            "另一个 zhibao 进程正在使用这个数据目录：请先停止那个节点，或给这个节点单独的 data_dir",
        ));
    }
    match e.downcast_ref::<ClientError>() {
        Some(ClientError::NotRunning { .. }) => Some((
            "start it with `zhibao serve --config FILE`, or give the right --config or --socket",
            "请用 `zhibao serve --config FILE` 启动它，或给出正确的 --config 或 --socket",
        )),
        Some(ClientError::Transport { .. }) => Some((
            "check the address, and that the node there is running",
            "请检查地址，以及那里的节点是否在运行",
        )),
        _ => None,
    }
}

/// The exit code for a command that failed with `e`.
pub(crate) fn exit_code(e: &anyhow::Error) -> ExitCode {
    // Everything that stops a node from starting is something in its
    // configuration (or a file it names) to fix.
    let bad_config = e.downcast_ref::<zhibao::config::ConfigError>().is_some()
        || e.downcast_ref::<node::StartError>().is_some();
    if bad_config {
        return ExitCode::from(EX_USAGE);
    }
    match e.downcast_ref::<ClientError>() {
        Some(ClientError::NotRunning { .. }) => return ExitCode::from(EX_UNAVAILABLE),
        Some(ClientError::Timeout { .. }) => return ExitCode::from(EX_TEMPFAIL),
        _ => {}
    }
    if e.downcast_ref::<Refused>().is_some() || e.downcast_ref::<LogBroken>().is_some() {
        return ExitCode::from(EX_DATAERR);
    }
    ExitCode::FAILURE
}

impl Target {
    async fn connect(&self) -> anyhow::Result<client::Operator> {
        if let (Some(addr), Some(node_id)) = (&self.tcp, &self.node_id) {
            let (cert, key) = trust::node_paths(&self.certs, &self.name);
            let ca = self.certs.join(trust::CA_CERT);
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

/// Where and how this command logs: `--log-format`, else (for `serve`)
/// the configuration's `[log] format`; `serve` stamps text lines in the
/// node's local time; `demo` writes its nodes' log to a file, so that its
/// output stays a report for people.
pub(crate) fn log_options(args: &args::Cli) -> zhibao::telemetry::LogOptions {
    let mut opts = zhibao::telemetry::LogOptions {
        default_filter: args.command.default_log_filter().to_string(),
        ..Default::default()
    };
    if let Command::Serve { config } = &args.command {
        let (log, offset_secs) = NodeConfig::peek_log(config);
        opts.format = log.format;
        opts.utc_offset_secs = offset_secs;
    }
    if matches!(args.command, Command::Demo { .. }) {
        opts.file = Some(demo::log_path());
        opts.default_filter = args::SERVE_LOG_FILTER.to_string();
    }
    if let Some(format) = args.log_format {
        opts.format = format;
    }
    if args.utc {
        opts.utc_offset_secs = 0;
    }
    opts
}

/// Runs one command.
pub(crate) async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { config } => {
            let signals = Signals::install()?;
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
            serve_until_stopped(&running, &config, signals).await;
            let node_id = running.node_id.clone();
            running.shutdown(Duration::from_secs(10)).await;
            tracing::info!(node = %node_id, "node stopped");
        }
        Command::Certs { action } => certs(action)?,
        Command::Submit {
            target,
            priority,
            supplements,
            corrects,
            title,
            body,
            body_file,
            attach,
            deadline_secs,
            wait,
            timeout,
            answers,
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
            let class: Option<Class> = priority.map(|p| p.parse()).transpose()?;
            let (link, links_to) = match (supplements, corrects) {
                (Some(id), _) => (zhibao::proto::LinkKind::Supplements, id),
                (None, Some(id)) => (zhibao::proto::LinkKind::Corrects, id),
                (None, None) => (zhibao::proto::LinkKind::None, String::new()),
            };
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
                zhibao::clock::now_ms() + i64::try_from(s).unwrap_or(i64::MAX / 2) * 1000
            });
            let mut op = target.connect().await?;
            let id = op
                .submit_request(zhibao::proto::SubmitRequest {
                    priority: class.map_or(0, |c| c.to_proto() as i32),
                    title,
                    body,
                    deadline_unix_ms: deadline,
                    attachments: attachments
                        .into_iter()
                        .map(|(name, data)| zhibao::proto::Attachment { name, data })
                        .collect(),
                    link: link as i32,
                    links_to,
                    answers: answers.unwrap_or_default(),
                    // The id is printed first, then the wait (below).
                    wait_receipt_ms: 0,
                })
                .await?;
            println!("{id}");
            let held = op.status(&id).await?;
            if held.state == zhibao::proto::ItemState::AwaitingReview as i32 {
                // Not signed nor sent yet: a receipt cannot come before the review.
                let tz = View {
                    tz: Tz::node(op.node().await?.utc_offset_ms),
                    lang: Lang::choose(None)?,
                };
                println!("{}", review::awaiting(&held, tz));
                return Ok(ExitCode::SUCCESS);
            }
            if wait {
                op.wait_receipt(&id, timeout).await?;
                // Shown as `status` shows it: every receipt verified now.
                let status = op.status(&id).await?;
                let tz = View {
                    tz: Tz::node(op.node().await?.utc_offset_ms),
                    lang: Lang::choose(None)?,
                };
                print!("{}", fmt::status(&status, tz));
                if status.state == zhibao::proto::ItemState::Refused as i32 {
                    return Err(Refused {
                        id,
                        why: status.refusal,
                    }
                    .into());
                }
            }
        }
        Command::Status { id, target, out } => {
            let mut op = target.connect().await?;
            let node = op.node().await?;
            let tz = out.view(&node)?;
            match id {
                Some(id) => {
                    let status = op.status(&id).await?;
                    if out.json {
                        println!("{}", fmt::status_json(&status));
                    } else {
                        print!("{}", fmt::status(&status, tz));
                    }
                }
                None => print!("{}", fmt::node(&node, tz)),
            }
        }
        Command::Withdraw { id, reason, target } => {
            let mut op = target.connect().await?;
            let withdrawal = op.withdraw(&id, &reason).await?;
            let original = op.status(&id).await?;
            println!("{withdrawal}");
            let kept = original.state == zhibao::proto::ItemState::Withdrawn as i32;
            match (Lang::choose(None)?, kept) {
                (Lang::Zh, true) => eprintln!("{id} 尚未发出：留在本节点，标为已撤回，不再发送"),
                (Lang::En, true) => eprintln!(
                    "{id} had not left this node: it is kept here, withdrawn, and will not be sent"
                ),
                (Lang::Zh, false) => eprintln!("{id} 已经发出：撤回报告沿同一路径随后送达"),
                (Lang::En, false) => {
                    eprintln!("{id} had already left: the withdrawal follows it up the same way")
                }
            }
        }
        Command::Show { id, target, out } => {
            let mut op = target.connect().await?;
            let tz = out.view(&op.node().await?)?;
            let status = op.show(&id).await?;
            if out.json {
                println!("{}", fmt::status_json(&status));
            } else {
                print!("{}", fmt::show(&status, tz));
            }
        }
        Command::Fetch {
            id,
            attachment,
            output,
            target,
        } => {
            let mut op = target.connect().await?;
            fetch::run(&mut op, &id, attachment, &output).await?;
        }
        Command::Dispose {
            id,
            adopted,
            outlet,
            not_adopted,
            reason,
            return_,
            question,
            by,
            forward,
            instruction,
            close,
            note,
            target,
            out,
        } => {
            use zhibao::proto::DispositionKind as K;
            let mut op = target.connect().await?;
            let tz = out.view(&op.node().await?)?;
            let (kind, text) = match () {
                () if adopted => (K::Adopted, outlet),
                () if not_adopted => (K::NotAdopted, reason),
                () if return_ => (K::Returned, question),
                () if forward => (K::Forwarded, note),
                () if close => (K::Closed, note),
                () => (K::Instruction, instruction),
            };
            let answer_by_unix_ms = match (&by, kind) {
                (Some(by), K::Returned) => tz.tz.time_or_span(by, "--by")?,
                (Some(_), _) => bail!("--by goes with --return only"),
                (None, _) => 0,
            };
            let view = op
                .dispose(zhibao::proto::DisposeRequest {
                    item_id: id,
                    kind: kind as i32,
                    text: text.unwrap_or_default(),
                    answer_by_unix_ms,
                    staff: String::new(),
                })
                .await?;
            if out.json {
                println!("{}", fmt::decision_json(&view));
            } else {
                println!(
                    "{} {}",
                    tz.t("recorded:", "已记录："),
                    fmt::decision_line(&view, tz)
                );
            }
        }
        Command::Solicitation { action } => office::solicitation(action).await?,
        Command::Solicitations { all, target, out } => {
            let req = zhibao::proto::NoticesRequest {
                all,
                solicitations_only: true,
                ..Default::default()
            };
            office::list(&target, &out, req).await?;
        }
        Command::Stats {
            period,
            county,
            csv,
            target,
            out,
        } => office::stats(&period, county, csv, &target, &out).await?,
        Command::Bulletin {
            period,
            output,
            publish,
            target,
            out,
        } => office::bulletin(&period, output.as_deref(), publish, &target, &out).await?,
        Command::Bulletins {
            id,
            output,
            target,
            out,
        } => match id {
            Some(id) => office::bulletin_one(&target, &out, id, output.as_deref()).await?,
            None => {
                let req = zhibao::proto::NoticesRequest {
                    bulletins_only: true,
                    ..Default::default()
                };
                office::list(&target, &out, req).await?;
            }
        },
        Command::Target { action } => office::target(action).await?,
        Command::Watch { target, out } => {
            let mut op = target.connect().await?;
            let tz = out.view(&op.node().await?)?;
            let mut events = op.watch().await?;
            while let Some(e) = events.message().await.map_err(ClientError::from)? {
                if out.json {
                    println!("{}", fmt::event_json(&e));
                } else {
                    println!("{}", fmt::event(&e, tz));
                }
            }
        }
        Command::List {
            overdue,
            limit,
            class,
            county,
            state,
            since,
            until,
            title,
            open,
            target,
            out,
        } => {
            let mut op = target.connect().await?;
            let tz = out.view(&op.node().await?)?;
            let req = zhibao::proto::ListRequest {
                open_only: open,
                overdue_only: overdue,
                limit,
                priority: class
                    .map(|c| c.parse::<Class>().map(|c| c.to_proto() as i32))
                    .transpose()?
                    .unwrap_or(0),
                origin: county.unwrap_or_default(),
                state: state.as_deref().map(parse_state).transpose()?.unwrap_or(0),
                from_unix_ms: since.map(|t| tz.tz.parse(&t)).transpose()?.unwrap_or(0),
                until_unix_ms: until.map(|t| tz.tz.parse(&t)).transpose()?.unwrap_or(0),
                title_contains: title.unwrap_or_default(),
            };
            let (items, overdue_total) = op.list_where(req).await?;
            for s in &items {
                if out.json {
                    println!("{}", fmt::status_json(s));
                } else {
                    println!("{}", fmt::status_line(s, tz));
                }
            }
            if !out.json {
                match tz.lang {
                    Lang::Zh => eprintln!(
                        "共 {} 条；本节点累计 {overdue_total} 条信息超时",
                        items.len()
                    ),
                    Lang::En => eprintln!(
                        "{} listed; {overdue_total} items have missed their deadline at this node",
                        items.len()
                    ),
                }
            }
        }
        Command::Inbox {
            hub,
            hub_id,
            certs,
            name,
            from,
            consumer,
            follow,
            out,
        } => {
            // The inbox does not say the hub's zone: local time is +08:00
            // (the region's), UTC with --utc.
            let tz = View {
                tz: Tz::node(
                    zhibao::config::Deadlines::default()
                        .offset_ms()
                        .unwrap_or(0),
                ),
                lang: Lang::choose(out.lang.as_deref())?,
            };
            let cursor = parse_cursor(&from)?;
            let (cert, key) = trust::node_paths(&certs, &name);
            let mut inbox =
                client::Inbox::connect(&hub, &hub_id, &certs.join(trust::CA_CERT), &cert, &key)
                    .await?;
            let mut stream = match &consumer {
                Some(c) => inbox.subscribe_as(c, follow).await?,
                None => inbox.subscribe(cursor, follow).await?,
            };
            while let Some(item) = stream.message().await.map_err(ClientError::from)? {
                if out.json {
                    println!("{}", fmt::inbox_json(&item));
                } else {
                    println!("{}", fmt::inbox_item(&item, tz));
                }
                // Acknowledged only once printed (and flushed): a crash in
                // between means the item comes again, never that it is lost.
                if let Some(c) = &consumer {
                    std::io::Write::flush(&mut std::io::stdout())?;
                    let id = fmt::inbox_report(&item).id;
                    if !id.is_empty() {
                        inbox.ack(c, vec![id]).await?;
                    }
                }
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
            connection_per_stream,
            metrics,
            queue_items,
            flood_secs,
            stats,
        } => {
            if stats {
                bench_stats::run(bench_stats::Size {
                    counties: 100,
                    items: 200_000,
                    decisions: 50_000,
                    solicitations: 300,
                })
                .await?;
                return Ok(ExitCode::SUCCESS);
            }
            if flood_secs > 0 {
                bench::flood_memory(Duration::from_secs(flood_secs)).await?;
                return Ok(ExitCode::SUCCESS);
            }
            if queue_items > 0 {
                bench::queue_memory(queue_items, body).await?;
                return Ok(ExitCode::SUCCESS);
            }
            bench::run(bench::BenchOptions {
                ingest_items: items,
                streams,
                window,
                body,
                nodes,
                e2e_items,
                e2e_concurrency: concurrency,
                probes,
                json,
                connection_per_stream,
                hub_metrics: metrics,
            })
            .await?;
        }
        Command::Audit {
            action: AuditCommand::Verify { target, data_dir },
        } => return audit::verify(&target, data_dir.as_deref()).await,
        Command::Review { action } => review::run(action).await?,
        Command::Store { action } => store::run(action).await?,
        Command::Completions { shell } => {
            let shell = match shell {
                args::Shell::Bash => clap_complete::Shell::Bash,
                args::Shell::Zsh => clap_complete::Shell::Zsh,
                args::Shell::Fish => clap_complete::Shell::Fish,
            };
            let mut cmd = <args::Cli as clap::CommandFactory>::command();
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd, "zhibao", &mut out);
            print_all(&out)?;
        }
        Command::Man => {
            let cmd = <args::Cli as clap::CommandFactory>::command();
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut out)?;
            print_all(&out)?;
        }
        Command::Demo { web, lang } => {
            let ok = demo::run(web, Lang::choose(lang.as_deref())?).await?;
            return Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

impl Output {
    /// How to show things: in the node's zone (UTC with `--utc`) and the
    /// language asked for (`--lang`, else the environment's).
    fn view(&self, node: &zhibao::proto::NodeStatus) -> anyhow::Result<View> {
        Ok(View {
            tz: Tz::node(node.utc_offset_ms),
            lang: Lang::choose(self.lang.as_deref())?,
        })
    }
}

/// Writes `bytes` to stdout; a reader that stopped early (`| head`) is
/// not an error.
fn print_all(bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// A state named on the command line.
fn parse_state(s: &str) -> anyhow::Result<i32> {
    use zhibao::proto::ItemState;
    Ok(match s {
        "queued" => ItemState::Queued,
        "in_flight" | "in-flight" => ItemState::InFlight,
        "receipted" => ItemState::Receipted,
        "refused" => ItemState::Refused,
        "delivered" => ItemState::Delivered,
        "awaiting_review" => ItemState::AwaitingReview,
        "returned_by_review" => ItemState::ReturnedByReview,
        _ => bail!(
            "unknown state {s:?}: use queued, receipted, refused, delivered, awaiting_review or returned_by_review"
        ),
    } as i32)
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
    let pki_of = |dirs: &args::PkiDirs| {
        let pki = dirs.ca_dir.as_deref().map_or_else(
            || pki::Pki::at(&dirs.dir),
            |ca| pki::Pki::new(&dirs.dir, ca),
        );
        if let Some(key) = pki.legacy_ca_key() {
            eprintln!(
                "warning: {} is the CA key, next to the files nodes are given (old layout); \
                 move it, with a copy of ca.pem and crl.pem, to {}",
                key.display(),
                pki.ca.display()
            );
        }
        pki
    };
    // The CRL files a change wrote (one in the old layout).
    let crls = |pki: &pki::Pki| {
        let copy = pki.nodes.join(trust::CRL);
        if pki.ca.join(trust::CA_KEY).exists() {
            format!(
                "{} and {}",
                pki.ca.join(trust::CRL).display(),
                copy.display()
            )
        } else {
            copy.display().to_string()
        }
    };
    match action {
        CertsCommand::Init {
            dirs,
            hub,
            nodes,
            region,
        } => {
            let pki = pki_of(&dirs);
            pki::init_in(&pki, &region, &hub, &nodes)?;
            println!(
                "wrote the region CA in {} (ca.key: keep this directory off the nodes)",
                pki.ca.display()
            );
            println!(
                "wrote ca.pem, crl.pem and certificates for {hub}{}{} in {}",
                if nodes.is_empty() { "" } else { ", " },
                nodes.join(", "),
                pki.nodes.display()
            );
        }
        CertsCommand::Issue { dirs, node, days } => {
            let pki = pki_of(&dirs);
            pki::issue_in(&pki, &node, &pki::IssueOptions::for_days(days))?;
            let cert = trust::node_paths(&pki.nodes, &node).0;
            println!(
                "issued {} (serial {})",
                cert.display(),
                pki::serial_hex(&pki::read_serial(&cert)?)
            );
        }
        CertsCommand::Renew { dirs, node, days } => {
            let pki = pki_of(&dirs);
            let r = pki::renew(&pki, &node, &pki::IssueOptions::for_days(days))?;
            let cert = trust::node_paths(&pki.nodes, &node).0;
            if r.resumed {
                println!("finished an interrupted renewal of {node}");
            }
            println!(
                "renewed {} (serial {}); the previous certificate (serial {}) stays valid \
                 until it expires: revoke it with `zhibao certs revoke --node {node} --old` \
                 once the node runs on the new one",
                cert.display(),
                r.new_serial,
                r.old_serial
            );
        }
        CertsCommand::Revoke {
            dirs,
            node,
            old,
            serial,
        } => {
            let which = match (old, serial) {
                (_, Some(s)) => pki::Which::Serial(pki::parse_serial(&s)?),
                (true, None) => pki::Which::Old,
                (false, None) => pki::Which::All,
            };
            let pki = pki_of(&dirs);
            let serials = pki::revoke_in(&pki, &node, &which)?;
            println!(
                "revoked {node}: serial {}; {} updated",
                serials.join(", "),
                crls(&pki)
            );
        }
        CertsCommand::RefreshCrl { dirs, days } => {
            let pki = pki_of(&dirs);
            let next = time::OffsetDateTime::now_utc() + time::Duration::days(days.max(1));
            let number = pki::reissue_crl(&pki, next)?;
            println!(
                "signed CRL number {number}, next update {}; {} updated",
                next.date(),
                crls(&pki)
            );
        }
        CertsCommand::Bundle { dir, node, out } => {
            for path in pki::bundle(&dir, &node, &out)? {
                println!("wrote {}", path.display());
            }
        }
    }
    Ok(())
}

/// The signals a node acts on, installed before it starts: from then on a
/// SIGHUP or SIGTERM arriving while it starts is kept for the loop below
/// instead of ending the process with no log line (the default action).
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let install = |kind, name| {
            signal(kind).with_context(|| format!("cannot install a handler for {name}"))
        };
        Ok(Self {
            int: install(SignalKind::interrupt(), "SIGINT")?,
            term: install(SignalKind::terminate(), "SIGTERM")?,
            hup: install(SignalKind::hangup(), "SIGHUP")?,
        })
    }
}

/// Serves until SIGINT or SIGTERM. On SIGHUP, reads the configuration file
/// again (what can change while running is applied, the rest logged as
/// needing a restart; a file that does not load changes nothing) and has
/// the node look at its trust files (CA, CRL, certificate, key) at once.
/// Every signal is logged.
async fn serve_until_stopped(
    running: &node::RunningNode,
    config: &std::path::Path,
    mut s: Signals,
) {
    loop {
        tokio::select! {
            _ = s.int.recv() => return tracing::info!(signal = "SIGINT", "SIGINT received: stopping (draining streams, closing the store)"),
            _ = s.term.recv() => return tracing::info!(signal = "SIGTERM", "SIGTERM received: stopping (draining streams, closing the store)"),
            _ = s.hup.recv() => {
                tracing::info!(signal = "SIGHUP", config = %config.display(), "SIGHUP received: reloading the configuration, CA, CRL, certificate and key");
                running.reload();
                match NodeConfig::load(config) {
                    // Logged by the node: what changed, what needs a restart.
                    Ok(new) => { let _ = running.reconfigure(&new).await; }
                    Err(e) => tracing::error!(
                        signal = "SIGHUP",
                        config = %config.display(),
                        error = %e,
                        "SIGHUP: the configuration does not load; the one in force stays (fix the file and send SIGHUP again)"
                    ),
                }
            }
        }
    }
}
