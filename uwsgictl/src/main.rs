//! The uwsgictl binary: all of it lives in the library, so tests and the man page generator
//! reach the same definitions.

fn main() {
    std::process::exit(uwsgictl::main());
}
