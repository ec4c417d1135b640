//! Attachment arithmetic on references a report can carry:
//! `envelope::chunk_count`, `chunk_len` and `attachments::check`, on any
//! `AttachmentRef`s (every u64 size, every u32 chunk size and index). No
//! overflow may panic, and where `check` accepts an attachment the chunks
//! must tile it exactly: all full but the last, which holds the rest.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use zhibao::envelope::attachments::{self, CHUNK_BYTES};
use zhibao::envelope::{chunk_count, chunk_len};
use zhibao::proto::{AttachmentRef, Report};

#[derive(Arbitrary, Debug)]
struct Att {
    name: String,
    size: u64,
    sha256: Vec<u8>,
    chunk_size: u32,
}

#[derive(Arbitrary, Debug)]
struct Case {
    attachments: Vec<Att>,
    index: u32,
    max_total: u64,
}

fuzz_target!(|case: Case| {
    let refs: Vec<AttachmentRef> = case
        .attachments
        .into_iter()
        .take(40)
        .map(|a| AttachmentRef {
            name: a.name,
            size: a.size,
            sha256: a.sha256,
            chunk_size: a.chunk_size,
        })
        .collect();
    for a in &refs {
        let n = chunk_count(a);
        let size = u128::from(a.size);
        let cs = u128::from(a.chunk_size);
        for i in [0, 1, case.index, n.saturating_sub(1), n, u32::MAX] {
            let len = chunk_len(a, i);
            assert!(
                u128::from(len) <= cs,
                "chunk {i} longer than the chunk size"
            );
            // Independent arithmetic, in u128.
            let start = u128::from(i) * cs;
            let want = size.saturating_sub(start).min(cs);
            assert_eq!(u128::from(len), want, "chunk {i} of {a:?}");
        }
        if CHUNK_BYTES.contains(&a.chunk_size) {
            let exact = size.div_ceil(cs);
            if exact <= u128::from(u32::MAX) {
                assert_eq!(u128::from(n), exact, "chunk count of {a:?}");
                if n > 0 {
                    let last = u128::from(chunk_len(a, n - 1));
                    assert!(last > 0, "empty last chunk");
                    assert_eq!(
                        u128::from(n - 1) * cs + last,
                        size,
                        "chunks do not tile {a:?}"
                    );
                }
                assert_eq!(chunk_len(a, n), 0, "a chunk past the end");
            } else {
                assert_eq!(n, u32::MAX);
            }
        }
    }
    let report = Report {
        attachments: refs.clone(),
        ..Default::default()
    };
    let ok = attachments::check(&report, case.max_total);
    let total: u128 = refs.iter().map(|a| u128::from(a.size)).sum();
    let model = refs.len() <= attachments::MAX_ATTACHMENTS
        && refs.iter().all(|a| {
            a.sha256.len() == 32
                && CHUNK_BYTES.contains(&a.chunk_size)
                && a.name.len() <= attachments::MAX_NAME_BYTES
        })
        && (total <= u128::from(case.max_total) || (case.max_total == u64::MAX));
    if let Err(e) = &ok {
        let _ = e.to_string();
    }
    assert_eq!(ok.is_ok(), model, "check disagrees with the rules: {ok:?}");
});
