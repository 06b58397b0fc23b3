//! The config loader (`tier1::testing::config::parse`, TOML and JSON, with an injected environment) on
//! arbitrary text. It must answer every input with a `Config` or a list of errors, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tier1::testing::config::{Env, Format, parse};

/// Every variable is set (so the seeds validate and the fuzzer gets past secrets), except
/// `UNSET`; `EMPTY` is set to the empty string.
struct AnyEnv;

impl Env for AnyEnv {
    fn var(&self, name: &str) -> Option<String> {
        match name {
            "UNSET" => None,
            "EMPTY" => Some(String::new()),
            _ => Some(format!("value-of-{name}")),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // `file:PATH` secrets read files: the fuzzer would find /dev/zero or a FIFO, which block
    // forever or fill memory. Files are the operator's to choose, not input to be hardened against.
    if text.contains("file:") {
        return;
    }
    for format in [Format::Toml, Format::Json] {
        if let Err(errors) = parse(text, format, &AnyEnv) {
            assert!(!errors.0.is_empty(), "a refused config must say why");
        }
    }
});
