//! The desk's HTML: every field that comes from a report, a county or a
//! person goes through [`esc`]; the page frame; labels in Chinese (the
//! office's language) with English on `?lang=en`; times in the node's
//! local time (`deadlines.utc_offset`).

use std::fmt::Write;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use time::{OffsetDateTime, UtcOffset};

pub(super) use crate::score::Lang;

use crate::class::Class;
use crate::proto::{ItemState, Verdict};

/// Text made safe to put in HTML, in an element or a quoted attribute
/// (the bulletin's escaping: control characters become U+FFFD too).
pub(super) fn esc(text: &str) -> String {
    crate::score::escape_html(text)
}

/// Text made safe for a URL's query or path segment.
pub(super) fn url(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A time to the minute in the node's zone, `2026-11-26 20:30`; `-` for none.
pub(super) fn when(ms: i64, offset_ms: i64) -> String {
    if ms <= 0 {
        return "-".into();
    }
    let offset = i32::try_from(offset_ms / 1000)
        .ok()
        .and_then(|s| UtcOffset::from_whole_seconds(s).ok())
        .unwrap_or(UtcOffset::UTC);
    match OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) {
        Ok(t) => {
            let t = t.to_offset(offset);
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute()
            )
        }
        Err(_) => format!("{ms} ms"),
    }
}

/// A class's name for people, and its CSS class.
pub(super) fn class_label(priority: i32, lang: Lang) -> (&'static str, &'static str) {
    match Class::from_proto(priority) {
        Some(c) => (
            match c {
                Class::Emergency => "emergency",
                Class::BadNews => "bad-news",
                Class::Routine => "routine",
            },
            match lang {
                Lang::Zh => c.name_zh(),
                Lang::En => match c {
                    Class::Emergency => "Emergency",
                    Class::BadNews => "Bad news",
                    Class::Routine => "Routine",
                },
            },
        ),
        None => ("unknown", lang.t("unknown", "未知")),
    }
}

/// An item's state for people.
pub(super) fn state_label(state: i32, lang: Lang) -> &'static str {
    let (en, zh) = match ItemState::try_from(state).unwrap_or(ItemState::Unspecified) {
        ItemState::Queued => ("queued", "待发"),
        ItemState::InFlight => ("in flight", "发送中"),
        ItemState::Receipted => ("receipted", "已收回执"),
        ItemState::Refused => ("refused", "被拒收"),
        ItemState::Delivered => ("delivered", "已送达"),
        ItemState::Withdrawn => ("withdrawn", "已撤回"),
        ItemState::Superseded => ("corrected", "已更正"),
        ItemState::HeldBelow => ("held below, overdue", "下级超时压存"),
        ItemState::AwaitingReview => ("awaiting review", "待审核"),
        ItemState::ReturnedByReview => ("returned by review", "审核退回"),
        ItemState::Unspecified => ("unknown", "未知"),
    };
    lang.t(en, zh)
}

/// What checking a receipt or decision found, for people: the English
/// `words` the API gives, or, in Chinese, words made from its `verdict`
/// (see [`crate::verdict`]). `receipt`: a receipt, which also states its
/// item's digest and whether it was on time.
pub(super) fn verdict(verdict: Option<&Verdict>, words: &str, receipt: bool, lang: Lang) -> String {
    crate::verdict::words(verdict, words, receipt, lang == Lang::Zh)
}

/// A decision kind for people.
pub(super) fn kind_label(kind: i32, lang: Lang) -> &'static str {
    match lang {
        Lang::Zh => crate::disposition::kind_name_zh(kind),
        Lang::En => crate::disposition::kind_name(kind),
    }
}

/// The parts of the page frame that vary.
#[derive(Debug)]
pub(super) struct Frame<'a> {
    /// The page title.
    pub(super) title: &'a str,
    /// Which top link is this page's (`desk`, `overdue`, …).
    pub(super) here: &'a str,
    /// This node.
    pub(super) node: &'a str,
    /// The logged-in member of staff and the session's CSRF token.
    pub(super) who: Option<(&'a str, &'a str)>,
    /// The language.
    pub(super) lang: Lang,
}

/// A whole page: header with the menu, `body`, the live-update script.
pub(super) fn page(frame: &Frame<'_>, body: &str) -> String {
    let l = frame.lang;
    let mut out = String::with_capacity(body.len() + 2048);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"{}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{} · {}</title><link rel=\"stylesheet\" href=\"/static/desk.css\"></head>\
         <body><header><a class=\"brand\" href=\"/\">{} <small>{}</small></a><nav>",
        l.t("en", "zh-CN"),
        esc(frame.title),
        l.t("zhibao web desk", "直报 信息科工作台"),
        l.t("zhibao desk", "直报 · 信息科"),
        esc(frame.node),
    );
    if frame.who.is_some() {
        for (key, en, zh, href) in [
            ("desk", "Inbox", "收件", "/"),
            ("overdue", "Overdue & held", "超时与压存", "/overdue"),
            ("solicitations", "Solicitations", "约稿", "/solicitations"),
            ("stats", "Figures & bulletin", "统计与通报", "/stats"),
        ] {
            let _ = write!(
                out,
                "<a href=\"{href}\"{}>{}</a>",
                if key == frame.here {
                    " class=\"here\""
                } else {
                    ""
                },
                l.t(en, zh)
            );
        }
    }
    out.push_str("</nav><div class=\"who\">");
    let _ = write!(
        out,
        "<a href=\"?lang={}\" id=\"lang\">{}</a>",
        l.t("zh", "en"),
        l.t("中文", "English")
    );
    if let Some((name, csrf)) = frame.who {
        let _ = write!(
            out,
            " <span id=\"live-state\" class=\"off\" title=\"{}\">●</span> <span>{}</span>\
             <form method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button>{}</button></form>",
            l.t("live updates", "实时更新"),
            esc(name),
            esc(csrf),
            l.t("Log out", "退出")
        );
    }
    out.push_str("</div></header><main>");
    out.push_str(body);
    out.push_str("</main>");
    if frame.who.is_some() {
        let _ = write!(
            out,
            "<aside><h2>{}</h2><ul id=\"ticker\"></ul></aside>",
            l.t("Just now", "最新动态")
        );
        out.push_str("<script src=\"/static/desk.js\" defer></script>");
    }
    out.push_str("</body></html>\n");
    out
}

/// An HTML response.
pub(super) fn respond(status: StatusCode, html: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}

/// A refusal in both languages (the gate has no page language yet).
pub(super) fn refusal(status: StatusCode, en: &str, zh: &str) -> Response {
    respond(
        status,
        format!(
            "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>{}</title></head>\
             <body><p>{}</p><p>{}</p></body></html>\n",
            status.as_u16(),
            esc(zh),
            esc(en)
        ),
    )
}

/// 401: log in first.
pub(super) fn login_needed(lang: Lang) -> Response {
    let frame = Frame {
        title: lang.t("Log in", "登录"),
        here: "",
        node: "",
        who: None,
        lang,
    };
    let body = format!(
        "<section class=\"login\"><h1>{}</h1><p>{}</p><p><a href=\"/login\">{}</a></p></section>",
        lang.t("Log in first", "请先登录"),
        lang.t(
            "This page needs a session of the web desk.",
            "此页面需要先登录网页工作台。"
        ),
        lang.t("Log in", "登录")
    );
    respond(StatusCode::UNAUTHORIZED, page(&frame, &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_follow_the_page_language() {
        let valid = crate::verdict::found(crate::proto::VerdictOutcome::Valid, "hub", true);
        let words = "valid: signed by hub, digest matches, on time";
        assert_eq!(
            verdict(Some(&valid), words, true, Lang::Zh),
            "有效：由 hub 签发，摘要一致，按时"
        );
        assert_eq!(verdict(Some(&valid), words, true, Lang::En), words);
    }

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc(r#"<script>alert('x')</script> & "q""#),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(url("a b/../c"), "a%20b%2F..%2Fc");
    }

    #[test]
    fn times_are_local() {
        // 2026-11-26 12:30 UTC is 20:30 at +08:00.
        let ms = 1_795_696_200_000;
        assert_eq!(when(ms, 8 * 3_600_000), "2026-11-26 20:30");
        assert_eq!(when(0, 0), "-");
    }
}
