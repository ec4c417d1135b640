//! Clients for the CLI, the demo and the tests: the local operator API and
//! a hub's inbox.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};

use crate::class::Class;
use crate::proto::{
    Attachment, ConsumerStatus, ConsumersRequest, Cursor, Event, InboxAck, InboxAckResponse,
    InboxItem, ItemStatus, ListRequest, StatusRequest, SubmitRequest, SubscribeRequest,
    WatchRequest, inbox_client::InboxClient, operator_client::OperatorClient,
};
use crate::trust::{Identity, Trust};

/// What kind of refusal a node's gRPC status is, in Chinese, for a member
/// of staff: said before the node's reason, which is in English (the web
/// desk's refusal page, the CLI's error line).
pub fn refusal_zh(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::NotFound => "找不到这条信息或这项内容",
        tonic::Code::InvalidArgument | tonic::Code::OutOfRange => {
            "填写的内容不符合要求，请按所附原因修改后重试"
        }
        tonic::Code::FailedPrecondition | tonic::Code::AlreadyExists | tonic::Code::Aborted => {
            "这条信息当前的状态不允许这样处理"
        }
        tonic::Code::PermissionDenied => "无权进行这项操作",
        tonic::Code::ResourceExhausted => "内容过大或请求过多，请稍后重试",
        tonic::Code::Unavailable => "节点暂时不能处理，请稍后重试",
        _ => "节点处理出错，已记入日志，原因见所附",
    }
}

/// A node's refusal in Chinese, where it says it: the `zh-CN`
/// `google.rpc.LocalizedMessage` in the status's details (every refusal
/// a zhibao node makes carries one); `None` for a status without
/// (one made by another implementation, or a bare one).
pub fn refusal_in_chinese(s: &tonic::Status) -> Option<String> {
    use tonic_types::StatusExt;
    s.get_details_localized_message()
        .filter(|m| m.locale.starts_with("zh") && !m.message.trim().is_empty())
        .map(|m| m.message)
}

/// Why a node refused, as the stable name programs match on
/// (`google.rpc.ErrorInfo.reason`, e.g. `BODY_TOO_LARGE`), where it says.
pub fn refusal_reason(s: &tonic::Status) -> Option<String> {
    use tonic_types::StatusExt;
    s.get_details_error_info().map(|i| i.reason)
}

/// Errors talking to a node.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing is listening on the operator socket.
    #[error("node not running: cannot connect to {path}: {source}")]
    NotRunning {
        /// The socket path.
        path: PathBuf,
        /// The connect error.
        source: std::io::Error,
    },
    /// The node answered with an error. Shown as the node's message, which
    /// names what is wrong (the gRPC code is for programs).
    #[error("{}", status_text(.0))]
    Status(tonic::Status),
    /// No receipt came within the time asked for; the item is still queued.
    #[error(
        "no receipt for {id} within {}; it stays queued and is sent when the upstream takes it (follow it with `zhibao status {id}`)",
        humantime::format_duration(*.after)
    )]
    Timeout {
        /// The item.
        id: String,
        /// How long was waited.
        after: Duration,
    },
    /// The connection failed.
    #[error("cannot connect to {to}: {}", crate::telemetry::chain(.source))]
    Transport {
        /// The address or socket.
        to: String,
        /// Why.
        source: tonic::transport::Error,
    },
    /// Local identity or trust material is unusable.
    #[error(transparent)]
    Load(#[from] crate::trust::LoadError),
    /// TLS setup failed.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

impl ClientError {
    /// What went wrong, in Chinese, for an operator: a node's refusal in
    /// the node's Chinese words ([`refusal_in_chinese`]), and this
    /// client's own failures (the node not running, no receipt in time,
    /// no connection); `None` where there are no Chinese words.
    pub fn in_chinese(&self) -> Option<String> {
        match self {
            Self::NotRunning { path, source } => Some(format!(
                "节点没有运行：无法连接 {}：{source}",
                path.display()
            )),
            Self::Status(s) => refusal_in_chinese(s),
            Self::Timeout { id, after } => Some(format!(
                "{} 内没有收到 {id} 的回执；它仍在队列中，上级接收后即发出（用 `zhibao status {id}` 跟踪）",
                humantime::format_duration(*after)
            )),
            Self::Transport { to, source } => Some(format!(
                "无法连接 {to}：{}",
                crate::telemetry::chain(source)
            )),
            Self::Load(_) | Self::Tls(_) => None,
        }
    }
}

impl From<tonic::Status> for ClientError {
    fn from(s: tonic::Status) -> Self {
        Self::Status(s)
    }
}

/// A status as one line for people: the node's message; if it sent none,
/// what the code means.
fn status_text(s: &tonic::Status) -> String {
    let message = s.message().trim();
    if message.is_empty() {
        format!("the node refused the request ({:?})", s.code())
    } else {
        message.to_string()
    }
}

/// A connection to a node's operator API over its Unix socket.
#[derive(Debug, Clone)]
pub struct Operator {
    inner: OperatorClient<Channel>,
}

impl Operator {
    /// Connects to the operator socket at `path`.
    pub async fn connect(path: &Path) -> Result<Self, ClientError> {
        // Probe first, so "not running" is told apart from other failures.
        if let Err(source) = UnixStream::connect(path).await {
            return Err(ClientError::NotRunning {
                path: path.to_path_buf(),
                source,
            });
        }
        let socket = path.to_path_buf();
        let channel =
            Endpoint::from_static("http://localhost")
                .connect_with_connector(tower::service_fn(move |_: http::Uri| {
                    let socket = socket.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(socket).await?))
                    }
                }))
                .await
                .map_err(|source| ClientError::Transport {
                    to: path.display().to_string(),
                    source,
                })?;
        Ok(Self {
            inner: OperatorClient::new(channel).max_decoding_message_size(96 * 1024 * 1024),
        })
    }

    /// Connects to a node's TCP operator listener over mutual TLS, as the
    /// holder of `cert`/`key` (which the node must list in `operator.allowed`).
    pub async fn connect_tls(
        addr: &str,
        node_id: &str,
        ca: &Path,
        cert: &Path,
        key: &Path,
    ) -> Result<Self, ClientError> {
        let channel = mtls_channel(addr, node_id, ca, cert, key).await?;
        Ok(Self {
            inner: OperatorClient::new(channel).max_decoding_message_size(96 * 1024 * 1024),
        })
    }

    /// Submits a report; returns its id once the node has it on disk.
    pub async fn submit(
        &mut self,
        class: Class,
        title: &str,
        body: Vec<u8>,
        deadline_unix_ms: i64,
    ) -> Result<String, ClientError> {
        self.submit_with(class, title, body, deadline_unix_ms, Vec::new())
            .await
    }

    /// Submits a report with attachments (name, bytes).
    pub async fn submit_with(
        &mut self,
        class: Class,
        title: &str,
        body: Vec<u8>,
        deadline_unix_ms: i64,
        attachments: Vec<(String, Vec<u8>)>,
    ) -> Result<String, ClientError> {
        self.submit_request(SubmitRequest {
            priority: class.to_proto() as i32,
            title: title.to_string(),
            body,
            deadline_unix_ms,
            attachments: attachments
                .into_iter()
                .map(|(name, data)| Attachment { name, data })
                .collect(),
            ..Default::default()
        })
        .await
    }

    /// Submits a report as `req` describes it (a follow-up of an earlier
    /// one included); returns its id once the node has it on disk.
    pub async fn submit_request(&mut self, req: SubmitRequest) -> Result<String, ClientError> {
        Ok(self.inner.submit(req).await?.into_inner().id)
    }

    /// Submits a report as `req` describes it and waits, in the same call,
    /// for its receipt, at most `wait` (see `SubmitRequest.wait_receipt_ms`):
    /// its id and where it is then. Receipted, refused or awaiting review
    /// within `wait`, else queued or in flight. A `wait` of zero is taken
    /// as 1 ms.
    pub async fn submit_and_wait(
        &mut self,
        mut req: SubmitRequest,
        wait: Duration,
    ) -> Result<(String, ItemStatus), ClientError> {
        req.wait_receipt_ms = u32::try_from(wait.as_millis()).unwrap_or(u32::MAX).max(1);
        let done = self.inner.submit(req).await?.into_inner();
        // Unset only if the node could not wait (shutting down).
        let status = match done.status {
            Some(status) => status,
            None => self.status(&done.id).await?,
        };
        Ok((done.id, status))
    }

    /// Withdraws an earlier report of this node, saying why: a signed
    /// report of its own, in the original's class. Returns its id.
    pub async fn withdraw(&mut self, id: &str, reason: &str) -> Result<String, ClientError> {
        self.submit_request(SubmitRequest {
            body: reason.as_bytes().to_vec(),
            link: crate::proto::LinkKind::Withdraws as i32,
            links_to: id.to_string(),
            ..Default::default()
        })
        .await
    }

    /// Items awaiting review before sending (把关), or sign-off.
    pub async fn review_list(&mut self) -> Result<Vec<crate::proto::ReviewItem>, ClientError> {
        Ok(self
            .inner
            .review_list(crate::proto::ReviewListRequest {})
            .await?
            .into_inner()
            .items)
    }

    /// A director's or deputy's review of item `id`: approve (it is sealed
    /// and sent; for an emergency sent earlier, a signed sign-off is) or
    /// reject (back to its author, `note` required). Returns the status of
    /// what was sent or returned.
    pub async fn review(
        &mut self,
        id: &str,
        action: crate::proto::ReviewAction,
        note: &str,
    ) -> Result<ItemStatus, ClientError> {
        Ok(self
            .inner
            .review(crate::proto::ReviewRequest {
                id: id.to_string(),
                action: action as i32,
                note: note.to_string(),
            })
            .await?
            .into_inner())
    }

    /// The item's state, times and receipt.
    pub async fn status(&mut self, id: &str) -> Result<ItemStatus, ClientError> {
        Ok(self
            .inner
            .status(StatusRequest {
                id: id.to_string(),
                full: false,
            })
            .await?
            .into_inner())
    }

    /// Everything about one item: the signed report itself, every receipt
    /// and every office decision, verified now.
    pub async fn show(&mut self, id: &str) -> Result<ItemStatus, ClientError> {
        Ok(self
            .inner
            .status(StatusRequest {
                id: id.to_string(),
                full: true,
            })
            .await?
            .into_inner())
    }

    /// Records an office decision on an item this node holds from below.
    pub async fn dispose(
        &mut self,
        req: crate::proto::DisposeRequest,
    ) -> Result<crate::proto::DispositionView, ClientError> {
        Ok(self.inner.dispose(req).await?.into_inner())
    }

    /// Publishes, extends or withdraws a solicitation (约稿).
    pub async fn solicit(
        &mut self,
        req: crate::proto::SolicitRequest,
    ) -> Result<crate::proto::NoticeView, ClientError> {
        Ok(self.inner.solicit(req).await?.into_inner())
    }

    /// The solicitations and bulletins known at the node.
    pub async fn notices(
        &mut self,
        req: crate::proto::NoticesRequest,
    ) -> Result<Vec<crate::proto::NoticeView>, ClientError> {
        Ok(self.inner.notices(req).await?.into_inner().notices)
    }

    /// Per county: answered on time, late, or not.
    pub async fn solicitation_status(
        &mut self,
        id: &str,
    ) -> Result<crate::proto::SolicitationStatusResponse, ClientError> {
        let req = crate::proto::SolicitationStatusRequest { id: id.to_string() };
        Ok(self.inner.solicitation_status(req).await?.into_inner())
    }

    /// The office's figures for a period, rendered as asked.
    pub async fn stats(&mut self, req: crate::proto::StatsRequest) -> Result<String, ClientError> {
        Ok(self.inner.stats(req).await?.into_inner().text)
    }

    /// Renders, signs and pushes down a period's bulletin.
    pub async fn publish_bulletin(
        &mut self,
        req: crate::proto::StatsRequest,
    ) -> Result<crate::proto::NoticeView, ClientError> {
        Ok(self.inner.publish_bulletin(req).await?.into_inner())
    }

    /// Sets a county's yearly target.
    pub async fn set_target(
        &mut self,
        req: crate::proto::TargetRequest,
    ) -> Result<(), ClientError> {
        self.inner.set_target(req).await?;
        Ok(())
    }

    /// The chunks of attachment `attachment` of item `id`, in order.
    pub async fn attachment(
        &mut self,
        id: &str,
        attachment: u32,
    ) -> Result<tonic::Streaming<crate::proto::Chunk>, ClientError> {
        Ok(self
            .inner
            .attachment(crate::proto::AttachmentRequest {
                item_id: id.to_string(),
                attachment,
            })
            .await?
            .into_inner())
    }

    /// Live events from the node.
    pub async fn watch(&mut self) -> Result<tonic::Streaming<Event>, ClientError> {
        Ok(self.inner.watch(WatchRequest {}).await?.into_inner())
    }

    /// Items, newest first; with `overdue_only`, those that missed their
    /// deadline. Also the node's count of items ever overdue.
    pub async fn list(
        &mut self,
        overdue_only: bool,
        limit: u32,
    ) -> Result<(Vec<ItemStatus>, u64), ClientError> {
        self.list_where(ListRequest {
            overdue_only,
            limit,
            ..Default::default()
        })
        .await
    }

    /// Items matching `req`'s filters, and the node's count of items ever
    /// overdue.
    pub async fn list_where(
        &mut self,
        req: ListRequest,
    ) -> Result<(Vec<ItemStatus>, u64), ClientError> {
        let resp = self.inner.list(req).await?.into_inner();
        Ok((resp.items, resp.overdue_total))
    }

    /// The node's custody log, as stored.
    pub async fn audit(
        &mut self,
    ) -> Result<tonic::Streaming<crate::proto::AuditBatch>, ClientError> {
        Ok(self
            .inner
            .audit(crate::proto::AuditRequest { from_seq: 0 })
            .await?
            .into_inner())
    }

    /// The node itself: trust material and routes.
    pub async fn node(&mut self) -> Result<crate::proto::NodeStatus, ClientError> {
        Ok(self
            .inner
            .node(crate::proto::NodeRequest {})
            .await?
            .into_inner())
    }

    /// What the node's store holds.
    pub async fn store_stats(
        &mut self,
        req: crate::proto::StoreStatsRequest,
    ) -> Result<crate::proto::StoreStatsResponse, ClientError> {
        Ok(self.inner.store_stats(req).await?.into_inner())
    }

    /// Runs a retention pass now.
    pub async fn prune(
        &mut self,
        req: crate::proto::PruneRequest,
    ) -> Result<crate::proto::PruneResponse, ClientError> {
        Ok(self.inner.prune(req).await?.into_inner())
    }

    /// Waits until the item is receipted (or refused), at most `timeout`.
    pub async fn wait_receipt(
        &mut self,
        id: &str,
        timeout: Duration,
    ) -> Result<ItemStatus, ClientError> {
        let timed_out = || ClientError::Timeout {
            id: id.to_string(),
            after: timeout,
        };
        let mut req = tonic::Request::new(StatusRequest {
            id: id.to_string(),
            full: false,
        });
        // The node stops waiting too.
        req.set_timeout(timeout);
        let started = tokio::time::Instant::now();
        match tokio::time::timeout(timeout, self.inner.wait_receipt(req)).await {
            Err(_) => Err(timed_out()),
            // The time ran out, however the transport tells it: the node's
            // DEADLINE_EXCEEDED, tonic's own timer (CANCELLED), or, when a
            // very short timeout fires while the call is being set up, an
            // UNKNOWN status whose message is the transport's Debug text.
            Ok(Err(s))
                if matches!(
                    s.code(),
                    tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
                ) || started.elapsed() >= timeout
                    || s.message().contains("TimeoutExpired") =>
            {
                Err(timed_out())
            }
            Ok(r) => Ok(r?.into_inner()),
        }
    }
}

/// A consumer of a hub's inbox over mutual TLS.
#[derive(Debug)]
pub struct Inbox {
    inner: InboxClient<Channel>,
}

impl Inbox {
    /// Connects to the hub `hub_id` at `addr` as the holder of `cert`/`key`.
    pub async fn connect(
        addr: &str,
        hub_id: &str,
        ca: &Path,
        cert: &Path,
        key: &Path,
    ) -> Result<Self, ClientError> {
        let channel = mtls_channel(addr, hub_id, ca, cert, key).await?;
        Ok(Self {
            inner: InboxClient::new(channel).max_decoding_message_size(96 * 1024 * 1024),
        })
    }

    /// One attachment of an item in the inbox, reassembled.
    pub async fn attachment(
        &mut self,
        item_id: &str,
        attachment: u32,
    ) -> Result<Vec<u8>, ClientError> {
        let mut stream = self
            .inner
            .attachment(crate::proto::AttachmentRequest {
                item_id: item_id.to_string(),
                attachment,
            })
            .await?
            .into_inner();
        let mut out = Vec::new();
        while let Some(chunk) = stream.message().await? {
            out.extend_from_slice(&chunk.data);
        }
        Ok(out)
    }

    /// Streams items after `cursor`; with `follow`, waits for new ones.
    pub async fn subscribe(
        &mut self,
        cursor: Cursor,
        follow: bool,
    ) -> Result<tonic::Streaming<InboxItem>, ClientError> {
        Ok(self
            .inner
            .subscribe(SubscribeRequest {
                cursor: Some(cursor),
                no_follow: !follow,
                consumer: String::new(),
            })
            .await?
            .into_inner())
    }

    /// Streams, as the durable consumer `name` of our certificate, every
    /// inbox item it has not acknowledged; with `follow`, then new ones.
    /// Acknowledge what is processed with [`Inbox::ack`]: what is not is
    /// sent again.
    pub async fn subscribe_as(
        &mut self,
        name: &str,
        follow: bool,
    ) -> Result<tonic::Streaming<InboxItem>, ClientError> {
        Ok(self
            .inner
            .subscribe(SubscribeRequest {
                cursor: None,
                no_follow: !follow,
                consumer: name.to_string(),
            })
            .await?
            .into_inner())
    }

    /// Acknowledges, for the durable consumer `name`, that items `ids` are
    /// processed; answers how many it has not acknowledged and which ids
    /// name no inbox item.
    pub async fn ack(
        &mut self,
        name: &str,
        ids: Vec<String>,
    ) -> Result<InboxAckResponse, ClientError> {
        Ok(self
            .inner
            .ack(InboxAck {
                consumer: name.to_string(),
                item_ids: ids,
            })
            .await?
            .into_inner())
    }

    /// The hub's history of decisions and held notices after `after` (or,
    /// with a consumer name, after what it acknowledged), then new entries
    /// as they come if `follow`.
    pub async fn history(
        &mut self,
        after: u64,
        consumer: &str,
        follow: bool,
    ) -> Result<tonic::Streaming<crate::proto::HistoryEntry>, ClientError> {
        Ok(self
            .inner
            .history(crate::proto::HistoryRequest {
                after,
                no_follow: !follow,
                consumer: consumer.to_string(),
            })
            .await?
            .into_inner())
    }

    /// Our consumer `name` has processed the history up to `upto`; returns
    /// its position.
    pub async fn history_ack(&mut self, name: &str, upto: u64) -> Result<u64, ClientError> {
        Ok(self
            .inner
            .history_ack(crate::proto::HistoryAckRequest {
                consumer: name.to_string(),
                upto,
            })
            .await?
            .into_inner()
            .upto)
    }

    /// Our certificate's durable consumers and what each has not
    /// acknowledged.
    pub async fn consumers(&mut self) -> Result<Vec<ConsumerStatus>, ClientError> {
        Ok(self
            .inner
            .consumers(ConsumersRequest {})
            .await?
            .into_inner()
            .consumers)
    }
}

/// A gRPC channel to node `expect` at `addr` over mutual TLS.
async fn mtls_channel(
    addr: &str,
    expect: &str,
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> Result<Channel, ClientError> {
    crate::tls::install_crypto_provider();
    let identity = Identity::load(cert, key)?;
    let trust = Trust::load(ca, None)?;
    let config = crate::tls::client_config(&identity, &trust.snapshot(), expect)?;
    crate::tls::connect_channel(addr, Arc::new(config), expect, Default::default())
        .await
        .map_err(|source| ClientError::Transport {
            to: addr.to_string(),
            source,
        })
}
