//! What a refusal says beyond its gRPC code: a stable name for why
//! ([`Error::reason`], `google.rpc.ErrorInfo.reason` in the status's
//! details) and the reason in Chinese ([`Error::in_chinese`], a `zh-CN`
//! `google.rpc.LocalizedMessage` beside the English message).
//!
//! Both travel in `grpc-status-details-bin`, gRPC's richer error model, so
//! any client can read them, not only ours: a program matches on the
//! reason rather than on English words, and the CLI and the web desk show
//! office staff the Chinese. Where a detail exists only in English (a
//! decoder's words, a file path) the Chinese sentence carries it as it is.

use super::{Error, SubmitError, UploadError};
use crate::disposition::{self, DispositionError};
use crate::envelope::{AttachmentError, BadItemId, MAX_ATTACHMENTS, MAX_HOPS, MAX_ID_LEN};
use crate::envelope::{MAX_AUTHOR_BYTES, VerifyError};
use crate::held::HeldError;
use crate::node::office::OfficeError;
use crate::node::said::Said;
use crate::notice::NoticeError;
use crate::store;
use crate::trust::SignerError;
use crate::verdict::reason_zh;

/// `ErrorInfo.domain`: the API the reasons belong to.
pub(crate) const DOMAIN: &str = "zhibao.v1";

/// `LocalizedMessage.locale` of the Chinese reason.
pub(crate) const LOCALE: &str = "zh-CN";

/// A refusal as every refusal of zhibao's is answered: `code`, the English
/// words as the message, and in the details the reason by name and the
/// Chinese words (the English again where `said` has no Chinese).
pub(crate) fn status(code: tonic::Code, reason: &str, said: &Said) -> tonic::Status {
    use tonic_types::{ErrorDetails, StatusExt};
    let mut details =
        ErrorDetails::with_error_info(reason, DOMAIN, std::collections::HashMap::new());
    details.set_localized_message(LOCALE, said.zh_or_en());
    tonic::Status::with_error_details(code, said.en.clone(), details)
}

impl Error {
    /// Why, as a stable UPPER_SNAKE_CASE name (`ErrorInfo.reason`): one per
    /// kind of refusal, never reworded, for programs to match on.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Self::NoPeer => "NO_CLIENT_CERTIFICATE",
            Self::NotOperator(_) => "NOT_AN_OPERATOR",
            Self::NotConsumer(_) => "NOT_A_CONSUMER",
            Self::BadConsumerName(_) => "BAD_CONSUMER_NAME",
            Self::CursorWithConsumer => "CURSOR_WITH_CONSUMER",
            Self::TooManyConsumers { .. } => "TOO_MANY_CONSUMERS",
            Self::NoConsumer(_) => "NO_SUCH_CONSUMER",
            Self::TooManyAckIds { .. } => "TOO_MANY_ACK_IDS",
            Self::TakenOver(_) => "CONSUMER_TAKEN_OVER",
            Self::Verify(v) => verify_reason(v),
            Self::BadId(_) => "BAD_ITEM_ID",
            Self::Store(s) => store_reason(s),
            Self::Conflict { .. } => "ID_CONFLICT",
            Self::NotHolder { .. } => "NOT_HOLDER",
            Self::Submit(s) => match s {
                SubmitError::UnknownClass(_) => "UNKNOWN_CLASS",
                SubmitError::EmptyTitle => "EMPTY_TITLE",
                SubmitError::TitleTooLong { .. } => "TITLE_TOO_LONG",
                SubmitError::BodyTooLarge { .. } => "BODY_TOO_LARGE",
                SubmitError::TooManyAttachments(_) => "TOO_MANY_ATTACHMENTS",
                SubmitError::AttachmentsTooLarge { .. } => "ATTACHMENTS_TOO_LARGE",
                SubmitError::AttachmentName(_) => "BAD_ATTACHMENT_NAME",
                SubmitError::DeadlineInPast => "DEADLINE_IN_PAST",
            },
            Self::Upload(u) => match u {
                UploadError::NotAnnounced(_) => "CHUNK_NOT_ANNOUNCED",
                UploadError::NoAttachment { .. } => "NO_SUCH_ATTACHMENT",
                UploadError::ChunkSize { .. } => "BAD_CHUNK_SIZE",
                UploadError::Digest { .. } => "ATTACHMENT_DIGEST_MISMATCH",
                UploadError::Quota { .. } => "UPLOAD_QUOTA_EXCEEDED",
            },
            Self::AttachmentsNeedStream => "ATTACHMENTS_NEED_STREAM",
            Self::BadAck => "BAD_ACK",
            Self::EmptyForward => "EMPTY_FORWARD",
            Self::NotFound(_) => "NO_SUCH_ITEM",
            Self::NotInInbox(_) => "NOT_IN_INBOX",
            Self::Pruned { .. } => "PRUNED",
            Self::NoAttachment { .. } => "NO_SUCH_ATTACHMENT",
            Self::MissingChunk { .. } => "CHUNK_MISSING",
            Self::Corrupt { .. } => "STORED_ITEM_CORRUPT",
            Self::ShuttingDown => "SHUTTING_DOWN",
            Self::Decision(d) => decision_reason(d),
            Self::NotDecidable { .. } => "NOT_DECIDABLE",
            Self::DecisionRace(_) => "DECISION_RACE",
            Self::HeldFull(_) => "HELD_NOTICES_FULL",
            Self::Held(h) => match h {
                HeldError::Signer(s) => s.reason(),
                HeldError::Malformed(_) => "HELD_NOTICE_MALFORMED",
                HeldError::HolderMismatch { .. } => "HELD_NOTICE_HOLDER_MISMATCH",
                HeldError::Invalid(_) => "HELD_NOTICE_INVALID",
            },
            Self::NotOrigin { .. } => "NOT_ORIGIN",
            Self::FollowUp { .. } => "FOLLOW_UP_REFUSED",
            Self::NoCredentials => "NO_PEER_CREDENTIALS",
            Self::Unlisted(_) => "OPERATOR_NOT_LISTED",
            Self::Office(o) => match o {
                OfficeError::Invalid(_) => "OFFICE_REQUEST_INVALID",
                OfficeError::NotFound { .. } => "NO_SUCH_NOTICE",
                OfficeError::NoFigures(_) => "NO_FIGURES",
                OfficeError::Precondition(_) => "OFFICE_PRECONDITION",
                OfficeError::TooLarge(_) => "NOTICE_TOO_LARGE",
                OfficeError::Notice(n) => match n {
                    NoticeError::Signer(s) => s.reason(),
                    NoticeError::Malformed(_) => "NOTICE_MALFORMED",
                    NoticeError::PublisherMismatch { .. } => "NOTICE_PUBLISHER_MISMATCH",
                    NoticeError::NotAPublisher { .. } => "NOT_A_PUBLISHER",
                    NoticeError::Invalid { .. } => "NOTICE_INVALID",
                },
            },
            Self::NotReviewer(_) => "NOT_A_REVIEWER",
            Self::OwnReport(_) => "OWN_REPORT",
            Self::NotOfferedYet { .. } => "NOT_OFFERED_YET",
            Self::NotAwaitingReview { .. } => "NOT_AWAITING_REVIEW",
            Self::BadReview(_) => "BAD_REVIEW_REQUEST",
        }
    }

    /// The refusal in Chinese, for office staff and operators.
    pub(crate) fn in_chinese(&self) -> String {
        match self {
            Self::NoPeer => "此连接上没有经过验证的客户端证书".into(),
            Self::NotOperator(node) => format!("节点 {node:?} 无权使用本节点的操作员接口"),
            Self::NotConsumer(node) => {
                format!("节点 {node:?} 不是本收件箱的订阅方（relay.consumers）")
            }
            Self::BadConsumerName(name) => {
                format!("订阅方名称 {name:?} 不符合要求：应为 1 至 64 字节的 A-Z a-z 0-9 . _ -")
            }
            Self::CursorWithConsumer => {
                "持久订阅的位置由枢纽保存：订阅时请给出订阅方名称或游标，不能两者都给".into()
            }
            Self::TooManyConsumers { peer, limit } => format!(
                "节点 {peer:?} 在本收件箱已有 {limit} 个持久订阅，已达一个证书的上限；请用其中一个名称订阅"
            ),
            Self::NoConsumer(name) => {
                format!("本证书没有名为 {name:?} 的持久订阅：请先用这个名称订阅")
            }
            Self::TooManyAckIds { count, limit } => {
                format!("一次确认含 {count} 个信息编号，最多只能 {limit} 个")
            }
            Self::TakenOver(name) => format!("订阅 {name:?} 已由同名的新订阅接替"),
            Self::Verify(v) => verify_zh(v),
            Self::BadId(b) => bad_id_zh(b),
            Self::Store(s) => store_zh(s),
            Self::Conflict {
                id,
                stored,
                offered,
            } => format!("信息 {id} 已以不同内容入库（已存摘要 {stored}，此次摘要 {offered}）"),
            Self::NotHolder { id, holder, sender } => {
                format!("按保管链，信息 {id} 由 {holder:?} 持有，而不是发来它的 {sender:?}")
            }
            Self::Submit(s) => submit_zh(s),
            Self::Upload(u) => match u {
                UploadError::NotAnnounced(id) => {
                    format!("信息 {id:?} 的分块未在本流上预告")
                }
                UploadError::NoAttachment { id, index } => {
                    format!("信息 {id} 没有第 {index} 个附件")
                }
                UploadError::ChunkSize {
                    id,
                    attachment,
                    index,
                } => format!("信息 {id} 第 {attachment} 个附件的第 {index} 块大小不对"),
                UploadError::Digest { index, name } => {
                    format!("第 {index} 个附件（{name:?}）与原发单位签名的摘要不符")
                }
                UploadError::Quota {
                    child,
                    quota,
                    held,
                    limit,
                } => format!("{child} 未完成的上传超出配额：{held}，上限 {limit}（{quota}）"),
            },
            Self::AttachmentsNeedStream => {
                "带附件的信息须经 Relay.Forward 传送，附件分块随它一起传".into()
            }
            Self::BadAck => "送达回执的确认格式错误".into(),
            Self::EmptyForward => "ForwardRequest 的 item、ack、chunk 都没有设置".into(),
            Self::NotFound(id) => format!("没有信息 {id}"),
            Self::NotInInbox(id) => format!("本收件箱中没有信息 {id}"),
            Self::Pruned { id, at_ms } => format!(
                "信息 {id} 的报告和附件已过保存期，不再保存在这里（删除于 Unix 毫秒 {at_ms}）；它的回执和处理决定仍在（在最终枢纽可看存档：`zhibao store archive show {id}`）"
            ),
            Self::NoAttachment { id, index } => format!("信息 {id} 没有第 {index} 个附件"),
            Self::MissingChunk {
                id,
                attachment,
                index,
            } => format!("信息 {id} 第 {attachment} 个附件的第 {index} 块不在存储中"),
            Self::Corrupt { id, source } => format!("已存的信息 {id} 无法解码：{source}"),
            Self::ShuttingDown => "节点正在停止".into(),
            Self::Decision(d) => decision_zh(d),
            Self::NotDecidable { id, why } => format!("信息 {id}：{}", why.zh_or_en()),
            Self::DecisionRace(id) => {
                format!("信息 {id}：同一时刻已记下另一项处理决定；请重试")
            }
            Self::HeldFull(n) => {
                format!("本节点已保存 {n} 条压存通知，已达上限（limits.max_held_notices）")
            }
            Self::Held(h) => match h {
                HeldError::Signer(s) => format!("压存通知的签名未通过检查：{}", signer_zh(s)),
                HeldError::Malformed(e) => format!("压存通知无法解码：{e}"),
                HeldError::HolderMismatch { named, signer } => {
                    format!("压存通知写的持有方是 {named:?}，签名的却是 {signer:?}")
                }
                HeldError::Invalid(why) => format!("压存通知不可用：{why}"),
            },
            Self::NotOrigin { id, origin, by } => format!(
                "信息 {id} 由 {origin} 撰写；只有原发单位可以撤回、更正或补充它，{by} 不可以"
            ),
            Self::FollowUp { id, why } => format!("信息 {id}：{}", why.zh_or_en()),
            Self::NoCredentials => "无法确定操作员套接字上的调用者（没有对端凭据）".into(),
            Self::Unlisted(uid) => {
                format!("uid {uid} 不在 [[operators]] 名单中，且 operator.allow_unlisted 为 false")
            }
            Self::Office(o) => office_zh(o),
            Self::NotReviewer(who) => format!(
                "{who} 不能把关审核报告：只有角色为主任（director）或副主任（deputy）的操作员可以"
            ),
            Self::OwnReport(id) => format!("信息 {id} 是您本人的报告：须由另一位审核人把关"),
            Self::NotOfferedYet { id, until, in_secs } => format!(
                "信息 {id} 在 {until} 之前（还有 {in_secs} 秒）由主任审核；此后副主任可以审核"
            ),
            Self::NotAwaitingReview { id, why } => {
                format!("信息 {id} 不在待审核状态：{}", why.zh_or_en())
            }
            Self::BadReview(why) => why.zh_or_en().to_string(),
        }
    }
}

/// A signer's failure in Chinese; a certificate refused for a reason
/// without words of its own keeps webpki's.
fn signer_zh(s: &SignerError) -> String {
    let words = reason_zh(s.problem(), s);
    if s.problem() == "signer_certificate" {
        format!("{words}（{s}）")
    } else {
        words
    }
}

fn verify_reason(v: &VerifyError) -> &'static str {
    match v {
        VerifyError::TooLarge { .. } => "REPORT_TOO_LARGE",
        VerifyError::Signer(s) => s.reason(),
        VerifyError::Malformed(_) => "REPORT_MALFORMED",
        VerifyError::OriginMismatch { .. } => "ORIGIN_MISMATCH",
        VerifyError::BadId(_) => "BAD_ITEM_ID",
        VerifyError::TitleTooLong { .. } => "TITLE_TOO_LONG",
        VerifyError::AuthorTooLong(_) => "AUTHOR_TOO_LONG",
        VerifyError::BadLink(_) => "BAD_LINK",
        VerifyError::BadReview(_) => "BAD_REVIEW_SIGN_OFF",
        VerifyError::UnknownClass(_) => "UNKNOWN_CLASS",
        VerifyError::FromTheFuture { .. } => "FROM_THE_FUTURE",
        VerifyError::TooOld { .. } => "TOO_OLD",
        VerifyError::Attachments(a) => match a {
            AttachmentError::TooMany(_) => "TOO_MANY_ATTACHMENTS",
            AttachmentError::Malformed { .. } => "ATTACHMENT_MALFORMED",
            AttachmentError::TooLarge { .. } => "ATTACHMENTS_TOO_LARGE",
        },
        VerifyError::TooManyHops(_) => "TOO_MANY_HOPS",
        VerifyError::Hop { .. } => "CUSTODY_CHAIN_BROKEN",
    }
}

fn verify_zh(v: &VerifyError) -> String {
    match v {
        VerifyError::TooLarge { size, limit } => {
            format!("报告 {size} 字节，超过上限 {limit} 字节（limits.max_report_bytes）")
        }
        VerifyError::Signer(s) => format!("报告的签名未通过检查：{}", signer_zh(s)),
        VerifyError::Malformed(e) => format!("报告无法解码：{e}"),
        VerifyError::OriginMismatch { claimed, signer } => {
            format!("报告自称来自 {claimed:?}，签名的却是节点 {signer:?}")
        }
        VerifyError::BadId(b) => bad_id_zh(b),
        VerifyError::TitleTooLong { len, limit } => title_too_long_zh(*len, *limit),
        VerifyError::AuthorTooLong(len) => {
            format!("作者名 {len} 字节，超过上限 {MAX_AUTHOR_BYTES} 字节")
        }
        VerifyError::BadLink(why) => format!("对先前报告的引用不可用：{why}"),
        VerifyError::BadReview(why) => format!("报告的把关签字不可用：{why}"),
        VerifyError::UnknownClass(c) => unknown_class_zh(*c),
        VerifyError::FromTheFuture { ahead_ms, skew_ms } => format!(
            "报告的日期比本节点的时钟晚 {ahead_ms} 毫秒，超出允许的 {skew_ms} 毫秒时钟偏差（limits.max_clock_skew_secs）：原发节点的时钟有误"
        ),
        VerifyError::TooOld { age_ms, max_ms } => format!(
            "报告的日期在 {age_ms} 毫秒以前，超过信息可在途的 {max_ms} 毫秒（limits.max_report_age_days），或没有日期"
        ),
        VerifyError::Attachments(a) => match a {
            AttachmentError::TooMany(n) => too_many_attachments_zh(*n),
            AttachmentError::Malformed { index, name } => {
                format!("第 {index} 个附件（{name:?}）格式错误")
            }
            AttachmentError::TooLarge { size, limit } => attachments_too_large_zh(*size, *limit),
        },
        VerifyError::TooManyHops(n) => {
            format!("经过 {n} 跳；一条信息最多经 {MAX_HOPS} 个中继")
        }
        VerifyError::Hop { index, why } => format!("保管链在第 {index} 跳断开：{why}"),
    }
}

fn bad_id_zh(b: &BadItemId) -> String {
    match b {
        BadItemId::Length => format!("信息编号应为 1 至 {MAX_ID_LEN} 个字符"),
        BadItemId::Character => "信息编号只能含字母、数字、“-”和“_”".into(),
    }
}

fn title_too_long_zh(len: usize, limit: usize) -> String {
    format!("标题 {len} 字节，超过上限 {limit} 字节（limits.max_title_bytes）")
}

fn unknown_class_zh(class: i32) -> String {
    format!("未知的类别 {class}：应为 emergency（重大紧急）、bad_news（报忧）或 routine（动态）")
}

fn too_many_attachments_zh(n: usize) -> String {
    format!("{n} 个附件；最多 {MAX_ATTACHMENTS} 个")
}

fn attachments_too_large_zh(size: u64, limit: u64) -> String {
    format!("附件共 {size} 字节，超过上限 {limit} 字节（limits.max_attachment_bytes）")
}

fn submit_zh(s: &SubmitError) -> String {
    match s {
        SubmitError::UnknownClass(c) => unknown_class_zh(*c),
        SubmitError::EmptyTitle => "标题为空".into(),
        SubmitError::TitleTooLong { len, limit } => title_too_long_zh(*len, *limit),
        SubmitError::BodyTooLarge { len, budget, limit } => format!(
            "正文 {len} 字节，超过这个标题下可用的 {budget} 字节（limits.max_report_bytes = {limit}）"
        ),
        SubmitError::TooManyAttachments(n) => too_many_attachments_zh(*n),
        SubmitError::AttachmentsTooLarge { total, limit } => {
            attachments_too_large_zh(*total, *limit)
        }
        SubmitError::AttachmentName(max) => {
            format!("每个附件都要有 1 至 {max} 字节的名称")
        }
        SubmitError::DeadlineInPast => "时限已经过去".into(),
    }
}

fn store_reason(s: &store::Error) -> &'static str {
    match s {
        store::Error::Full => "STORE_FULL",
        store::Error::Closed => "STORE_CLOSED",
        store::Error::Reopening => "STORE_REOPENING",
        store::Error::Body { .. } | store::Error::BodyGone { .. } => "REPORT_UNREADABLE",
        _ => "STORE_FAILED",
    }
}

fn store_zh(s: &store::Error) -> String {
    match s {
        store::Error::Full => {
            "存储已满（磁盘没有剩余空间）；不再接收新信息，已存的信息不受影响".into()
        }
        store::Error::Closed => "存储已关闭（节点正在停止）".into(),
        store::Error::Reopening => "存储在一次写入失败后正在重新打开；请稍后重试".into(),
        store::Error::Body { .. } | store::Error::BodyGone { .. } => {
            format!("存储中的报告内容无法完整读出，已告警：{s}")
        }
        _ => format!("存储出错，已记入日志：{s}"),
    }
}

fn decision_reason(d: &DispositionError) -> &'static str {
    match d {
        DispositionError::UnknownKind(_) => "UNKNOWN_DECISION_KIND",
        DispositionError::MissingText { .. } => "DECISION_TEXT_MISSING",
        DispositionError::TextTooLong(_) => "DECISION_TEXT_TOO_LONG",
        DispositionError::StaffTooLong(_) => "STAFF_NAME_TOO_LONG",
        DispositionError::AnswerBy => "ANSWER_BY_NEEDED",
        DispositionError::AnswerByNotReturned => "ANSWER_BY_NOT_RETURNED",
        DispositionError::Signer(s) => s.reason(),
        DispositionError::Malformed(_) => "DECISION_MALFORMED",
        DispositionError::NodeMismatch { .. } => "DECISION_SIGNER_MISMATCH",
        DispositionError::OtherItem { .. } => "DECISION_OTHER_ITEM",
        DispositionError::NoReceipt => "DECISION_NO_RECEIPT",
        DispositionError::Receipt(_) => "DECISION_RECEIPT_INVALID",
        DispositionError::ReceiptSigner { .. } => "DECISION_RECEIPT_SIGNER",
        DispositionError::Seq(_) => "DECISION_SEQ_OUT_OF_RANGE",
    }
}

fn decision_zh(d: &DispositionError) -> String {
    match d {
        DispositionError::UnknownKind(k) => format!(
            "未知的处理决定 {k}：应为 adopted（采用）、not-adopted（不采用）、returned（退回补充）、forwarded（上报）、instruction（批示）或 closed（办结）"
        ),
        DispositionError::MissingText { kind, what } => match *kind {
            "adopted" => "采用的决定须写明用于哪个刊物（--outlet）".into(),
            "not-adopted" => "不采用的决定须写明理由（--reason）".into(),
            "returned" => "退回补充须写明要补充回答的问题（--question）".into(),
            "instruction" => "批示须有批示内容".into(),
            _ => format!("{kind} 决定需要 {what}"),
        },
        DispositionError::TextTooLong(n) => format!(
            "文字 {n} 字节，超过上限 {} 字节",
            disposition::MAX_TEXT_BYTES
        ),
        DispositionError::StaffTooLong(n) => format!(
            "经办人姓名 {n} 字节，超过上限 {} 字节",
            disposition::MAX_STAFF_BYTES
        ),
        DispositionError::AnswerBy => "退回补充需要一个未来的答复时限（--by）".into(),
        DispositionError::AnswerByNotReturned => "只有退回补充的信息才有答复时限".into(),
        DispositionError::Signer(s) => format!("处理决定的签名未通过检查：{}", signer_zh(s)),
        DispositionError::Malformed(e) => format!("处理决定无法解码：{e}"),
        DispositionError::NodeMismatch { named, signer } => {
            format!("处理决定署名节点 {named:?}，签名的却是 {signer:?}")
        }
        DispositionError::OtherItem { item } => {
            format!("处理决定针对的是信息 {item:?}，不是这一条（或是另一份报告内容）")
        }
        DispositionError::NoReceipt => "处理决定未附决定方对这条信息的签收回执".into(),
        DispositionError::Receipt(r) => format!(
            "所附回执不能证明决定方收到过这条信息：{}",
            reason_zh(r.problem(), r)
        ),
        DispositionError::ReceiptSigner { receipt, node } => {
            format!("所附回执由 {receipt:?} 签发，处理决定却由 {node:?} 签发")
        }
        DispositionError::Seq(n) => format!(
            "处理决定序号 {n} 超出范围（1 至 {}）",
            disposition::MAX_PER_ITEM
        ),
    }
}

fn office_zh(o: &OfficeError) -> String {
    match o {
        OfficeError::Invalid(why)
        | OfficeError::NoFigures(why)
        | OfficeError::Precondition(why)
        | OfficeError::TooLarge(why) => why.zh_or_en().to_string(),
        OfficeError::NotFound { what, id, .. } => {
            let (what, list) = if *what == "solicitation" {
                ("约稿", "zhibao solicitations")
            } else {
                ("通报", "zhibao bulletins")
            };
            format!("没有{what} {id} 送达本节点（`{list}` 列出已送达的）")
        }
        OfficeError::Notice(n) => match n {
            NoticeError::Signer(s) => format!("通知的签名未通过检查：{}", signer_zh(s)),
            NoticeError::Malformed(e) => format!("通知无法解码：{e}"),
            NoticeError::PublisherMismatch { named, signer } => {
                format!("通知写的发布方是 {named:?}，签名的却是 {signer:?}")
            }
            NoticeError::NotAPublisher {
                id,
                signer,
                allowed,
            } => format!(
                "通知 {id} 由 {signer:?} 签发，它不是本节点接受的发布方（office.publishers：{allowed}）"
            ),
            NoticeError::Invalid { id, why } => format!("通知 {id} 不合规则：{why}"),
        },
    }
}
