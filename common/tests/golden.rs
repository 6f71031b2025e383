//! The stats schema pinned by golden files: a uwsgid document with every field set must
//! serialize byte for byte as `tests/golden/stats-uwsgid.json` (regenerate with
//! `UWSGI_REGENERATE=1 cargo test -p uwsgi-common --test golden`), and real uWSGI 2.0.31
//! documents must parse and keep every key they had.

use std::collections::BTreeMap;
use std::path::Path;

use common::stats::*;

fn full_document() -> StatsDocument {
    let core = Core {
        id: 0,
        requests: 7,
        static_requests: 1,
        routed_requests: 0,
        offloaded_requests: 0,
        write_errors: 0,
        read_errors: 1,
        in_request: 1,
        vars: vec![
            "REQUEST_METHOD=GET".into(),
            "PATH_INFO=/sleep".into(),
            String::new(),
        ],
        req_info: BTreeMap::from([("request_start".to_string(), 1_795_590_346)]),
    };
    let worker = Worker {
        id: 1,
        pid: 27002,
        accepting: 1,
        requests: 7,
        delta_requests: 7,
        exceptions: 0,
        harakiri_count: 0,
        signals: 0,
        signal_queue: 0,
        status: "busy".into(),
        rss: 3_342_336,
        vsz: 10_485_760,
        running_time: 353,
        last_spawn: 1_795_590_346,
        respawn_count: 2,
        tx: 539,
        avg_rt: 50,
        apps: vec![App {
            requests: 7,
            ..App::default()
        }],
        cores: vec![core],
        uwsgid: Some(WorkerExt {
            generation: 3,
            ready: true,
            state: "ready".into(),
            status_text: Some("serving".into()),
            counters: "known".into(),
            failed_starts: 0,
            next_spawn_unix_ms: None,
            last_exit: Some("exited with status 0".into()),
            recycles: Recycles {
                harakiri: 1,
                max_requests: 2,
                ..Recycles::default()
            },
        }),
    };
    StatsDocument {
        version: "2.0.31-uwsgid".into(),
        listen_queue: 0,
        listen_queue_errors: 0,
        signal_queue: 0,
        load: 0,
        pid: 27001,
        uid: 1000,
        gid: 1000,
        cwd: "/srv/\"app\"".into(),
        locks: vec![BTreeMap::from([("user 0".to_string(), 0)])],
        sockets: vec![Socket {
            name: "127.0.0.1:8000".into(),
            proto: "http".into(),
            queue: 0,
            max_queue: 4096,
            shared: 0,
            can_offload: 0,
        }],
        workers: vec![worker],
        uwsgid: Some(Instance {
            version: "0.1.0".into(),
            state: "reloading".into(),
            paused: false,
            generation: 3,
            processes: 1,
            worker_kind: "builtin".into(),
            started_unix: 1_795_590_000,
            reload: Some(ReloadProgress {
                kind: common::reload::ReloadKind::Graceful,
                generation: 3,
                started_unix_ms: 1_795_590_346_000,
                ready: 1,
                total: 1,
                old_alive: 1,
            }),
            respawns_by_cause: [("died".to_string(), 1)].into_iter().collect(),
            reload_counts: common::stats::ReloadCounts {
                total: vec![("chain".into(), "failed".into(), 1)],
                buckets: vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0],
                duration_sum_seconds: 2.0,
            },
            last_reload: Some(ReloadOutcome {
                kind: common::reload::ReloadKind::Chain,
                generation: 2,
                result: common::reload::ReloadResult::Complete,
                reason: None,
                duration_ms: 11.5,
                finished_unix_ms: 1_795_590_300_000,
            }),
            last_error: Some("graceful reload refused: bad option".into()),
            snapshot: None,
            snapshot_detail: None,
            draining: vec![Draining {
                pid: 26990,
                generation: 2,
                id: 1,
                since_unix_ms: 1_795_590_346_010,
            }],
            fifo: vec!["/run/app.fifo".into()],
            fifo_slot: 0,
            zygotes: vec![Zygote {
                pid: 26995,
                generation: 3,
                state: "ready".into(),
            }],
            recycles: Recycles {
                harakiri: 1,
                max_requests: 4,
                reload_on_rss: 1,
                reload_on_pss: 0,
                max_worker_lifetime: 2,
            },
            cheaper: Some(common::stats::Cheaper {
                algo: "spare".into(),
                min: 1,
                max: 4,
                step: 1,
                overload: 3,
                active: 2,
                ready: 2,
            }),
        }),
    }
}

#[test]
fn the_uwsgid_document_matches_its_golden_file() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/stats-uwsgid.json");
    let mut text = serde_json::to_string_pretty(&full_document()).unwrap();
    text.push('\n');
    if std::env::var("UWSGI_REGENERATE").is_ok_and(|v| v == "1") {
        std::fs::write(&golden, &text).unwrap();
    }
    let expected = std::fs::read_to_string(&golden).unwrap_or_default();
    assert_eq!(
        text, expected,
        "the stats schema changed; if on purpose, regenerate with \
         `UWSGI_REGENERATE=1 cargo test -p uwsgi-common --test golden` and commit"
    );
    // And it reads back to the same value.
    assert_eq!(parse(&text).unwrap(), full_document());
}

#[test]
fn real_uwsgi_documents_parse_and_keep_every_key() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/uwsgi-2.0.31");
    for name in ["idle.raw.json", "busy-sleep.raw.json"] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        let doc = parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            doc.uwsgid.is_none(),
            "{name}: a uWSGI document has no uwsgid object"
        );
        assert!(!doc.workers.is_empty());
        let original: serde_json::Value = serde_json::from_str(&text).unwrap();
        let again = serde_json::to_value(&doc).unwrap();
        let keys = |v: &serde_json::Value| -> Vec<String> {
            v.as_object().unwrap().keys().cloned().collect()
        };
        assert_eq!(keys(&original), keys(&again), "{name}: top-level keys");
        assert_eq!(
            keys(&original["workers"][0]),
            keys(&again["workers"][0]),
            "{name}: worker keys"
        );
        assert_eq!(
            keys(&original["workers"][0]["cores"][0]),
            keys(&again["workers"][0]["cores"][0]),
            "{name}: core keys"
        );
    }
}
