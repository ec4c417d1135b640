//! The desk's pages and actions, each a thin view of the operator API:
//! the inbox by class (emergencies first, overdue marked, paged), one
//! report with its attachments and decisions and the forms to decide,
//! the overdue and held view, solicitations with each county's answer,
//! the figures and the monthly bulletin.

use std::fmt::Write;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, Form, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use prost::Message;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tonic::Request;
use tracing::{info, warn};

use super::auth::{self, Ctx, Session, Sessions};
use super::html::{self, Frame, Lang, esc, url, when};
use crate::class::Class;
use crate::config::StaffRole;
use crate::node::{Actor, OperatorService};
use crate::proto::operator_server::Operator;
use crate::proto::{
    AttachmentRequest, DisposeRequest, DispositionKind, ItemStatus, ListRequest, NoticesRequest,
    Report, SolicitationStatusRequest, StatsRequest, StatusRequest, notice,
};

/// Items per page of a class's list.
pub(super) const PAGE: usize = 50;
/// Pages one can go to (deeper is for `zhibao list`).
const MAX_PAGE: usize = 200;

/// The desk's state: the node's operator API and the sessions.
#[derive(Debug)]
pub(super) struct Web {
    pub(super) op: Arc<OperatorService>,
    pub(super) token: String,
    pub(super) sessions: Sessions,
    pub(super) shutdown: CancellationToken,
    pub(super) live: Arc<tokio::sync::Semaphore>,
    node: String,
    offset_ms: i64,
}

impl Web {
    pub(super) fn new(
        op: Arc<OperatorService>,
        token: String,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            node: op.keys.current().node_id().to_string(),
            offset_ms: op.deadlines.get().offset_ms().unwrap_or(0),
            op,
            token,
            sessions: Sessions::default(),
            shutdown,
            live: Arc::new(tokio::sync::Semaphore::new(super::live::MAX_STREAMS)),
        }
    }

    fn frame<'a>(&'a self, ctx: &'a Ctx, title: &'a str, here: &'a str) -> Frame<'a> {
        Frame {
            title,
            here,
            node: &self.node,
            who: ctx
                .session
                .as_ref()
                .map(|s| (s.name.as_str(), s.csrf.as_str())),
            lang: ctx.lang,
        }
    }

    fn when(&self, ms: i64) -> String {
        when(ms, self.offset_ms)
    }
}

/// Every route; anything else is 404.
pub(super) fn router(web: Arc<Web>) -> Router {
    Router::new()
        .route("/", get(desk))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/item/{id}", get(item))
        .route("/item/{id}/dispose", post(dispose))
        .route("/item/{id}/attachment/{n}", get(attachment))
        .route("/overdue", get(overdue))
        .route("/solicitations", get(solicitations))
        .route("/solicitation/{id}", get(solicitation))
        .route("/stats", get(stats))
        .route("/bulletin.html", get(bulletin))
        .route("/events", get(super::live::events))
        .route("/static/desk.js", get(script))
        .route("/static/desk.css", get(style))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            web.clone(),
            auth::gate,
        ))
        .with_state(web)
}

/// An error from the operator API as a page.
fn failed(web: &Web, ctx: &Ctx, status: &tonic::Status) -> Response {
    failed_at(web, ctx, status, None)
}

/// An error as a page, with a link back to `back` (else the inbox).
fn failed_at(web: &Web, ctx: &Ctx, status: &tonic::Status, back: Option<&str>) -> Response {
    let code = match status.code() {
        tonic::Code::NotFound => StatusCode::NOT_FOUND,
        tonic::Code::InvalidArgument | tonic::Code::OutOfRange => StatusCode::BAD_REQUEST,
        tonic::Code::FailedPrecondition | tonic::Code::AlreadyExists | tonic::Code::Aborted => {
            StatusCode::CONFLICT
        }
        tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
        tonic::Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        tonic::Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let l = ctx.lang;
    let title = l.t("Not done", "未能完成");
    // In Chinese, the node's reason in its Chinese words; a refusal
    // without them (a node that sends none) keeps its English, after a
    // line saying what kind of refusal it is.
    let chinese = match l {
        Lang::En => None,
        Lang::Zh => crate::client::refusal_in_chinese(status),
    };
    let kind = match (l, &chinese) {
        (Lang::Zh, None) => format!(
            "<p class=\"why\">{}</p>",
            crate::client::refusal_zh(status.code())
        ),
        _ => String::new(),
    };
    let body = format!(
        "<section class=\"error\"><h1>{}</h1>{kind}<p id=\"error\">{}</p><p><a href=\"{}\">{}</a></p></section>",
        title,
        esc(chinese.as_deref().unwrap_or(status.message())),
        esc(back.unwrap_or("/")),
        if back.is_some() {
            l.t("Back to the report", "返回报告")
        } else {
            l.t("Back to the inbox", "返回收件")
        }
    );
    html::respond(code, html::page(&web.frame(ctx, title, ""), &body))
}

async fn not_found(State(web): State<Arc<Web>>, Extension(ctx): Extension<Ctx>) -> Response {
    let l = ctx.lang;
    let title = l.t("Not found", "未找到");
    html::respond(
        StatusCode::NOT_FOUND,
        html::page(
            &web.frame(&ctx, title, ""),
            &format!("<section class=\"error\"><h1>{title}</h1></section>"),
        ),
    )
}

fn session(ctx: &Ctx) -> Option<&Session> {
    ctx.session.as_ref()
}

// ---------------------------------------------------------------- login

#[derive(Debug, Deserialize)]
struct LoginQuery {
    #[serde(default)]
    token: String,
}

async fn login_form(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<LoginQuery>,
) -> Response {
    let l = ctx.lang;
    let title = l.t("Log in", "登录");
    let body = format!(
        "<section class=\"login\"><h1>{}</h1><p>{}</p>\
         <form method=\"post\" action=\"/login\">\
         <label>{}<input type=\"password\" name=\"token\" id=\"token\" value=\"{}\" autocomplete=\"off\" required></label>\
         <label>{}<input name=\"name\" id=\"name\" maxlength=\"120\" placeholder=\"{}\"></label>\
         <button id=\"login\">{}</button></form></section>",
        title,
        l.t(
            "The login token is in the node's web.token file (readable by the node's user only).",
            "登录口令在节点的 web.token 文件中（仅节点用户可读）。"
        ),
        l.t("Login token", "登录口令"),
        esc(q.token.trim()),
        l.t(
            "Your name (recorded in decisions)",
            "您的姓名（记入处理意见）"
        ),
        l.t("e.g. Wang Fang", "例如：王芳"),
        title
    );
    let frame = Frame {
        title,
        here: "",
        node: &web.node,
        who: None,
        lang: l,
    };
    html::respond(StatusCode::OK, html::page(&frame, &body))
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    name: String,
}

async fn login(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Form(form): Form<LoginForm>,
) -> Response {
    if !crate::secret::same_secret(form.token.trim(), &web.token) {
        warn!(peer = %ctx.peer, "web desk: refused a login with a wrong token");
        return html::refusal(
            StatusCode::UNAUTHORIZED,
            "Wrong login token: take it from the node's web.token file.",
            "登录口令不对：请使用节点 web.token 文件中的口令。",
        );
    }
    let mut name: String = form.name.trim().chars().take(120).collect();
    if name.is_empty() {
        name = "信息科".into();
    }
    info!(peer = %ctx.peer, staff = %name, "web desk: logged in");
    let id = web.sessions.open(name);
    (
        [(header::SET_COOKIE, auth::session_cookie(&id))],
        Redirect::to("/"),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(r) = refuse_csrf(&ctx, &form.csrf) {
        return r;
    }
    if let Some(id) = &ctx.session_id {
        web.sessions.close(id);
    }
    (
        [(header::SET_COOKIE, auth::clear_cookie())],
        Redirect::to("/login"),
    )
        .into_response()
}

/// A form without this session's CSRF token: 403, logged.
fn refuse_csrf(ctx: &Ctx, given: &str) -> Option<Response> {
    if session(ctx).is_some_and(|s| s.check_csrf(given)) {
        return None;
    }
    warn!(peer = %ctx.peer, "web desk: refused a form without this session's CSRF token");
    Some(html::refusal(
        StatusCode::FORBIDDEN,
        "Refused: the form did not carry this session's token; reload the page and try again.",
        "拒绝：表单未携带本次会话的令牌；请刷新页面后重试。",
    ))
}

// ---------------------------------------------------------------- inbox

#[derive(Debug, Default, Deserialize)]
struct DeskQuery {
    /// Page of each class: emergency, bad news, routine.
    #[serde(default)]
    e: usize,
    #[serde(default)]
    b: usize,
    #[serde(default)]
    r: usize,
    /// Open items only.
    #[serde(default)]
    open: Option<String>,
    /// Only the live part, for the script.
    #[serde(default)]
    fragment: Option<String>,
}

/// One page of a class's items, newest first; and whether there are more.
async fn class_page(
    web: &Web,
    class: Class,
    page: usize,
    open_only: bool,
) -> Result<(Vec<ItemStatus>, bool), tonic::Status> {
    let page = page.min(MAX_PAGE);
    let want = (page + 1) * PAGE + 1;
    let req = ListRequest {
        priority: class.to_proto() as i32,
        limit: u32::try_from(want).unwrap_or(u32::MAX),
        open_only,
        ..Default::default()
    };
    let mut items = Operator::list(web.op.clone(), Request::new(req))
        .await?
        .into_inner()
        .items;
    let more = items.len() >= want;
    let items: Vec<ItemStatus> = items.drain(..).skip(page * PAGE).take(PAGE).collect();
    Ok((items, more))
}

async fn desk(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<DeskQuery>,
) -> Response {
    let l = ctx.lang;
    let open_only = q.open.as_deref() == Some("1");
    let mut live = String::new();
    for (class, page, key) in [
        (Class::Emergency, q.e, "e"),
        (Class::BadNews, q.b, "b"),
        (Class::Routine, q.r, "r"),
    ] {
        let (items, more) = match class_page(&web, class, page, open_only).await {
            Ok(x) => x,
            Err(e) => return failed(&web, &ctx, &e),
        };
        let (css, name) = html::class_label(class.to_proto() as i32, l);
        let _ = write!(
            live,
            "<section class=\"class {css}\" id=\"class-{css}\"><h2>{name}<span class=\"count\">{}</span></h2>",
            if page > 0 {
                format!(" · {} {}", l.t("page", "第"), page + 1)
            } else {
                String::new()
            }
        );
        if items.is_empty() {
            let _ = write!(live, "<p class=\"empty\">{}</p>", l.t("Nothing.", "暂无。"));
        } else {
            item_table(&web, l, &items, &mut live);
        }
        if page > 0 || more {
            let link = |p: usize| {
                let mut pages = [("e", q.e), ("b", q.b), ("r", q.r)];
                for x in &mut pages {
                    if x.0 == key {
                        x.1 = p;
                    }
                }
                let mut href = pages
                    .iter()
                    .filter(|(_, n)| *n > 0)
                    .map(|(k, n)| format!("{k}={n}"))
                    .collect::<Vec<_>>()
                    .join("&");
                if open_only {
                    href.push_str("&open=1");
                }
                format!("/?{href}")
            };
            live.push_str("<nav class=\"pager\">");
            if page > 0 {
                let _ = write!(
                    live,
                    "<a href=\"{}\">← {}</a>",
                    esc(&link(page - 1)),
                    l.t("newer", "较新")
                );
            }
            if more && page < MAX_PAGE {
                let _ = write!(
                    live,
                    "<a href=\"{}\" class=\"next\">{} →</a>",
                    esc(&link(page + 1)),
                    l.t("older", "更早")
                );
            }
            live.push_str("</nav>");
        }
        live.push_str("</section>");
    }
    if q.fragment.is_some() {
        return html::respond(StatusCode::OK, live);
    }
    let title = l.t("Inbox", "收件");
    let mut src = format!(
        "/?fragment=1&e={}&b={}&r={}{}",
        q.e,
        q.b,
        q.r,
        if open_only { "&open=1" } else { "" }
    );
    src = esc(&src);
    let body = format!(
        "<h1>{title}</h1><p class=\"filters\"><a href=\"/\"{}>{}</a> · <a href=\"/?open=1\"{}>{}</a></p>\
         <div id=\"live\" data-src=\"{src}\">{live}</div>",
        if open_only { "" } else { " class=\"here\"" },
        l.t("All", "全部"),
        if open_only { " class=\"here\"" } else { "" },
        l.t("Not closed", "未办结"),
    );
    html::respond(
        StatusCode::OK,
        html::page(&web.frame(&ctx, title, "desk"), &body),
    )
}

/// Items as a table: time, county, title, state, decision, deadline.
fn item_table(web: &Web, l: Lang, items: &[ItemStatus], out: &mut String) {
    let _ = write!(
        out,
        "<div class=\"scroll\"><table class=\"items\"><thead><tr><th>{}</th><th>{}</th><th>{}</th>\
         <th class=\"wide\">{}</th><th>{}</th><th class=\"wide\">{}</th></tr></thead><tbody>",
        l.t("Written", "报送时间"),
        l.t("County", "县区"),
        l.t("Title", "标题"),
        l.t("State", "状态"),
        l.t("Decision", "处理"),
        l.t("Deadline", "时限"),
    );
    for s in items {
        let overdue = s.overdue_unix_ms != 0 || s.answer_overdue_unix_ms != 0;
        let decided = if s.closed_unix_ms != 0 {
            l.t("closed", "已办结").to_string()
        } else if s.decided != 0 {
            html::kind_label(s.decided, l).to_string()
        } else {
            l.t("to decide", "待处理").to_string()
        };
        let title = if s.title.is_empty() {
            s.preview.as_str()
        } else {
            s.title.as_str()
        };
        let _ = write!(
            out,
            "<tr data-id=\"{id}\"{cls}><td>{}</td><td>{}</td><td><a href=\"/item/{uid}\">{}</a>{}</td>\
             <td class=\"wide\">{}</td><td>{}</td><td class=\"wide\">{}</td></tr>",
            web.when(s.created_unix_ms),
            esc(&s.origin),
            esc(title),
            if overdue {
                format!(" <span class=\"late\">{}</span>", l.t("overdue", "超时"))
            } else {
                String::new()
            },
            html::state_label(s.state, l),
            esc(&decided),
            web.when(s.deadline_unix_ms),
            id = esc(&s.id),
            uid = url(&s.id),
            cls = if overdue { " class=\"overdue\"" } else { "" },
        );
    }
    out.push_str("</tbody></table></div>");
}

// ---------------------------------------------------------------- one report

#[derive(Debug, Default, Deserialize)]
struct ItemQuery {
    #[serde(default)]
    fragment: Option<String>,
}

async fn item(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    Query(q): Query<ItemQuery>,
) -> Response {
    let l = ctx.lang;
    let req = StatusRequest {
        id: id.clone(),
        full: true,
    };
    let s = match Operator::status(web.op.clone(), Request::new(req)).await {
        Ok(s) => s.into_inner(),
        Err(e) => return failed(&web, &ctx, &e),
    };
    let report = s
        .report
        .as_ref()
        .and_then(|r| Report::decode(r.report.as_slice()).ok())
        .unwrap_or_default();
    let live = item_live(&web, l, &s);
    if q.fragment.is_some() {
        return html::respond(StatusCode::OK, live);
    }
    let (css, class) = html::class_label(s.priority, l);
    let text = if s.report_damaged.is_empty() {
        esc(&String::from_utf8_lossy(&report.body))
    } else {
        format!(
            "<span class=\"late\">{}</span> {}",
            l.t("damaged", "已损坏"),
            esc(&format!(
                "{} ({})",
                l.t(
                    "The report kept on this node's disk cannot be read back whole; it is not sent on.",
                    "本节点磁盘上保存的正文无法完整读出，不会发送或转交。"
                ),
                s.report_damaged
            ))
        )
    };
    let mut body = format!(
        "<p><a href=\"/\">← {}</a></p><article class=\"report {css}\"><h1 id=\"title\"><span class=\"tag {css}\">{class}</span> {}</h1>\
         <dl class=\"facts\"><dt>{}</dt><dd>{}</dd><dt>{}</dt><dd>{}</dd><dt>{}</dt><dd>{}</dd><dt>{}</dt><dd>{}</dd><dt>{}</dt><dd><code>{}</code></dd></dl>\
         <pre class=\"body\" id=\"body\">{}</pre>",
        l.t("Inbox", "收件"),
        esc(&s.title),
        l.t("County", "县区"),
        esc(&s.origin),
        l.t("Written by", "撰稿人"),
        esc(if report.author.is_empty() {
            "-"
        } else {
            &report.author
        }),
        l.t("Written", "报送时间"),
        web.when(s.created_unix_ms),
        l.t("Deadline", "时限"),
        web.when(s.deadline_unix_ms),
        l.t("Item", "编号"),
        esc(&s.id),
        text,
    );
    if !report.attachments.is_empty() {
        let _ = write!(
            body,
            "<h2>{}</h2><ul class=\"attachments\">",
            l.t("Attachments", "附件")
        );
        for (n, a) in report.attachments.iter().enumerate() {
            let _ = write!(
                body,
                "<li>{} <small>({} {}, SHA-256 {}…)</small> <a href=\"/item/{uid}/attachment/{n}\" target=\"_blank\" rel=\"noopener\">{}</a> · \
                 <a href=\"/item/{uid}/attachment/{n}?download=1\">{}</a></li>",
                esc(&a.name),
                a.size,
                l.t("bytes", "字节"),
                crate::digest::hex(a.sha256.get(..8).unwrap_or_default()),
                l.t("open", "打开"),
                l.t("download", "下载"),
                uid = url(&s.id),
            );
        }
        body.push_str("</ul>");
    }
    let hops = s.report.as_ref().map_or(&[][..], |r| r.hops.as_slice());
    if !hops.is_empty() {
        let _ = write!(
            body,
            "<h2>{}</h2><ol class=\"hops\">",
            l.t("Hops", "经手节点")
        );
        for h in hops {
            match crate::proto::HopStatement::decode(h.statement.as_slice()) {
                Ok(st) => {
                    let _ = write!(
                        body,
                        "<li>{}</li>",
                        match l {
                            Lang::Zh => format!(
                                "{} 于 {} 从 {} 接收",
                                esc(&st.relay),
                                web.when(st.stored_unix_ms),
                                esc(&st.received_from)
                            ),
                            Lang::En => format!(
                                "{} took it from {} at {}",
                                esc(&st.relay),
                                esc(&st.received_from),
                                web.when(st.stored_unix_ms)
                            ),
                        }
                    );
                }
                Err(_) => {
                    let _ = write!(body, "<li>{}</li>", l.t("does not decode", "无法解码"));
                }
            }
        }
        body.push_str("</ol>");
    }
    let _ = write!(
        body,
        "<div id=\"live\" data-src=\"/item/{uid}?fragment=1\" data-item=\"{id}\">{live}</div></article>",
        uid = url(&s.id),
        id = esc(&s.id)
    );
    // The desk's own rules, said before anyone fills in a form in vain.
    let not_decidable = if s.from.is_empty() || s.from == crate::store::FROM_OPERATOR {
        Some(l.t(
            "Written at this node: an office decides on reports from below.",
            "本节点撰写的报告：信息科只处理下级报送的报告。",
        ))
    } else if s.closed_unix_ms != 0 {
        Some(l.t(
            "Closed (办结): nothing more can be decided on it.",
            "已办结，不能再作处理。",
        ))
    } else {
        None
    };
    match (not_decidable, session(&ctx)) {
        (Some(why), _) => {
            let _ = write!(body, "<p class=\"note\" id=\"not-decidable\">{why}</p>");
        }
        (None, Some(session)) => decide_forms(&web, l, &s.id, session, &mut body),
        (None, None) => {}
    }
    html::respond(
        StatusCode::OK,
        html::page(&web.frame(&ctx, &s.title, "desk"), &body),
    )
}

/// The part of a report's page that changes: state, links, decisions.
fn item_live(web: &Web, l: Lang, s: &ItemStatus) -> String {
    let mut out = format!(
        "<dl class=\"facts\"><dt>{}</dt><dd id=\"state\">{}{}</dd><dt>{}</dt><dd>{}</dd>",
        l.t("State", "状态"),
        html::state_label(s.state, l),
        if s.overdue_unix_ms != 0 {
            format!(" <span class=\"late\">{}</span>", l.t("overdue", "超时"))
        } else {
            String::new()
        },
        l.t("Receipt", "回执"),
        esc(&if s.receipt_verification.is_empty() {
            "-".to_string()
        } else {
            html::verdict(s.receipt_verdict.as_ref(), &s.receipt_verification, true, l)
        }),
    );
    for (en, zh, v) in [
        ("Links to", "关联", &s.links_to),
        ("Corrected by", "已被更正", &s.corrected_by),
        ("Withdrawn by", "已被撤回", &s.withdrawn_by),
        ("Answers solicitation", "应约稿", &s.answers),
        ("Signed off by", "审核人", &s.reviewed_by),
    ] {
        if !v.is_empty() {
            let _ = write!(out, "<dt>{}</dt><dd>{}</dd>", l.t(en, zh), esc(v));
        }
    }
    if !s.supplements.is_empty() {
        let _ = write!(out, "<dt>{}</dt><dd>", l.t("Supplements", "补充报告"));
        for x in &s.supplements {
            let _ = write!(out, "<a href=\"/item/{}\">{}</a> ", url(x), esc(x));
        }
        out.push_str("</dd>");
    }
    if s.answer_by_unix_ms != 0 {
        let _ = write!(
            out,
            "<dt>{}</dt><dd>{}{}</dd>",
            l.t("Answer due", "补报时限"),
            web.when(s.answer_by_unix_ms),
            if s.answer_overdue_unix_ms != 0 {
                format!(" <span class=\"late\">{}</span>", l.t("overdue", "超时"))
            } else {
                String::new()
            }
        );
    }
    out.push_str("</dl>");
    let _ = write!(out, "<h2>{}</h2>", l.t("Decisions", "处理意见"));
    if s.dispositions.is_empty() {
        let _ = write!(
            out,
            "<p class=\"empty\" id=\"no-decisions\">{}</p>",
            l.t("None yet.", "尚无。")
        );
    } else {
        out.push_str("<ol class=\"decisions\" id=\"decisions\">");
        for d in &s.dispositions {
            let b = d.body.clone().unwrap_or_default();
            let _ = write!(
                out,
                "<li class=\"kind-{}\"><b>{}</b> {} · {} · {}{}<br><small>{}</small></li>",
                crate::disposition::kind_name(b.kind),
                html::kind_label(b.kind, l),
                esc(&b.node),
                esc(&b.staff),
                web.when(b.at_unix_ms),
                if b.text.is_empty() {
                    String::new()
                } else {
                    format!(": <span class=\"text\">{}</span>", esc(&b.text))
                },
                esc(&html::verdict(
                    d.verdict.as_ref(),
                    &d.verification,
                    false,
                    l
                )),
            );
        }
        out.push_str("</ol>");
    }
    out
}

/// The six decisions as forms.
fn decide_forms(web: &Web, l: Lang, id: &str, session: &Session, out: &mut String) {
    let action = format!("/item/{}/dispose", url(id));
    let csrf = esc(&session.csrf);
    let rules = web.op.desk.rules.get();
    let outlets = &rules.outlets;
    let _ = write!(
        out,
        "<section class=\"decide\"><h2>{}</h2><p class=\"note\">{}</p>",
        l.t("Decide", "处理"),
        l.t(
            "Signed with this node's key in your name and sent down to the county.",
            "以本节点密钥签名、记您的姓名，并下发至报送县区。"
        )
    );
    if !outlets.is_empty() {
        out.push_str("<datalist id=\"outlets\">");
        for o in outlets {
            let _ = write!(
                out,
                "<option value=\"{}\">{}</option>",
                esc(&o.key),
                esc(match l {
                    Lang::Zh => &o.zh,
                    Lang::En => &o.en,
                })
            );
        }
        out.push_str("</datalist>");
    }
    // (kind, button, the text field's placeholder, whether it is required)
    let forms = [
        (
            "adopted",
            l.t("Adopt", "采用"),
            l.t("outlet, e.g. daily: No. 12", "刊物，如 《情况专报》第12期"),
            true,
        ),
        (
            "not_adopted",
            l.t("Not adopt", "不采用"),
            l.t("reason", "理由"),
            true,
        ),
        (
            "returned",
            l.t("Return for more", "退回补充"),
            l.t("question", "需补充的问题"),
            true,
        ),
        (
            "forwarded",
            l.t("Forward up", "上报"),
            l.t("note (optional)", "说明（可选）"),
            false,
        ),
        (
            "instruction",
            l.t("Instruction", "批示"),
            l.t("the leader's instruction", "领导批示内容"),
            true,
        ),
        (
            "closed",
            l.t("Close", "办结"),
            l.t("note (optional)", "说明（可选）"),
            false,
        ),
    ];
    for (kind, button, placeholder, required) in forms {
        let required = if required { " required" } else { "" };
        let extra = match kind {
            "adopted" => " id=\"outlet\" list=\"outlets\"".to_string(),
            _ => String::new(),
        };
        let due = if kind == "returned" {
            format!(
                "<input type=\"datetime-local\" name=\"by\" required title=\"{}\">",
                l.t("answer due (local time)", "补报时限（本地时间）")
            )
        } else {
            String::new()
        };
        let _ = write!(
            out,
            "<form method=\"post\" action=\"{action}\" class=\"decision\" id=\"form-{kind}\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"kind\" value=\"{kind}\">\
             <input name=\"text\"{extra}{required} placeholder=\"{placeholder}\">{due}<button id=\"do-{kind}\">{button}</button></form>"
        );
    }
    out.push_str("</section>");
}

#[derive(Debug, Deserialize)]
struct DisposeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    by: String,
}

async fn dispose(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    Form(form): Form<DisposeForm>,
) -> Response {
    if let Some(r) = refuse_csrf(&ctx, &form.csrf) {
        return r;
    }
    let l = ctx.lang;
    let back = format!("/item/{}", url(&id));
    let bad = |en: &str, zh: &str| {
        failed_at(
            &web,
            &ctx,
            &tonic::Status::invalid_argument(l.t(en, zh)),
            Some(&back),
        )
    };
    let kind = match form.kind.as_str() {
        "adopted" => DispositionKind::Adopted,
        "not_adopted" => DispositionKind::NotAdopted,
        "returned" => DispositionKind::Returned,
        "forwarded" => DispositionKind::Forwarded,
        "instruction" => DispositionKind::Instruction,
        "closed" => DispositionKind::Closed,
        _ => return bad("Unknown kind of decision.", "未知的处理类型。"),
    };
    let answer_by = if kind == DispositionKind::Returned {
        match local_time(&form.by, web.offset_ms) {
            Some(ms) => ms,
            None => {
                return bad(
                    "Give the answer's deadline as a date and time.",
                    "请填写补报时限（日期和时间）。",
                );
            }
        }
    } else {
        0
    };
    let name = session(&ctx).map_or_else(String::new, |s| s.name.clone());
    let mut req = Request::new(DisposeRequest {
        item_id: id.clone(),
        kind: kind as i32,
        text: form.text,
        answer_by_unix_ms: answer_by,
        staff: String::new(),
    });
    req.extensions_mut().insert(Actor {
        name: format!("{name} (web desk)"),
        role: StaffRole::Staff,
    });
    match Operator::dispose(web.op.clone(), req).await {
        Ok(_) => Redirect::to(&back).into_response(),
        Err(e) => failed_at(&web, &ctx, &e, Some(&back)),
    }
}

/// `2026-12-01T12:00` (a browser's `datetime-local`) in the node's zone, as Unix ms.
fn local_time(text: &str, offset_ms: i64) -> Option<i64> {
    let text = text.trim();
    let (date, clock) = text.split_once('T')?;
    let mut d = date.splitn(3, '-').map(str::parse::<i32>);
    let (year, month, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    // Seconds, if the browser sends them, are dropped.
    let mut c = clock.splitn(3, ':').map(str::parse::<u8>);
    let (hour, minute) = (c.next()?.ok()?, c.next()?.ok()?);
    let month = time::Month::try_from(u8::try_from(month).ok()?).ok()?;
    let date = time::Date::from_calendar_date(year, month, u8::try_from(day).ok()?).ok()?;
    let t = time::PrimitiveDateTime::new(date, time::Time::from_hms(hour, minute, 0).ok()?);
    let offset = time::UtcOffset::from_whole_seconds(i32::try_from(offset_ms / 1000).ok()?).ok()?;
    t.assume_offset(offset).unix_timestamp().checked_mul(1000)
}

#[derive(Debug, Default, Deserialize)]
struct AttachmentQuery {
    #[serde(default)]
    download: Option<String>,
}

/// One attachment of one item, by number: open (a few safe types) or
/// download. Nothing but the item's own stored chunks is ever read.
async fn attachment(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Path((id, n)): Path<(String, u32)>,
    Query(q): Query<AttachmentQuery>,
) -> Response {
    let req = StatusRequest {
        id: id.clone(),
        full: true,
    };
    let s = match Operator::status(web.op.clone(), Request::new(req)).await {
        Ok(s) => s.into_inner(),
        Err(e) => return failed(&web, &ctx, &e),
    };
    let Some(a) = s
        .report
        .as_ref()
        .and_then(|r| Report::decode(r.report.as_slice()).ok())
        .and_then(|r| r.attachments.get(n as usize).cloned())
    else {
        return failed(
            &web,
            &ctx,
            &tonic::Status::not_found(format!("item {id} has no attachment {n}")),
        );
    };
    let req = AttachmentRequest {
        item_id: id,
        attachment: n,
    };
    let chunks = match Operator::attachment(web.op.clone(), Request::new(req)).await {
        Ok(s) => s.into_inner(),
        Err(e) => return failed(&web, &ctx, &e),
    };
    let stream = chunks.map(|c| c.map(|c| axum::body::Bytes::from(c.data)));
    let lower = a.name.to_lowercase();
    let inline_type = [
        (".pdf", "application/pdf"),
        (".png", "image/png"),
        (".jpg", "image/jpeg"),
        (".jpeg", "image/jpeg"),
        (".gif", "image/gif"),
        (".txt", "text/plain; charset=utf-8"),
    ]
    .iter()
    .find(|(ext, _)| lower.ends_with(ext))
    .map(|(_, t)| *t);
    let (disposition, content_type) = match (q.download.is_some(), inline_type) {
        (false, Some(t)) => ("inline", t),
        _ => ("attachment", "application/octet-stream"),
    };
    // An ASCII fallback name and the UTF-8 one (RFC 6266).
    let ascii: String = a
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let header_value = format!(
        "{disposition}; filename=\"{ascii}\"; filename*=UTF-8''{}",
        url(&a.name)
    );
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, a.size)
        .header(header::CONTENT_DISPOSITION, header_value)
        // An attachment opened here runs nothing of ours, whatever it
        // holds (a PDF needs the browser's viewer, which a sandbox stops).
        .header(
            header::CONTENT_SECURITY_POLICY,
            if content_type == "application/pdf" {
                "default-src 'none'; object-src 'self'; img-src 'self'"
            } else {
                "sandbox; default-src 'none'; img-src 'self'; style-src 'unsafe-inline'"
            },
        )
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

// ---------------------------------------------------------------- overdue

async fn overdue(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<ItemQuery>,
) -> Response {
    let l = ctx.lang;
    let req = ListRequest {
        overdue_only: true,
        limit: 500,
        ..Default::default()
    };
    let list = match Operator::list(web.op.clone(), Request::new(req)).await {
        Ok(r) => r.into_inner(),
        Err(e) => return failed(&web, &ctx, &e),
    };
    let title = l.t("Overdue and held", "超时与压存");
    let mut body = format!(
        "<p>{} {}</p>",
        l.t(
            "Items that ever missed their deadline here:",
            "在本节点超时的累计条数："
        ),
        list.overdue_total
    );
    if list.items.is_empty() {
        let _ = write!(body, "<p class=\"empty\">{}</p>", l.t("Nothing.", "暂无。"));
    } else {
        let _ = write!(
            body,
            "<div class=\"scroll\"><table class=\"items\"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th class=\"wide\">{}</th></tr></thead><tbody>",
            l.t("Class", "类别"),
            l.t("County", "县区"),
            l.t("Item", "报告"),
            l.t("Deadline", "时限"),
            l.t("Where", "所在"),
            l.t("Why", "原因"),
        );
        for s in &list.items {
            let (css, class) = html::class_label(s.priority, l);
            let title = if s.title.is_empty() { &s.id } else { &s.title };
            let place = if s.held_at.is_empty() {
                html::state_label(s.state, l).to_string()
            } else {
                format!(
                    "{} {} {}",
                    esc(&s.held_at),
                    l.t("since", "自"),
                    web.when(s.held_since_unix_ms)
                )
            };
            let _ = write!(
                body,
                "<tr class=\"overdue\" data-id=\"{}\"><td><span class=\"tag {css}\">{class}</span></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"wide\">{}</td></tr>",
                esc(&s.id),
                esc(&s.origin),
                if s.state == crate::proto::ItemState::HeldBelow as i32 {
                    esc(title)
                } else {
                    format!("<a href=\"/item/{}\">{}</a>", url(&s.id), esc(title))
                },
                web.when(s.deadline_unix_ms),
                place,
                esc(&s.held_why),
            );
        }
        body.push_str("</tbody></table></div>");
    }
    if q.fragment.is_some() {
        return html::respond(StatusCode::OK, body);
    }
    let body =
        format!("<h1>{title}</h1><div id=\"live\" data-src=\"/overdue?fragment=1\">{body}</div>");
    html::respond(
        StatusCode::OK,
        html::page(&web.frame(&ctx, title, "overdue"), &body),
    )
}

// ---------------------------------------------------------------- solicitations

async fn solicitations(State(web): State<Arc<Web>>, Extension(ctx): Extension<Ctx>) -> Response {
    let l = ctx.lang;
    let req = NoticesRequest {
        all: true,
        solicitations_only: true,
        ..Default::default()
    };
    let notices = match Operator::notices(web.op.clone(), Request::new(req)).await {
        Ok(r) => r.into_inner().notices,
        Err(e) => return failed(&web, &ctx, &e),
    };
    let title = l.t("Solicitations", "约稿");
    let mut body = format!("<h1>{title}</h1>");
    if notices.is_empty() {
        let _ = write!(
            body,
            "<p class=\"empty\">{}</p>",
            l.t(
                "None. Publish one with `zhibao solicitation publish`.",
                "暂无。发布约稿：zhibao solicitation publish。"
            )
        );
    } else {
        let _ = write!(
            body,
            "<div class=\"scroll\"><table class=\"items\"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
            l.t("Topic", "主题"),
            l.t("Due", "截止"),
            l.t("Asked", "约稿对象"),
            l.t("Answered by", "已答复"),
        );
        for n in &notices {
            let Some(b) = &n.body else { continue };
            let Some(notice::Body::Solicitation(s)) = &b.body else {
                continue;
            };
            let _ = write!(
                body,
                "<tr{}><td><a href=\"/solicitation/{}\">{}</a>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                if s.withdrawn {
                    " class=\"withdrawn\""
                } else {
                    ""
                },
                url(&b.id),
                esc(&s.topic),
                if s.withdrawn {
                    format!(" <small>({})</small>", l.t("withdrawn", "已撤销"))
                } else {
                    String::new()
                },
                web.when(s.deadline_unix_ms),
                if s.counties.is_empty() {
                    l.t("every county", "所有县区").to_string()
                } else {
                    esc(&s.counties.join(", "))
                },
                esc(&n.answered_by.join(", ")),
            );
        }
        body.push_str("</tbody></table></div>");
    }
    html::respond(
        StatusCode::OK,
        html::page(&web.frame(&ctx, title, "solicitations"), &body),
    )
}

async fn solicitation(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> Response {
    let l = ctx.lang;
    let req = SolicitationStatusRequest { id };
    let st = match Operator::solicitation_status(web.op.clone(), Request::new(req)).await {
        Ok(r) => r.into_inner(),
        Err(e) => return failed(&web, &ctx, &e),
    };
    let s = st
        .solicitation
        .as_ref()
        .and_then(|n| n.body.as_ref())
        .and_then(|b| match &b.body {
            Some(notice::Body::Solicitation(s)) => Some(s.clone()),
            _ => None,
        })
        .unwrap_or_default();
    let title = l.t("Solicitation", "约稿");
    let mut body = format!(
        "<p><a href=\"/solicitations\">← {}</a></p><h1>{}</h1><p>{} {}</p><pre class=\"body\">{}</pre>",
        l.t("Solicitations", "约稿"),
        esc(&s.topic),
        l.t("Due", "截止"),
        web.when(s.deadline_unix_ms),
        esc(&s.text)
    );
    let _ = write!(
        body,
        "<div class=\"scroll\"><table class=\"items\" id=\"counties\"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
        l.t("County", "县区"),
        l.t("Answer", "答复情况"),
        l.t("Arrived", "到达时间"),
        l.t("Reports", "报告"),
    );
    for c in &st.counties {
        let state = match c.state.as_str() {
            "on_time" | "on time" => l.t("on time", "按时"),
            "late" => l.t("late", "迟报"),
            "missing" | "not answered" => l.t("NOT ANSWERED", "未答复"),
            "open" => l.t("open", "未到期"),
            other => other,
        };
        let items: Vec<&String> = c.items.iter().chain(std::iter::once(&c.item_id)).collect();
        let mut links = String::new();
        for i in items.iter().filter(|i| !i.is_empty()) {
            if !links.contains(i.as_str()) {
                let _ = write!(links, "<a href=\"/item/{}\">{}</a> ", url(i), esc(i));
            }
        }
        let _ = write!(
            body,
            "<tr class=\"answer-{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&c.state.replace(' ', "_")),
            esc(&c.county),
            esc(state),
            web.when(c.arrived_unix_ms),
            links
        );
    }
    body.push_str("</tbody></table></div>");
    html::respond(
        StatusCode::OK,
        html::page(&web.frame(&ctx, title, "solicitations"), &body),
    )
}

// ---------------------------------------------------------------- figures

#[derive(Debug, Default, Deserialize)]
struct PeriodQuery {
    #[serde(default)]
    period: String,
}

/// The period asked for, or this month in the node's zone.
fn period_or_now(web: &Web, asked: &str) -> String {
    let asked = asked.trim();
    if !asked.is_empty() {
        return asked.chars().take(16).collect();
    }
    let now = web.when(web.op.clock.now_ms());
    now.get(..7).unwrap_or("2026-01").to_string()
}

async fn stats(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<PeriodQuery>,
) -> Response {
    let l = ctx.lang;
    let period = period_or_now(&web, &q.period);
    let req = StatsRequest {
        period: period.clone(),
        county: String::new(),
        format: "table".into(),
        lang: l.t("en", "zh").into(),
    };
    let table = match Operator::stats(web.op.clone(), Request::new(req)).await {
        Ok(r) => r.into_inner().text,
        Err(e) => return failed(&web, &ctx, &e),
    };
    let title = l.t("Figures and bulletin", "统计与通报");
    let body = format!(
        "<h1>{title}</h1><form method=\"get\" action=\"/stats\" class=\"period\"><label>{}\
         <input name=\"period\" value=\"{p}\" placeholder=\"2026-11 · 2026Q4 · 2026\"></label><button>{}</button></form>\
         <h2>{}</h2><pre class=\"table\" id=\"stats\">{}</pre>\
         <h2>{} <a href=\"/bulletin.html?period={up}\" target=\"_blank\" rel=\"noopener\">{}</a></h2>\
         <iframe class=\"bulletin\" id=\"bulletin\" sandbox title=\"{}\" src=\"/bulletin.html?period={up}\"></iframe>",
        l.t("Period", "期间"),
        l.t("Show", "查看"),
        l.t("Figures", "统计"),
        esc(&table),
        l.t("Bulletin", "通报"),
        l.t("open alone", "单独打开"),
        l.t("bulletin", "通报"),
        p = esc(&period),
        up = url(&period),
    );
    html::respond(
        StatusCode::OK,
        html::page(&web.frame(&ctx, title, "stats"), &body),
    )
}

/// The bulletin as `zhibao bulletin` makes it (with its chart), alone.
async fn bulletin(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<PeriodQuery>,
) -> Response {
    let l = ctx.lang;
    let req = StatsRequest {
        period: period_or_now(&web, &q.period),
        county: String::new(),
        format: "html".into(),
        lang: l.t("en", "zh").into(),
    };
    match Operator::stats(web.op.clone(), Request::new(req)).await {
        Ok(r) => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                // The document is ours and has no scripts; it runs none.
                (
                    header::CONTENT_SECURITY_POLICY,
                    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:",
                ),
            ],
            r.into_inner().text,
        )
            .into_response(),
        Err(e) => failed(&web, &ctx, &e),
    }
}

// ---------------------------------------------------------------- static

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("static/desk.js"),
    )
        .into_response()
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("static/desk.css"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_times_read_in_the_node_zone() {
        // 2026-11-26 20:30 at +08:00 is 12:30 UTC.
        assert_eq!(
            local_time("2026-11-26T20:30", 8 * 3_600_000),
            Some(1_795_696_200_000)
        );
        assert_eq!(
            local_time("2026-11-26T20:30:00", 8 * 3_600_000),
            Some(1_795_696_200_000)
        );
        assert_eq!(local_time("tomorrow", 0), None);
        assert_eq!(local_time("", 0), None);
    }
}
