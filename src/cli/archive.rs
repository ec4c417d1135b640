//! `zhibao store archive list` and `show`: the final hub's archive read
//! from its files, so that a report retention took out of the store long
//! ago can still be found, read, checked and its attachments saved.
//!
//! Everything is read from the files (see `zhibao::node::archive`), one
//! frame at a time; the node may be running (its appends are whole frames,
//! synced) or not. A report's signature and each decision are checked
//! against the region CA and CRL of the hub's configuration as of when
//! each was made: a year on, the certificates that signed them may have
//! expired, which does not make them less true.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use prost::Message;
use serde_json::{Value, json};
use zhibao::config::NodeConfig;
use zhibao::digest::{hex, sha256};
use zhibao::node::archive::{Frames, files};
use zhibao::proto::{
    ArchivedItem, DispositionView, Report, SignedDisposition, SignedReport, Verdict, VerdictOutcome,
};
use zhibao::trust::Trust;
use zhibao::verdict::{found, invalid};

use super::args::{ArchiveCommand, ArchiveFrom, Output};
use super::fmt::{class_key, class_of, decision_json, decision_list, size};
use super::when::{Lang, Tz, View};

/// Some of the archive could not be read: what was readable was shown.
#[derive(Debug, thiserror::Error)]
#[error("{0} archive file(s) have a damaged frame (named above); the items before it were read")]
pub(crate) struct Damaged(usize);

/// Runs a `zhibao store archive` command.
pub(crate) fn run(action: ArchiveCommand) -> anyhow::Result<()> {
    match action {
        ArchiveCommand::List { from, month, out } => list(&from, month.as_deref(), &out),
        ArchiveCommand::Show {
            id,
            from,
            attachment,
            output,
            out,
        } => match (attachment, output) {
            (Some(n), Some(path)) => save(&from, &id, n, &path),
            _ => show(&from, &id, &out),
        },
    }
}

/// The hub's archive directory and time zone, from its configuration.
struct Hub {
    cfg: NodeConfig,
    dir: PathBuf,
    offset_ms: i64,
}

impl Hub {
    fn load(from: &ArchiveFrom) -> anyhow::Result<Self> {
        let cfg = NodeConfig::load(&from.config)
            .context("the hub's configuration names its data directory, CA and time zone")?;
        let dir = from
            .dir
            .clone()
            .unwrap_or_else(|| cfg.data_dir.join("archive"));
        let offset_ms = cfg.deadlines.offset_ms()?;
        Ok(Self {
            cfg,
            dir,
            offset_ms,
        })
    }

    fn view(&self, out: &Output) -> anyhow::Result<View> {
        Ok(View {
            tz: Tz::node(self.offset_ms),
            lang: Lang::choose(out.lang.as_deref())?,
        })
    }

    /// The CA and CRL to check against; refused if missing or bad, never
    /// shown as checked without them.
    fn trust(&self) -> anyhow::Result<Trust> {
        Trust::load(&self.cfg.tls.ca, self.cfg.tls.crl.as_deref()).with_context(|| {
            format!(
                "the region CA ({}) is needed to check archived reports",
                self.cfg.tls.ca.display()
            )
        })
    }

    /// The files to read: all, or the one of `month`.
    fn files(&self, month: Option<&str>) -> anyhow::Result<Vec<PathBuf>> {
        let all = files(&self.dir)
            .with_context(|| format!("listing the archive {}", self.dir.display()))?;
        Ok(match month {
            Some(m) => {
                let name = format!("{m}.zba");
                all.into_iter()
                    .filter(|p| p.file_name().is_some_and(|f| *f == *name))
                    .collect()
            }
            None => all,
        })
    }

    /// Reads every item of `files` in order, handing each to `each`; a
    /// damaged frame is named on stderr and ends its file, and counted.
    fn read(&self, files: &[PathBuf], mut each: impl FnMut(&Path, ArchivedItem)) -> usize {
        let mut damaged = 0;
        for path in files {
            let frames = match Frames::open(path) {
                Ok(f) => f,
                Err(e) => {
                    eprintln!("error: {}: {e}", path.display());
                    damaged += 1;
                    continue;
                }
            };
            for item in frames {
                match item {
                    Ok(item) => each(path, item),
                    Err(e) => {
                        eprintln!("error: {e}; the rest of the file is not read");
                        damaged += 1;
                    }
                }
            }
        }
        damaged
    }
}

/// What a listing shows of one item.
struct Line {
    id: String,
    file: PathBuf,
    stored_ms: i64,
    report: Report,
    decisions: usize,
    attachments: usize,
}

fn list(from: &ArchiveFrom, month: Option<&str>, out: &Output) -> anyhow::Result<()> {
    let hub = Hub::load(from)?;
    let v = hub.view(out)?;
    let files = hub.files(month)?;
    if files.is_empty() {
        let dir = hub.dir.display();
        match (month, v.lang) {
            (Some(m), Lang::Zh) => eprintln!("{dir} 中没有 {m} 的归档"),
            (Some(m), Lang::En) => eprintln!("nothing archived for {m} in {dir}"),
            (None, Lang::Zh) => eprintln!("{dir} 中尚无归档"),
            (None, Lang::En) => eprintln!("nothing archived in {dir}"),
        }
        return Ok(());
    }
    // An item archived twice (a pass that crashed before its prune) is
    // listed once, where it was last written.
    let mut lines: Vec<Line> = Vec::new();
    let mut at: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let damaged = hub.read(&files, |path, item| {
        let report = SignedReport::decode(item.signed_report.as_slice())
            .ok()
            .and_then(|s| Report::decode(s.report.as_slice()).ok())
            .unwrap_or_default();
        let line = Line {
            id: item.id.clone(),
            file: path.to_path_buf(),
            stored_ms: item.stored_unix_ms,
            report,
            decisions: item.decisions.len(),
            attachments: item.attachments.len(),
        };
        if let Some(&i) = at.get(&item.id) {
            lines[i] = line;
        } else {
            at.insert(item.id, lines.len());
            lines.push(line);
        }
    });
    for l in &lines {
        if out.json {
            println!(
                "{}",
                json!({
                    "id": l.id,
                    "file": l.file,
                    "stored_unix_ms": l.stored_ms,
                    "created_unix_ms": l.report.created_unix_ms,
                    "origin": l.report.origin,
                    "class": class_key(l.report.priority),
                    "title": l.report.title,
                    "attachments": l.attachments,
                    "decisions": l.decisions,
                })
            );
        } else {
            println!(
                "{}\t{} {}\t{}\t{}\t{} {}\t{}",
                l.id,
                v.t("stored", "入库"),
                v.short(l.stored_ms),
                l.report.origin,
                class_key(l.report.priority),
                l.decisions,
                v.t("decision(s)", "条处理意见"),
                l.report.title
            );
        }
    }
    if damaged > 0 {
        return Err(Damaged(damaged).into());
    }
    Ok(())
}

/// The last copy of `id` in the archive, with the file it is in.
fn find(hub: &Hub, id: &str) -> anyhow::Result<(PathBuf, ArchivedItem)> {
    let files = hub.files(None)?;
    let mut found = None;
    let damaged = hub.read(&files, |path, item| {
        if item.id == id {
            found = Some((path.to_path_buf(), item));
        }
    });
    match found {
        Some(f) => Ok(f),
        None if damaged > 0 => Err(Damaged(damaged))
            .with_context(|| format!("item {id} is not in the readable part of the archive")),
        None => bail!("item {id} is not in the archive {}", hub.dir.display()),
    }
}

/// The checks of one archived item.
struct Checked {
    signed: SignedReport,
    report: Report,
    /// The signature, in English words: valid (and by whom), or why not.
    signature: String,
    /// The same as data, for words in the reader's language.
    signature_verdict: Verdict,
    decisions: Vec<DispositionView>,
    /// Each attachment: whether its bytes are those the origin signed.
    attachments: Vec<bool>,
}

impl Checked {
    /// Whether the origin's signature checked.
    fn signature_ok(&self) -> bool {
        self.signature_verdict.outcome != VerdictOutcome::Invalid as i32
    }
}

fn check(trust: &Trust, item: &ArchivedItem) -> anyhow::Result<Checked> {
    let signed = SignedReport::decode(item.signed_report.as_slice())
        .with_context(|| format!("item {}: the archived report does not decode", item.id))?;
    let report = Report::decode(signed.report.as_slice())
        .with_context(|| format!("item {}: the signed report does not decode", item.id))?;
    let stored = at(item.stored_unix_ms);
    let digest = sha256(&signed.report);
    let (signature, signature_verdict) = match trust.verify_signed(
        &signed.signer_cert,
        &signed.report,
        &signed.signature,
        stored,
    ) {
        Ok(signer) if signer == report.origin => (
            format!("valid: signed by {signer}, as of when stored"),
            found(VerdictOutcome::ValidWhenStored, &signer, false),
        ),
        Ok(signer) => (
            format!(
                "INVALID: signed by {signer}, but the report names {} as its origin",
                report.origin
            ),
            invalid(&signer, "signer_mismatch"),
        ),
        Err(e) => (format!("INVALID: {e}"), invalid("", e.problem())),
    };
    let decisions = item
        .decisions
        .iter()
        .map(|bytes| decision(trust, &item.id, &digest, bytes))
        .collect();
    let attachments = report
        .attachments
        .iter()
        .enumerate()
        .map(|(i, a)| {
            item.attachments.get(i).is_some_and(|bytes| {
                bytes.len() as u64 == a.size && sha256(bytes).as_slice() == a.sha256.as_slice()
            })
        })
        .collect();
    Ok(Checked {
        signed,
        report,
        signature,
        signature_verdict,
        decisions,
        attachments,
    })
}

/// One decision, checked as of when it was made. At the final hub a
/// decision is its own office's, stored as it is made: its verdict says
/// "valid when stored".
fn decision(trust: &Trust, id: &str, digest: &[u8], bytes: &[u8]) -> DispositionView {
    let Ok(signed) = SignedDisposition::decode(bytes) else {
        return DispositionView {
            verification: "INVALID: does not decode".into(),
            verdict: Some(invalid("", "malformed")),
            ..Default::default()
        };
    };
    let body = zhibao::disposition::peek(&signed);
    let when = at(body.as_ref().map_or(0, |b| b.at_unix_ms));
    let (verification, verdict) =
        match zhibao::disposition::open_for(&signed, trust, when, id, digest) {
            Ok(opened) => (
                format!("valid: signed by {}, as of when made", opened.body.node),
                found(VerdictOutcome::ValidWhenStored, &opened.body.node, false),
            ),
            Err(e) => {
                let signer = body.as_ref().map_or("", |b| b.node.as_str());
                (format!("INVALID: {e}"), invalid(signer, e.problem()))
            }
        };
    DispositionView {
        signed: Some(signed),
        body,
        verification,
        verdict: Some(verdict),
    }
}

fn at(unix_ms: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(unix_ms).unwrap_or(0))
}

fn show(from: &ArchiveFrom, id: &str, out: &Output) -> anyhow::Result<()> {
    let hub = Hub::load(from)?;
    let v = hub.view(out)?;
    let trust = hub.trust()?;
    let (file, item) = find(&hub, id)?;
    let c = check(&trust, &item)?;
    if out.json {
        let attachments: Vec<Value> = c
            .report
            .attachments
            .iter()
            .zip(&c.attachments)
            .map(|(a, ok)| json!({"name": a.name, "size": a.size, "sha256": hex(&a.sha256), "matches": ok}))
            .collect();
        println!(
            "{}",
            json!({
                "id": item.id,
                "file": file,
                "stored_unix_ms": item.stored_unix_ms,
                "created_unix_ms": c.report.created_unix_ms,
                "origin": c.report.origin,
                "author": c.report.author,
                "class": class_key(c.report.priority),
                "title": c.report.title,
                "body": String::from_utf8_lossy(&c.report.body),
                "report_sha256": hex(&sha256(&c.signed.report)),
                "signature": c.signature,
                "signature_valid": c.signature_ok(),
                "attachments": attachments,
                "decisions": c.decisions.iter().map(decision_json).collect::<Vec<_>>(),
            })
        );
    } else {
        print!("{}", text(&item, &file, &c, v));
    }
    if !c.signature_ok() || c.attachments.iter().any(|ok| !ok) {
        bail!("item {id}: the archived report does not check (see above)");
    }
    Ok(())
}

/// `show` for people.
fn text(item: &ArchivedItem, file: &Path, c: &Checked, v: View) -> String {
    use std::fmt::Write as _;
    let r = &c.report;
    let mut out = String::new();
    let _ = writeln!(out, "【{}】{}", class_of(r.priority, v), r.title);
    let _ = writeln!(out, "{}", "═".repeat(60));
    let rows = [
        (v.t("id:", "编号："), item.id.clone()),
        (
            v.t("from:", "来自："),
            match (v.lang, r.author.is_empty()) {
                (_, true) => r.origin.clone(),
                (Lang::Zh, false) => format!("{}（{}）", r.origin, r.author),
                (Lang::En, false) => format!("{}, written by {}", r.origin, r.author),
            },
        ),
        (v.t("created:", "报送时间："), v.show(r.created_unix_ms)),
        (v.t("stored:", "入库时间："), v.show(item.stored_unix_ms)),
        (
            v.t("archived in:", "归档文件："),
            file.display().to_string(),
        ),
        (
            v.t("digest:", "摘要："),
            format!("sha256:{}", hex(&sha256(&c.signed.report))),
        ),
        (
            v.t("signature:", "签名："),
            zhibao::verdict::words(
                Some(&c.signature_verdict),
                &c.signature,
                false,
                v.lang == Lang::Zh,
            ),
        ),
    ];
    for (label, value) in rows {
        let _ = writeln!(out, "{label} {value}");
    }
    let _ = writeln!(out, "── {} {}", v.t("text", "正文"), "─".repeat(52));
    let _ = writeln!(out, "{}", String::from_utf8_lossy(&r.body).trim_end());
    if !r.attachments.is_empty() {
        let _ = writeln!(
            out,
            "── {} (zhibao store archive show {} --attachment N -o FILE)",
            v.t("attachments", "附件"),
            item.id
        );
        for (i, (a, ok)) in r.attachments.iter().zip(&c.attachments).enumerate() {
            let state = if *ok {
                v.t("matches what the origin signed", "与报送单位签名一致")
            } else {
                v.t(
                    "DOES NOT MATCH what the origin signed",
                    "与报送单位签名不一致",
                )
            };
            let _ = writeln!(
                out,
                "  {i}  {}  {}  sha256:{}  {state}",
                a.name,
                size(a.size),
                hex(&a.sha256)
            );
        }
    }
    decision_list(&mut out, &c.decisions, v.t("none", "无"), v);
    out
}

/// Attachment `index` of archived item `id`, checked against what the
/// origin signed, written to `output` (a temporary name, synced, then
/// renamed: a file under that name is always whole and checked).
fn save(from: &ArchiveFrom, id: &str, index: u32, output: &Path) -> anyhow::Result<()> {
    if output.exists() {
        bail!("{} exists; give another --output", output.display());
    }
    let hub = Hub::load(from)?;
    let trust = hub.trust()?;
    let (_, item) = find(&hub, id)?;
    let c = check(&trust, &item)?;
    if !c.signature_ok() {
        bail!("item {id}: {}; no attachment saved", c.signature);
    }
    let i = usize::try_from(index).unwrap_or(usize::MAX);
    let (Some(a), Some(bytes)) = (c.report.attachments.get(i), item.attachments.get(i)) else {
        bail!(
            "item {id} has {} attachment(s); there is no attachment {index}",
            c.report.attachments.len()
        );
    };
    if !c.attachments[i] {
        bail!(
            "attachment {index} ({}) of item {id} does not match what the origin signed \
             ({} bytes, sha256:{} in the archive; signed: {} bytes, sha256:{}); not saved",
            a.name,
            bytes.len(),
            hex(&sha256(bytes)),
            a.size,
            hex(&a.sha256)
        );
    }
    let partial = output.with_extension("zhibao-partial");
    let written = std::fs::write(&partial, bytes)
        .and_then(|()| std::fs::File::open(&partial)?.sync_all())
        .and_then(|()| std::fs::rename(&partial, output));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&partial);
        return Err(e).with_context(|| format!("writing {}", output.display()));
    }
    eprintln!(
        "{} ({}, sha256 checked) -> {}",
        a.name,
        size(a.size),
        output.display()
    );
    Ok(())
}
