//! `zhibao review`: the director's and deputy's side of review before
//! sending (把关) — what awaits them, approving and returning.

use zhibao::proto::{ItemStatus, ReviewAction, ReviewItem};

use super::args::ReviewCommand;
use super::fmt;
use super::when::{Lang, View};

/// Runs one `zhibao review` command.
pub(crate) async fn run(action: ReviewCommand) -> anyhow::Result<()> {
    match action {
        ReviewCommand::List { target, out } => {
            let mut op = target.connect().await?;
            let v = out.view(&op.node().await?)?;
            let items = op.review_list().await?;
            for item in &items {
                if out.json {
                    println!("{}", item_json(item));
                } else {
                    println!("{}", item_line(item, v));
                }
            }
            if items.is_empty() && !out.json {
                eprintln!("{}", v.t("nothing awaits review", "没有待审核的报告"));
            }
        }
        ReviewCommand::Approve {
            id,
            note,
            target,
            out,
        } => {
            decide(id, ReviewAction::Approve, note, target, out).await?;
        }
        ReviewCommand::Reject {
            id,
            note,
            target,
            out,
        } => {
            // An empty note goes to the node, which refuses it with its
            // own words (INVALID_ARGUMENT), as it would for any client.
            decide(id, ReviewAction::Reject, note, target, out).await?;
        }
    }
    Ok(())
}

async fn decide(
    id: String,
    action: ReviewAction,
    note: Option<String>,
    target: super::args::Target,
    out: super::args::Output,
) -> anyhow::Result<()> {
    let mut op = target.connect().await?;
    let v = out.view(&op.node().await?)?;
    let status = op
        .review(&id, action, note.as_deref().unwrap_or_default())
        .await?;
    if out.json {
        println!("{}", fmt::status_json(&status));
        return Ok(());
    }
    let said = match action {
        ReviewAction::Approve if status.id != id => format!(
            "{} {}",
            v.t(
                "signed off; sign-off report sent:",
                "已审核，审核报告已发出："
            ),
            status.id
        ),
        ReviewAction::Approve => format!("{} {id}", v.t("approved and sent:", "已审核并发出：")),
        _ => format!("{} {id}", v.t("returned to its author:", "已退回报送人：")),
    };
    println!("{said}");
    print!("{}", fmt::status(&status, v));
    Ok(())
}

/// What `submit` says of an item held for review.
pub(crate) fn awaiting(s: &ItemStatus, v: View) -> String {
    match v.lang {
        Lang::Zh => format!(
            "待审核（把关）：经主任（或副主任）审核后发出；最迟于 {} 未经审核发出",
            v.show(s.review_auto_send_unix_ms)
        ),
        Lang::En => format!(
            "awaiting review (把关) by the director: sent once approved, or unreviewed at {} at the latest",
            v.show(s.review_auto_send_unix_ms)
        ),
    }
}

fn who(item: &ReviewItem, v: View) -> &'static str {
    match item.offered_to.as_str() {
        "deputy" => v.t("director or deputy", "主任或副主任"),
        _ => v.t("director", "主任"),
    }
}

/// One line per item: id, class, author, who may act, when it goes, title.
fn item_line(item: &ReviewItem, v: View) -> String {
    let class = zhibao::class::Class::from_proto(item.priority).map_or("?", |c| match v.lang {
        Lang::Zh => c.name_zh(),
        Lang::En => c.name(),
    });
    let kind = if item.sign_off {
        v.t("sign-off (sent already)", "补审（已发出）")
    } else {
        v.t("before sending", "发前审核")
    };
    format!(
        "{}\t{class}\t{kind}\t{} {}\t{} {}\t{} {}\t{}",
        item.id,
        v.t("by", "报送人"),
        item.author,
        v.t("for", "审核人"),
        who(item, v),
        v.t("goes at", "自动发出"),
        v.short(item.auto_send_unix_ms),
        item.title
    )
}

fn item_json(item: &ReviewItem) -> serde_json::Value {
    serde_json::json!({
        "id": item.id,
        "class": zhibao::class::Class::from_proto(item.priority).map(zhibao::class::Class::name),
        "title": item.title,
        "author": item.author,
        "created_unix_ms": item.created_unix_ms,
        "deadline_unix_ms": item.deadline_unix_ms,
        "offered_to": item.offered_to,
        "deputy_from_unix_ms": item.deputy_from_unix_ms,
        "auto_send_unix_ms": item.auto_send_unix_ms,
        "sign_off": item.sign_off,
        "preview": item.preview,
    })
}
