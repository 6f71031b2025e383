//! `man/uwsgid.8` and uwsgid's shell completions are exactly what its clap definition and
//! `common`'s tables generate now. Regenerate with
//! `UWSGI_REGENERATE=1 cargo test -p uwsgi-tests generated` and commit the result.

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use uwsgictl::gen::{self, ManSection};

fn uwsgid_sections() -> Vec<ManSection> {
    vec![
        ManSection::new("DEFAULT INSTANCE").para(
            "With no arguments uwsgid serves its default page on 127.0.0.1:8000 with 4 \
                 workers (fewer when its cgroup's CPU quota or its CPU affinity allows fewer \
                 CPUs; the log says which), and keeps its pidfile (uwsgid.pid), master FIFO (master.fifo) and \
                 stats socket (stats.sock) in RUNTIME/default/, which it prints at startup. \
                 --name NAME does the same under RUNTIME/NAME/. RUNTIME is $UWSGID_RUNTIME_DIR, \
                 else $XDG_RUNTIME_DIR/uwsgid, else /tmp/uwsgid-UID.",
        ),
        ManSection::new("SECURITY")
            .para(
                "Nothing uwsgid uses comes from a place another user controls. RUNTIME and \
                 RUNTIME/NAME are created mode 0700 whatever the umask, and used only if each \
                 is a directory owned by the effective uid with neither the group nor the \
                 other write bit; RUNTIME may be a symlink only if the link is ours too, \
                 RUNTIME/NAME may not be one. Otherwise startup stops before anything is bound, \
                 naming the path, its owner and mode, and the fix (remove it, or set \
                 UWSGID_RUNTIME_DIR to a private directory).",
            )
            .para(
                "An existing --master-fifo is adopted only if it is a FIFO owned by the \
                 effective uid that group and others cannot write (whoever can write it can \
                 stop the instance); a symlink is refused, and the FIFO is opened with \
                 O_NOFOLLOW and checked to be the inode that was checked. A new one is created \
                 mode 0600. PIDFILE.lock must be ours: one owned by another user is refused \
                 (it could be held to block every start). Temporary files for the atomic \
                 pidfile and record writes have unpredictable names and are created O_EXCL; a \
                 file planted beside the pidfile is never used or removed.",
            ),
        gen::signals_section(),
        gen::fifo_section(),
        ManSection::new("PAUSE").para(
            "SIGTSTP and FIFO p toggle pause: the workers stop accepting (new connections wait \
                 in the listen backlog) and finish their open connections; the next toggle \
                 resumes. Like any signal, SIGTSTPs that arrive before the master has read the \
                 first merge into one (the kernel keeps at most one pending), so two sent back \
                 to back may toggle once and leave the instance paused. To set the state rather \
                 than toggle it, write FIFO h (pause) or u (resume), which do nothing when the \
                 instance is already in that state, or use uwsgictl pause and uwsgictl resume.",
        ),
        ManSection::new("RELOADS")
            .para(
                "A graceful reload (SIGHUP, FIFO r, --touch-reload) first runs the binary on \
                 disk with --check-config; if that fails the instance keeps serving and the \
                 reason is logged and shown in stats (uwsgid.last_error). Otherwise the master \
                 re-executes itself in place: same pid, same listening sockets, same FIFO and \
                 stats socket. New workers are started first; each old worker is told to stop \
                 (SIGHUP: finish the requests in flight, then exit) only once its slot's new \
                 worker is ready, and is killed after --worker-reload-mercy seconds. New \
                 connections are never refused.",
            )
            .para(
                "A brutal reload (SIGTERM, FIFO R) kills the old workers at once. A workers \
                 reload (FIFO w, W, --touch-workers-reload) replaces the workers without \
                 re-executing the master. A chain reload (FIFO c, --touch-chain-reload) replaces \
                 one worker at a time, the next only once the previous replacement is ready; a \
                 replacement that fails to start stops the chain and leaves the remaining old \
                 workers serving.",
            )
            .para(
                "A reload is complete when every worker slot holds a ready worker of the new \
                 generation and no older worker is alive; stats show it as uwsgid.last_reload \
                 with result complete or failed. uwsgictl reload --wait waits for exactly that.",
            ),
        ManSection::new("PIDFILE").para(
            "--safe-pidfile and --pidfile are written once the listeners are bound and the \
                 first workers started, atomically (a temporary file with a random name, then \
                 rename), mode 0644, never \
                 through a symlink, with an instance record PIDFILE.json beside it naming the \
                 FIFOs and stats address. PIDFILE.lock stays locked for the master's life, \
                 across re-exec: a second instance on the same pidfile refuses to start and \
                 touches nothing. The master removes it, still locked, when it exits (a \
                 starter locks only the file still at the path, so this cannot let two \
                 instances in).",
        ),
        ManSection::new("EXIT STATUS")
            .tagged("0", "stopped on request")
            .tagged(
                "1",
                "could not start (address in use, pidfile locked, ...) or failed at run time",
            )
            .tagged(
                "2",
                "bad option, value, address or ini file; nothing was bound or written",
            ),
        ManSection::new("EXAMPLES").literal(
            "uwsgid --http-socket :8000 --processes 4 --demo-routes \\\n    \
                 --safe-pidfile /run/app.pid --master-fifo /run/app.fifo --stats /run/app.stats\n\
                 uwsgictl reload --pidfile /run/app.pid --wait",
        ),
        ManSection::new("SEE ALSO").para("uwsgictl(1), uwsgi(1)"),
    ]
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

#[test]
fn generated_uwsgid_man_page_and_completions_are_fresh() {
    use clap_complete::Shell;
    let cmd = uwsgid::cli::Args::command;
    let files = vec![
        (
            PathBuf::from("man/uwsgid.8"),
            gen::render_man_section(cmd(), "8", &uwsgid_sections()),
        ),
        (
            PathBuf::from("completions/uwsgid.bash"),
            gen::completion(Shell::Bash, cmd()),
        ),
        (
            PathBuf::from("completions/_uwsgid"),
            gen::completion(Shell::Zsh, cmd()),
        ),
        (
            PathBuf::from("completions/uwsgid.fish"),
            gen::completion(Shell::Fish, cmd()),
        ),
    ];
    let regenerate = std::env::var("UWSGI_REGENERATE").is_ok_and(|v| v == "1");
    let stale = gen::check_generated(&root(), &files, regenerate);
    assert!(
        stale.is_empty(),
        "generated files are out of date: {stale:?}; regenerate them with \
         `UWSGI_REGENERATE=1 cargo test -p uwsgi-tests generated` and commit them"
    );
}
