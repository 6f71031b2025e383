//! The uwsgid binary: everything lives in the library.

fn main() {
    std::process::exit(uwsgid::main_entry());
}
