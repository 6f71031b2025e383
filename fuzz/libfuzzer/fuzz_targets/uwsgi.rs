//! libFuzzer entry point for the `uwsgi` target (see `fuzz/targets/src/uwsgi.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = uwsgi_fuzz_targets::uwsgi::run(data);
});
