//! The receipt deadline a node stamps on an item it takes in custody
//! (`node::custody` calls `Deadlines::receipt_deadline` with the report's
//! `created_unix_ms` and `deadline_unix_ms`): both come from a report that
//! `envelope::open` accepted, i.e. any i64 a region node signed, and every
//! class. The deadline policy is any that `NodeConfig::validate` accepts.
//! No overflow may panic; the deadline is never later than the one asked
//! for (when one is).
#![no_main]

use std::path::Path;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use zhibao::class::Class;
use zhibao::config::{Deadlines, NodeConfig};

#[derive(Arbitrary, Debug)]
struct Case {
    emergency_secs: u64,
    bad_news_secs: u64,
    routine_secs: Option<u64>,
    /// Hours and minutes of the UTC offset, and its sign.
    offset: (u8, u8, bool),
    default_policy: bool,
    class: u8,
    created_unix_ms: i64,
    deadline_unix_ms: i64,
}

fuzz_target!(|case: Case| {
    let deadlines = if case.default_policy {
        Deadlines::default()
    } else {
        let (h, m, minus) = case.offset;
        Deadlines {
            emergency_secs: case.emergency_secs,
            bad_news_secs: case.bad_news_secs,
            routine_secs: case.routine_secs,
            utc_offset: format!(
                "{}{:02}:{:02}",
                if minus { '-' } else { '+' },
                h % 16,
                m % 64
            ),
        }
    };
    let mut cfg = NodeConfig::for_node("fuzz", Path::new("pki"), Path::new("data"));
    cfg.deadlines = deadlines;
    if cfg.validate().is_err() {
        return;
    }
    let class = Class::ALL[usize::from(case.class % 3)];
    let d = cfg
        .deadlines
        .receipt_deadline(class, case.created_unix_ms, case.deadline_unix_ms);
    if case.deadline_unix_ms > 0 {
        assert!(d <= case.deadline_unix_ms, "later than asked: {d}");
    }
});
