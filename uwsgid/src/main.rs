//! The uwsgid binary: everything lives in the library.

/// Block the managed signals before anything else runs, even before Rust's runtime starts
/// `main`: from here on a signal sent while uwsgid starts waits for the master's signalfd
/// instead of killing the process (uWSGI dies of SIGUSR1 in that window).
#[used]
#[link_section = ".init_array"]
static BLOCK_SIGNALS_FIRST: extern "C" fn() = block_signals_first;

extern "C" fn block_signals_first() {
    let _ = uwsgid::sys::block_managed_signals();
}

fn main() {
    std::process::exit(uwsgid::main_entry());
}
