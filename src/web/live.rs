//! Live updates: the node's events (`zhibao watch`'s feed) as server-sent
//! events. Each says what happened to which item, in a line for people;
//! the page's script refreshes what it shows when an item changes. A
//! browser that falls behind is told to refresh everything (`resync`)
//! rather than slowing the node down.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as Sse, KeepAlive};
use axum::response::{IntoResponse, Response};
use tokio::sync::broadcast::error::RecvError;
use tracing::warn;

use super::auth::Ctx;
use super::html::{self, Lang};
use super::pages::Web;
use crate::proto::{Event, EventKind};

/// Event streams open at once (one per open page).
pub(super) const MAX_STREAMS: usize = 32;

/// `GET /events`.
pub(super) async fn events(
    State(web): State<Arc<Web>>,
    Extension(ctx): Extension<Ctx>,
) -> Response {
    let Ok(permit) = web.live.clone().try_acquire_owned() else {
        warn!(peer = %ctx.peer, "web desk: refused a live stream: {MAX_STREAMS} are open");
        return html::refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "Too many pages are following live updates; close some.",
            "实时更新的页面过多，请关闭一些。",
        );
    };
    let rx = web.op.events.subscribe();
    let stop = web.shutdown.clone();
    let lang = ctx.lang;
    let offset = web.op.deadlines.get().offset_ms().unwrap_or(0);
    let stream = futures::stream::unfold(
        (rx, stop, permit),
        move |(mut rx, stop, permit)| async move {
            let next = tokio::select! {
                () = stop.cancelled() => return None,
                e = rx.recv() => e,
            };
            let sse = match next {
                Ok(e) => Sse::default()
                    .event("item")
                    .data(describe(&e, lang, offset)),
                Err(RecvError::Lagged(_)) => Sse::default().event("resync").data("{}"),
                Err(RecvError::Closed) => return None,
            };
            Some((Ok::<_, Infallible>(sse), (rx, stop, permit)))
        },
    );
    axum::response::sse::Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// An event as the page's script reads it: `{"kind","id","class","text"}`.
fn describe(e: &Event, lang: Lang, offset_ms: i64) -> String {
    let kind = EventKind::try_from(e.kind).unwrap_or(EventKind::Unspecified);
    let (en, zh) = kind.words();
    let (_, class) = html::class_label(e.priority, lang);
    let mut text = format!(
        "{} {}",
        html::when(e.at_unix_ms, offset_ms).get(11..).unwrap_or(""),
        lang.t(en, zh)
    );
    if e.priority != 0 {
        text.push_str(" · ");
        text.push_str(class);
    }
    if !e.item_id.is_empty() {
        text.push_str(" · ");
        text.push_str(&e.item_id);
    }
    let said = e.said(lang == Lang::Zh);
    if !said.is_empty() {
        text.push_str(" · ");
        text.extend(said.chars().take(160));
    }
    serde_json::json!({
        "kind": kind.as_str_name().trim_start_matches("EVENT_KIND_").to_lowercase(),
        "id": e.item_id,
        "class": e.priority,
        "text": text,
    })
    .to_string()
}
