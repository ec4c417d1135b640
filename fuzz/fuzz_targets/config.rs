//! A node's configuration file: any UTF-8 text through
//! `toml::from_str::<NodeConfig>` and `NodeConfig::validate`, and for a file
//! that validates, what the node derives from it (`socket_mode`,
//! `operator_socket`, `report_limits`, the deadlines) and `to_toml`, whose
//! output must read back and validate again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zhibao::class::Class;
use zhibao::config::NodeConfig;

fuzz_target!(|text: &str| {
    let Ok(cfg) = toml::from_str::<NodeConfig>(text) else {
        return;
    };
    let Ok(()) = cfg.validate().map_err(|e| e.to_string()) else {
        return;
    };
    cfg.socket_mode().expect("validate checked the socket mode");
    let _ = cfg.operator_socket();
    let _ = cfg.limits.report_limits();
    cfg.deadlines
        .offset_ms()
        .expect("validate checked the offset");
    for class in Class::ALL {
        // Times an operator's own clock gives (the submit path).
        let now = 1_795_618_800_000;
        let d = cfg.deadlines.receipt_deadline(class, now, 0);
        assert!(d > now, "a deadline before its item: {d}");
    }
    let written = cfg.to_toml().expect("a valid configuration serialises");
    let again: NodeConfig = toml::from_str(&written)
        .unwrap_or_else(|e| panic!("to_toml wrote what does not read back: {e}\n{written}"));
    again
        .validate()
        .unwrap_or_else(|e| panic!("to_toml wrote what does not validate: {e}\n{written}"));
    assert_eq!(
        again.to_toml().ok().as_deref(),
        Some(written.as_str()),
        "to_toml is not stable"
    );
});
