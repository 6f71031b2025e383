//! libFuzzer entry point for the `conn` target (see `fuzz/targets/src/conn.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = uwsgi_fuzz_targets::conn::conn(data);
});
