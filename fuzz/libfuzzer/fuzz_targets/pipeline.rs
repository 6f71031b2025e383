//! libFuzzer entry point for the `pipeline` target (see `fuzz/targets/src/targets.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = uwsgi_fuzz_targets::targets::pipeline(data);
});
