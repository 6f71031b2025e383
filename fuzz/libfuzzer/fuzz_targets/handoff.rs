//! libFuzzer entry point for the `handoff` target (see `fuzz/targets/src/targets.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = uwsgi_fuzz_targets::targets::handoff(data);
});
