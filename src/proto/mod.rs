//! The wire contract, `proto/zhibao/v1/zhibao.proto`: the generated types and
//! services, and the [`codec`] every zhibao service and client decodes with.

/// Version 1 of the zhibao wire contract.
#[allow(missing_docs, clippy::doc_markdown, clippy::large_enum_variant)]
pub mod v1 {
    tonic::include_proto!("zhibao.v1");
}

pub mod codec;

/// The encoded `FileDescriptorSet` of the wire contract, served by gRPC
/// server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/zhibao_descriptor.bin"));

pub use v1::*;

impl EventKind {
    /// The kind in a word or two for people, `(English, Chinese)`: the
    /// first column of `zhibao watch` and the web desk's ticker.
    pub fn words(self) -> (&'static str, &'static str) {
        match self {
            Self::Submitted => ("new report", "新报告"),
            Self::Receipted => ("receipted", "已收回执"),
            Self::Overdue => ("OVERDUE", "超时"),
            Self::Escalated => ("escalated", "已越级"),
            Self::Refused => ("refused", "被拒收"),
            Self::Alarm => ("ALARM", "告警"),
            Self::RouteUp => ("route up", "线路恢复"),
            Self::RouteDown => ("route down", "线路中断"),
            Self::Delivered => ("delivered", "已送达"),
            Self::Upload => ("attachment", "附件"),
            Self::Disposed => ("decided", "已处理"),
            Self::Reminder => ("reminder", "提醒"),
            Self::Solicitation => ("solicitation", "约稿"),
            Self::Bulletin => ("bulletin", "通报"),
            Self::Review => ("review", "审核"),
            Self::Unspecified => ("event", "事件"),
        }
    }
}

impl Event {
    /// What happened, in Chinese when `chinese` is set and the node gave
    /// words for it, else in English.
    pub fn said(&self, chinese: bool) -> &str {
        if chinese && !self.message_zh.is_empty() {
            &self.message_zh
        } else {
            &self.message
        }
    }
}
