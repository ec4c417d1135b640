//! Words the node says to people, in English always and in Chinese where
//! it has them: an event's message (`Event.message_zh`) and a refusal's
//! reason (the `zh-CN` `google.rpc.LocalizedMessage` beside a gRPC status,
//! see `node::error`). One type for both, so a part that explains itself
//! does so once, in both languages, where it knows what happened.

/// What is said: English, and Chinese or empty (a reader in Chinese is
/// then shown the English).
#[derive(Debug)]
pub(crate) struct Said {
    /// English.
    pub(crate) en: String,
    /// Chinese, or empty.
    pub(crate) zh: String,
}

impl Said {
    /// The same in both languages.
    pub(crate) fn both(en: impl Into<String>, zh: impl Into<String>) -> Self {
        Self {
            en: en.into(),
            zh: zh.into(),
        }
    }

    /// The Chinese words, or the English where there are none.
    pub(crate) fn zh_or_en(&self) -> &str {
        if self.zh.is_empty() {
            &self.en
        } else {
            &self.zh
        }
    }
}

impl From<String> for Said {
    /// English only: details the node has only in English (an error's
    /// words).
    fn from(en: String) -> Self {
        Self {
            en,
            zh: String::new(),
        }
    }
}

impl std::fmt::Display for Said {
    /// The English words (logs, and a status's message).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.en)
    }
}
