//! Reload kinds compose (issue 10): any interleaving of `r R w W c` ends with exactly the
//! configured workers of the newest generation and no old worker left, and the table (hence
//! the handoff) stays bounded while the storm lasts. The pure core is driven the way the step
//! drives it; a re-exec is modelled by what `resume` does to the table and the reloads.

use std::time::{Duration, Instant};

use common::reload::ReloadKind;

use crate::master::reload::{Progress, Reload, Reloads};
use crate::master::table::tests::{add, table};
use crate::master::table::{Table, WorkerState};
use crate::master::Now;

const MERCY: Duration = Duration::from_secs(60);

struct Sim {
    t: Table,
    r: Reloads,
    g: u64,
    pid: i32,
    now: Instant,
    peak: usize,
}

impl Sim {
    fn new(slots: usize) -> Sim {
        let mut s = Sim {
            t: table(slots),
            r: Reloads::default(),
            g: 1,
            pid: 100,
            now: Instant::now(),
            peak: 0,
        };
        s.settle();
        s
    }

    fn at(&self) -> Now {
        Now {
            at: self.now,
            unix_ms: 1_000_000,
        }
    }

    /// What `Master::settle` does, with forks as table entries.
    fn settle(&mut self) {
        for (id, g) in self.t.missing(self.now) {
            self.pid += 1;
            add(&mut self.t, self.pid, id.get(), g, self.now);
        }
        for pid in self.t.replaced() {
            self.t.retire(pid, self.now, MERCY);
        }
        match self.r.progress(&mut self.t) {
            Progress::ChainNext { .. } => {
                for (id, g) in self.t.missing(self.now) {
                    self.pid += 1;
                    add(&mut self.t, self.pid, id.get(), g, self.now);
                }
            }
            Progress::Complete => {
                self.r.finish(true, "complete".into(), self.at());
            }
            Progress::Waiting => {}
        }
        self.peak = self.peak.max(self.t.workers.len());
    }

    fn command(&mut self, c: u8) {
        match c {
            // A re-exec: the new image adopts every worker and targets generation + 1.
            b'r' | b'R' => {
                if c == b'R' {
                    self.t.kill_where(|_| true);
                }
                self.g += 1;
                self.t.retarget_all(self.g);
                self.r.current = Some(Reload {
                    kind: ReloadKind::Graceful,
                    generation: self.g,
                    started: self.now,
                    started_unix_ms: 0,
                    chain_cursor: None,
                });
            }
            b'w' | b'W' | b'c' => {
                let kind = match c {
                    b'w' => ReloadKind::Workers,
                    b'W' => ReloadKind::BrutalWorkers,
                    _ => ReloadKind::Chain,
                };
                if kind == ReloadKind::Chain && self.r.chain_running() {
                    return;
                }
                self.g += 1;
                let g = self.g;
                let now = self.at();
                self.r.begin(kind, g, &mut self.t, now);
                if kind == ReloadKind::BrutalWorkers {
                    self.t.kill_where(|w| w.generation < g);
                }
            }
            _ => {}
        }
        self.settle();
    }

    /// Time passes: the oldest starting worker becomes ready, retired and killed ones exit.
    fn tick(&mut self, exits: bool) {
        self.now += Duration::from_millis(1);
        if let Some(pid) = self
            .t
            .workers
            .iter()
            .find(|w| w.is_starting())
            .map(|w| w.pid)
        {
            self.t.set_ready(pid, self.now);
        }
        if exits {
            let gone: Vec<i32> = self
                .t
                .workers
                .iter()
                .filter(|w| matches!(w.state, WorkerState::Draining { .. } | WorkerState::Killed))
                .map(|w| w.pid)
                .collect();
            for pid in gone {
                self.t.on_exit(pid, "exited", self.now, false);
            }
        }
        self.settle();
    }

    /// Let everything finish.
    fn quiesce(&mut self) {
        for _ in 0..100 {
            self.tick(true);
        }
    }

    fn assert_settled(&self, slots: usize) {
        assert_eq!(self.t.workers.len(), slots, "{:?}", self.t.workers);
        for w in &self.t.workers {
            assert_eq!(w.generation, self.g, "an old worker is left: {w:?}");
            assert!(w.is_ready(), "{w:?}");
        }
        assert!(self.t.complete(self.g));
        assert!(self.r.current.is_none(), "the last reload completed");
    }
}

#[test]
fn a_mixed_storm_ends_with_the_newest_generation_only() {
    for pattern in [
        &b"rwcs"[..],
        b"rw",
        b"wr",
        b"cr",
        b"rc",
        b"Wr",
        b"Rc",
        b"cwcr",
    ] {
        let mut s = Sim::new(2);
        s.quiesce();
        for i in 0..1000 {
            s.command(pattern[i % pattern.len()]);
            // Workers become ready slower than commands come; draining ones exit now and then.
            if i % 3 == 0 {
                s.tick(i % 6 == 0);
            }
        }
        assert!(
            s.peak <= 2 * 2 + 1000 / 6 * 3 + 8,
            "{:?}: the table grew to {}",
            pattern,
            s.peak
        );
        s.quiesce();
        s.assert_settled(2);
    }
}

#[test]
fn live_workers_per_slot_stay_bounded_while_reloads_outpace_readiness() {
    let mut s = Sim::new(2);
    s.quiesce();
    for i in 0..500 {
        s.command(b"rwc"[i % 3]);
        for id in s.t.slot_ids() {
            let live =
                s.t.workers
                    .iter()
                    .filter(|w| w.slot == id && w.alive_for_slot())
                    .count();
            assert!(
                live <= 2,
                "slot {id}: {live} live workers after command {i}"
            );
        }
    }
    // Nothing became ready and nothing exited: only the retired ones pile up, and they are
    // SIGKILLed at their deadline.
    s.now += MERCY;
    let killed = s.t.expire(s.now, None, Duration::from_secs(3600));
    assert!(!killed.is_empty());
    s.quiesce();
    s.assert_settled(2);
}

#[test]
fn any_random_interleaving_settles() {
    // A small deterministic generator: no dependency, same sequence every run.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..50 {
        let mut s = Sim::new(3);
        for _ in 0..200 {
            let c = b"rRwWc+s"[(next() % 7) as usize];
            s.command(c);
            match next() % 4 {
                0 => s.tick(true),
                1 => s.tick(false),
                _ => {}
            }
        }
        s.quiesce();
        s.assert_settled(3);
    }
}
