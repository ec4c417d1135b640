//! What checking a signed receipt, decision or report found
//! ([`Verdict`]), made once where the check runs and put in words for
//! people wherever it is shown: the web desk, `zhibao status`, `show`,
//! `watch` and `store archive show`.
//!
//! The API carries each finding twice: English `verification` words, and
//! the [`Verdict`] as data. Chinese words are made here from the data, so
//! the office reads a check's outcome, signer and reason in its own
//! language; a reason this build has no words for keeps the English.

use crate::proto::{Verdict, VerdictOutcome};

/// A check that found what it looked for.
pub fn found(outcome: VerdictOutcome, signer: &str, on_time: bool) -> Verdict {
    Verdict {
        outcome: outcome as i32,
        signer: signer.to_string(),
        on_time,
        problem: String::new(),
    }
}

/// A check that failed: `problem` is the error's code (see
/// [`problem_zh`]); `signer` who the signed thing claims made it, if it
/// could be read.
pub fn invalid(signer: &str, problem: &str) -> Verdict {
    Verdict {
        outcome: VerdictOutcome::Invalid as i32,
        signer: signer.to_string(),
        on_time: false,
        problem: problem.to_string(),
    }
}

/// The finding in Chinese, or `None` where the verdict says too little
/// (no outcome, or a reason without Chinese words): the caller shows the
/// English words then. `receipt`: a receipt, which also states its item's
/// digest and whether it was on time.
pub fn in_chinese(v: &Verdict, receipt: bool) -> Option<String> {
    let by = || {
        if !receipt {
            return format!("由 {} 签发", v.signer);
        }
        let timing = if v.on_time { "按时" } else { "迟到" };
        format!("由 {} 签发，摘要一致，{timing}", v.signer)
    };
    match VerdictOutcome::try_from(v.outcome) {
        Ok(VerdictOutcome::Valid) => Some(format!("有效：{}", by())),
        Ok(VerdictOutcome::ValidWhenStored) => Some(format!("入库时有效：{}", by())),
        Ok(VerdictOutcome::IssuedHere) => Some("本节点（最终枢纽）签收入库".into()),
        Ok(VerdictOutcome::Invalid) => problem_zh(&v.problem).map(|why| format!("无效：{why}")),
        Ok(VerdictOutcome::Unspecified) | Err(_) => None,
    }
}

/// The finding in the reader's language: Chinese made from `verdict`
/// when `chinese` is set and it says enough, else the API's English
/// `words`.
pub fn words(verdict: Option<&Verdict>, english: &str, receipt: bool, chinese: bool) -> String {
    verdict
        .filter(|_| chinese)
        .and_then(|v| in_chinese(v, receipt))
        .unwrap_or_else(|| english.to_string())
}

/// Why a check failed, for a message in Chinese: the words for its
/// `problem` code, or, for a code without them, the error's own
/// (English) words, since the Chinese message is shown alone.
pub fn reason_zh(problem: &str, error: &dyn std::fmt::Display) -> String {
    problem_zh(problem).map_or_else(|| error.to_string(), str::to_string)
}

/// A failed check's reason (`Verdict.problem`) in Chinese.
pub fn problem_zh(problem: &str) -> Option<&'static str> {
    Some(match problem {
        "malformed" => "无法解码",
        "bad_signature" => "签名与内容不符",
        "signer_revoked" => "签发者证书已吊销",
        "signer_expired" => "签发者证书已过期",
        "signer_not_yet_valid" => "签发者证书尚未生效",
        "signer_other_ca" => "签发者证书不是本区域CA签发的",
        "signer_certificate" => "签发者证书未通过检查",
        "signer_no_node" => "签发者证书未标明节点",
        "signer_key_usage" => "签发者证书的密钥用途不允许签名",
        "signer_weak_key" => "签发者证书的密钥不能证明签发者",
        "crl_stale" => "区域吊销列表已过期，正在等待新的列表",
        "signer_mismatch" => "所署节点与签发者不符",
        "other_item" => "说的是另一条信息",
        "other_bytes" => "与本条信息的摘要不符",
        "bad_group_path" => "批次路径格式错误",
        "other_receiver" => "签收方不是本条信息发往的节点",
        "no_receipt" => "未附决定方的签收回执",
        "decider_receipt" => "所附回执不能证明决定方收到过本条信息",
        "breaks_rules" => "内容不合规则",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_read_in_chinese() {
        let v = |outcome: VerdictOutcome, on_time: bool, problem: &str| Verdict {
            outcome: outcome as i32,
            signer: "hub".into(),
            on_time,
            problem: problem.into(),
        };
        let valid = v(VerdictOutcome::Valid, true, "");
        let english = "valid: signed by hub, digest matches, on time";
        assert_eq!(
            words(Some(&valid), english, true, true),
            "有效：由 hub 签发，摘要一致，按时"
        );
        assert_eq!(words(Some(&valid), english, true, false), english);
        let late = v(VerdictOutcome::ValidWhenStored, false, "");
        assert_eq!(
            words(Some(&late), "", true, true),
            "入库时有效：由 hub 签发，摘要一致，迟到"
        );
        assert_eq!(
            words(Some(&valid), "valid: signed by hub", false, true),
            "有效：由 hub 签发"
        );
        let bad = v(VerdictOutcome::Invalid, false, "bad_signature");
        assert_eq!(
            words(Some(&bad), "INVALID: signature does not verify", true, true),
            "无效：签名与内容不符"
        );
        // A reason without Chinese words, or no verdict: the English words.
        let odd = v(VerdictOutcome::Invalid, false, "something_new");
        assert_eq!(
            words(Some(&odd), "INVALID: something new", true, true),
            "INVALID: something new"
        );
        assert_eq!(words(None, "valid: x", true, true), "valid: x");
    }

    #[test]
    fn a_reason_without_chinese_words_keeps_the_errors_own() {
        assert_eq!(
            reason_zh("bad_signature", &"signature does not verify"),
            "签名与内容不符"
        );
        assert_eq!(
            reason_zh("something_new", &"a new failure"),
            "a new failure"
        );
    }

    #[test]
    fn every_problem_code_the_api_names_has_chinese_words() {
        let proto = include_str!("../proto/zhibao/v1/zhibao.proto");
        let at = proto
            .find("// INVALID: why, as one of:")
            .expect("Verdict.problem's doc");
        let doc: String = proto[at..]
            .lines()
            .take_while(|l| l.trim_start().starts_with("//"))
            .map(|l| l.trim_start().trim_start_matches("//"))
            .collect::<Vec<_>>()
            .join(" ");
        let list = doc.split_once("one of:").expect("a list").1;
        let codes: Vec<&str> = list
            .split([',', '.'])
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        assert!(codes.len() >= 18, "{codes:?}");
        for code in &codes {
            assert!(problem_zh(code).is_some(), "no Chinese words for {code}");
        }
        // And what the checks say is on that list.
        use crate::disposition::DispositionError as D;
        use crate::receipt::ReceiptError as R;
        use crate::trust::SignerError as S;
        let (a, b) = (String::from("a"), String::from("b"));
        let said = [
            S::Certificate(webpki::Error::CertRevoked).problem(),
            S::Certificate(webpki::Error::UnknownIssuer).problem(),
            S::Certificate(webpki::Error::BadDer).problem(),
            S::NoNodeId.problem(),
            S::KeyUsage("").problem(),
            S::BadSignature.problem(),
            S::StaleCrl { expired: 0 }.problem(),
            R::OtherBytes.problem(),
            R::OtherItem(a.clone()).problem(),
            R::ReceiverMismatch {
                named: a.clone(),
                signer: b.clone(),
            }
            .problem(),
            R::OtherReceiver {
                actual: a.clone(),
                expected: b.clone(),
            }
            .problem(),
            R::BadPath {
                index: 0,
                size: 0,
                hashes: 0,
            }
            .problem(),
            D::NoReceipt.problem(),
            D::Seq(0).problem(),
            D::NodeMismatch {
                named: a.clone(),
                signer: b,
            }
            .problem(),
            D::OtherItem { item: a }.problem(),
            D::Receipt(R::OtherBytes).problem(),
            D::Signer(S::BadSignature).problem(),
        ];
        for code in said {
            assert!(
                codes.contains(&code),
                "{code} is not in Verdict.problem's list"
            );
        }
    }
}
