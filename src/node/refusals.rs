//! Refusals made by the gRPC layer before a call reaches a handler of ours:
//! a request that is not gRPC, a message that does not decode or breaks
//! gRPC's framing, one over the size limit, a method that does not exist.
//! Each gets a log line naming the peer, as every refusal made by a
//! handler does, the size limit's code is gRPC's, and each is answered
//! with its reason by name and in Chinese in the status's details
//! ([`in_words`]), as a handler's refusal is (`node::error::words`).
//!
//! tonic answers such calls itself, so no handler of ours runs and nothing
//! else would log them; a hostile or broken client would be refused in
//! silence. They are told apart from a handler's refusals (which log with
//! more context, and are not logged twice) by what only tonic or our codec
//! says: `OUT_OF_RANGE` (tonic's size limit; nothing of ours answers it),
//! `UNIMPLEMENTED` (tonic's router, or a compression we do not take),
//! `INVALID_ARGUMENT` starting with [`MALFORMED`] (our codec,
//! `proto::codec`), and `INTERNAL` in tonic's words for broken framing.
//! A request whose content type is not gRPC's is answered HTTP 415 here.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::{Code, Status};
use tracing::warn;

use super::said::Said;
use crate::proto::codec::MALFORMED;
use crate::tls::PeerInfo;

/// Logs the gRPC layer's own refusals on one server (see the module doc).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RefusalsLayer {
    /// Which listener, for the log line of a peer without a certificate
    /// (the operator socket).
    listener: &'static str,
}

impl RefusalsLayer {
    pub(crate) fn new(listener: &'static str) -> Self {
        Self { listener }
    }
}

impl<S> tower::Layer<S> for RefusalsLayer {
    type Service = Refusals<S>;

    fn layer(&self, inner: S) -> Refusals<S> {
        Refusals {
            inner,
            listener: self.listener,
        }
    }
}

/// The service [`RefusalsLayer`] wraps around a server's routes.
#[derive(Debug, Clone)]
pub(crate) struct Refusals<S> {
    inner: S,
    listener: &'static str,
}

impl<S, B, R> tower::Service<http::Request<B>> for Refusals<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let peer = req.extensions().get::<PeerInfo>().cloned();
        let uri = req.uri().clone();
        let method = uri.path().to_string();
        let listener = self.listener;
        let said = move |code: &dyn std::fmt::Debug, why: &str| {
            let method = uri.path();
            match &peer {
                Some(p) => {
                    warn!(peer = %p.node_id, addr = %p.addr, method, ?code, error = why, "refused call before it reached zhibao")
                }
                None => {
                    warn!(
                        peer = listener,
                        method,
                        ?code,
                        error = why,
                        "refused call before it reached zhibao"
                    )
                }
            }
        };
        if let Some(other) = not_grpc(req.headers()) {
            // gRPC's HTTP/2 protocol: a server answers another content
            // type with 415, so that a client that is not gRPC does not
            // read a gRPC error's HTTP 200 as success.
            said(
                &http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &format!("content-type {other:?} is not application/grpc"),
            );
            let mut resp = http::Response::new(R::default());
            *resp.status_mut() = http::StatusCode::UNSUPPORTED_MEDIA_TYPE;
            return Box::pin(std::future::ready(Ok(resp)));
        }
        let answer = self.inner.call(req);
        Box::pin(async move {
            let mut resp = answer.await?;
            if let Some(status) = refused_before_handler(&mut resp, &method) {
                said(&status.code(), status.message());
            }
            Ok(resp)
        })
    }
}

/// The content type of a request that is not gRPC (`""` if it has none).
fn not_grpc(headers: &http::HeaderMap) -> Option<String> {
    let ct = headers.get(http::header::CONTENT_TYPE);
    match ct.map(http::HeaderValue::as_bytes) {
        Some(v) if v.starts_with(b"application/grpc") => None,
        _ => Some(ct.map_or_else(String::new, |v| {
            String::from_utf8_lossy(v.as_bytes()).into_owned()
        })),
    }
}

/// The status of a refusal made by tonic or our codec, if `resp` is one
/// (a trailers-only answer: its status is in the headers), with the
/// answer rewritten as [`made_before_handler`] and [`in_words`] say.
fn refused_before_handler<R>(resp: &mut http::Response<R>, method: &str) -> Option<Status> {
    let status = Status::from_header_map(resp.headers())?;
    let (status, refused) = made_before_handler(status);
    if !refused {
        return None;
    }
    let status = in_words(&status, method);
    if status.add_header(resp.headers_mut()).is_err() {
        // Only a message that cannot be a header value fails; ours are
        // made here, so the code alone goes.
        resp.headers_mut()
            .insert("grpc-status", http::HeaderValue::from(status.code() as i32));
    }
    Some(status)
}

/// A refusal made before a handler ran, said as a handler's are (see
/// `node::error::words`): the reason by name and in Chinese beside the
/// English; an unknown method's empty message names the method.
pub(super) fn in_words(status: &Status, method: &str) -> Status {
    let why = status.message();
    let (reason, said) = match status.code() {
        Code::ResourceExhausted => (
            "MESSAGE_TOO_LARGE",
            Said::both(why, format!("消息超过大小上限：{why}")),
        ),
        Code::Unimplemented if why.trim().is_empty() => (
            "UNKNOWN_METHOD",
            Said::both(
                format!("no method {method} here"),
                format!("这里没有方法 {method}"),
            ),
        ),
        Code::Unimplemented => (
            "COMPRESSION_NOT_TAKEN",
            Said::both(
                why,
                format!("消息经过压缩（grpc-encoding），zhibao 不接受压缩的消息：{why}"),
            ),
        ),
        Code::InvalidArgument => (
            "MESSAGE_MALFORMED",
            Said::both(why, format!("消息无法解码：{why}")),
        ),
        _ => (
            "BROKEN_FRAMING",
            Said::both(why, format!("gRPC 消息的分帧有误：{why}")),
        ),
    };
    crate::node::error::status(status.code(), reason, &said)
}

/// The one rule, for calls and for messages within a stream: `status` as
/// it is answered (tonic's `OUT_OF_RANGE` for a message over the size
/// limit becomes gRPC's convention, and the README's,
/// `RESOURCE_EXHAUSTED`), and whether tonic or our codec made it, so that
/// no handler of ours has logged it.
pub(super) fn made_before_handler(status: Status) -> (Status, bool) {
    match status.code() {
        Code::OutOfRange => (Status::resource_exhausted(status.message()), true),
        Code::Unimplemented => (status, true),
        Code::InvalidArgument => {
            let ours = status.message().starts_with(MALFORMED);
            (status, ours)
        }
        // tonic's own words for a stream that breaks gRPC's framing (a
        // compressed flag without an encoding, a message cut short).
        Code::Internal => {
            let tonics = TONIC_FRAMING
                .iter()
                .any(|p| status.message().starts_with(p));
            (status, tonics)
        }
        _ => (status, false),
    }
}

/// How tonic's refusals of a broken gRPC framing begin (tonic 0.14).
const TONIC_FRAMING: &[&str] = &["protocol error", "Unexpected EOF"];

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: &Status) -> http::Response<()> {
        let mut resp = http::Response::new(());
        status
            .add_header(resp.headers_mut())
            .expect("a status's headers");
        resp
    }

    #[test]
    fn the_size_limits_refusal_is_resource_exhausted_and_logged() {
        let mut resp = answer(&Status::out_of_range("message too large"));
        let status = refused_before_handler(&mut resp, "/m").expect("tonic's refusal");
        assert_eq!(status.code(), Code::ResourceExhausted);
        let answered = Status::from_header_map(resp.headers()).expect("a status");
        assert_eq!(answered.code(), Code::ResourceExhausted);
        assert_eq!(
            crate::client::refusal_reason(&answered).as_deref(),
            Some("MESSAGE_TOO_LARGE")
        );
    }

    #[test]
    fn an_unknown_method_is_named_in_both_languages() {
        let mut resp = answer(&Status::unimplemented(""));
        refused_before_handler(&mut resp, "/zhibao.v1.Operator/Nope").expect("the router's");
        let answered = Status::from_header_map(resp.headers()).expect("a status");
        assert_eq!(answered.code(), Code::Unimplemented);
        assert_eq!(
            answered.message(),
            "no method /zhibao.v1.Operator/Nope here"
        );
        assert_eq!(
            crate::client::refusal_reason(&answered).as_deref(),
            Some("UNKNOWN_METHOD")
        );
        assert_eq!(
            crate::client::refusal_in_chinese(&answered).as_deref(),
            Some("这里没有方法 /zhibao.v1.Operator/Nope")
        );
    }

    #[test]
    fn the_codecs_and_the_routers_refusals_are_told_apart_from_a_handlers() {
        let malformed = Status::invalid_argument(format!("{MALFORMED}: invalid varint"));
        assert!(refused_before_handler(&mut answer(&malformed), "/m").is_some());
        let unknown = Status::unimplemented("");
        assert!(refused_before_handler(&mut answer(&unknown), "/m").is_some());
        // A handler's refusals log themselves.
        for status in [
            Status::invalid_argument("report: title is empty"),
            Status::permission_denied("not the holder"),
            Status::ok(""),
        ] {
            let mut resp = answer(&status);
            assert!(
                refused_before_handler(&mut resp, "/m").is_none(),
                "{status:?}"
            );
        }
        assert!(refused_before_handler(&mut http::Response::new(()), "/m").is_none());
    }

    #[test]
    fn tonics_words_for_broken_framing_are_its_refusals() {
        for why in [
            "protocol error: received message with compressed-flag but no grpc-encoding was specified",
            "Unexpected EOF decoding stream.",
        ] {
            let mut resp = answer(&Status::internal(why));
            assert!(refused_before_handler(&mut resp, "/m").is_some(), "{why}");
        }
        // A store failure is a handler's, logged there.
        let mut resp = answer(&Status::internal("store: commit failed"));
        assert!(refused_before_handler(&mut resp, "/m").is_none());
    }

    #[test]
    fn only_grpcs_content_types_are_grpc() {
        let with = |ct: Option<&'static str>| {
            let mut h = http::HeaderMap::new();
            if let Some(ct) = ct {
                h.insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static(ct),
                );
            }
            not_grpc(&h)
        };
        assert_eq!(with(Some("application/grpc")), None);
        assert_eq!(with(Some("application/grpc+proto")), None);
        assert_eq!(
            with(Some("application/json")).as_deref(),
            Some("application/json")
        );
        assert_eq!(with(None).as_deref(), Some(""));
    }
}
