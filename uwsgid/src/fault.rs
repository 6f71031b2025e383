//! Test-only real faults, so the tests can prove what a SIGSEGV or SIGFPE raised by the
//! hardware does (not one sent with `kill(2)`): the process dies by the signal, the master
//! logs it and respawns a worker; a faulting master leaves no worker behind.
//!
//! Armed only by `UWSGID_TEST_FAULT`, read once at start ([`init`]):
//! - `worker-segv` / `worker-fpe`: a built-in worker answering `GET /fault` (a demo route, so
//!   only with `--demo-routes` as well) reads through a null pointer / divides by zero.
//! - `master-segv`: the master reads through a null pointer when its FIFO delivers the bytes
//!   `fault` in one write (checked before the bytes are decoded as commands).
//!
//! Without the variable, nothing here ever runs a fault: `/fault` is an unknown path and the
//! FIFO bytes are the garbage they look like.

use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

const OFF: u8 = 0;
const WORKER_SEGV: u8 = 1;
const WORKER_FPE: u8 = 2;
const MASTER_SEGV: u8 = 3;

static MODE: AtomicU8 = AtomicU8::new(OFF);

/// Read `UWSGID_TEST_FAULT` once; an unknown value arms nothing and says so.
pub fn init() {
    let Ok(v) = std::env::var("UWSGID_TEST_FAULT") else {
        return;
    };
    let mode = match v.as_str() {
        "worker-segv" => WORKER_SEGV,
        "worker-fpe" => WORKER_FPE,
        "master-segv" => MASTER_SEGV,
        other => {
            eprintln!(
                "uwsgid: warning: UWSGID_TEST_FAULT={other:?} is not one of worker-segv, \
                 worker-fpe, master-segv: no fault armed"
            );
            OFF
        }
    };
    MODE.store(mode, Relaxed);
}

/// The worker's `/fault` demo route: true when a worker fault is armed (it then never
/// returns: the process dies by the signal).
pub fn worker_route() -> bool {
    match MODE.load(Relaxed) {
        WORKER_SEGV => segv(),
        WORKER_FPE => fpe(),
        _ => false,
    }
}

/// The master's FIFO read: fault when armed and the read is exactly `fault`.
pub fn master_fifo(bytes: &[u8]) {
    if MODE.load(Relaxed) == MASTER_SEGV && bytes.trim_ascii() == b"fault" {
        segv();
    }
}

/// A read through a null pointer: the MMU faults, the kernel delivers SIGSEGV.
fn segv() -> ! {
    let p: *const u8 = std::hint::black_box(std::ptr::null());
    // SAFETY: not sound by design: this is the test-only fault. The volatile read of address 0
    // is emitted as a real load (not optimized away), and page 0 is never mapped on Linux, so
    // the load faults and the process dies by SIGSEGV before anything uses the value.
    let v = unsafe { std::ptr::read_volatile(p) };
    unreachable!("read {v} from a null pointer")
}

/// An integer division by zero in the CPU (x86-64 `div` traps with #DE, delivered as SIGFPE);
/// Rust's own `/` would panic first, so the instruction is written out.
#[cfg(target_arch = "x86_64")]
fn fpe() -> ! {
    let divisor: u64 = std::hint::black_box(0);
    // SAFETY: the test-only fault: `div` with a zero divisor traps before writing any
    // register; rax/rdx are declared clobbered and nothing else is touched.
    unsafe {
        std::arch::asm!("div {d}", d = in(reg) divisor, inout("rax") 1u64 => _, inout("rdx") 0u64 => _);
    }
    unreachable!("divided by zero without a trap")
}

/// Elsewhere (aarch64 does not trap on division by zero) the signal is raised by the process.
#[cfg(not(target_arch = "x86_64"))]
fn fpe() -> ! {
    // SAFETY: raising a signal at ourselves.
    unsafe {
        libc::raise(libc::SIGFPE);
    }
    unreachable!("SIGFPE returned")
}
