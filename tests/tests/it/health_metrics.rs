//! The stats server's HTTP routes (issue 15): `/health`, `/livez` and `/readyz` answer 200 while
//! the instance serves and readiness turns 503 once it is paused or stopping; `/metrics` is
//! Prometheus text that two real parsers accept: `prometheus_client`'s
//! `text_string_to_metric_families` (PyPI) and `promtool check metrics` (Debian's `prometheus`),
//! both installed by tests/run.sh. Without CI=true a missing parser skips its check, saying so;
//! under CI=true it fails the test.

use crate::chan;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use chan::*;
use serde_json::Value;
use uwsgi_tests::*;

/// One HTTP/1.0 request to the stats server: status, head, body.
fn stats_get(addr: &str, path: &str) -> Option<(u16, String, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: probe\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, head.to_string(), body.to_string()))
}

/// Poll `path` until it answers `code`; returns the JSON body.
fn wait_code(d: &Daemon, addr: &str, path: &str, code: u16) -> Value {
    wait_for(
        &format!("{path} answering {code}"),
        Duration::from_secs(20),
        || {
            d.assert_alive();
            let (c, _, body) = stats_get(addr, path)?;
            (c == code).then(|| serde_json::from_str(&body).expect("a JSON health body"))
        },
    )
}

fn start(dir: &TestDir, extra: &[&str]) -> (Daemon, String) {
    let stats = format!("127.0.0.1:{}", free_port());
    let mut args = harness_args(dir);
    args.extend(["--stats", &stats, "--stats-http"].map(String::from));
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut d = spawn_custom(dir, &args);
    let record = common::discovery::read_record(&d.pidfile).expect("the instance record");
    d.addr = record.listeners[0].clone();
    (d, stats)
}

fn required(what: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{what} is missing (tests/run.sh installs it)"
    );
    eprintln!("skipping the {what} check: not installed (tests/run.sh installs it)");
}

#[test]
fn health_is_200_while_serving_and_readiness_503_while_paused_or_stopping() {
    let dir = TestDir::new("health");
    let (mut d, stats) = start(&dir, &["--processes", "2"]);
    let body = wait_code(&d, &stats, "/health", 200);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["state"], "running");
    assert_eq!(body["generation"], 1);
    assert!(body["workers_ready"].as_u64() >= Some(1), "{body}");
    assert_eq!(wait_code(&d, &stats, "/readyz", 200)["state"], "running");
    assert_eq!(wait_code(&d, &stats, "/livez", 200)["status"], "ok");
    // Any other path is still the stats document.
    let (code, head, doc) = stats_get(&stats, "/").unwrap();
    assert_eq!(code, 200);
    assert!(head.contains("application/json"), "{head}");
    assert!(common::stats::parse(&doc).is_ok());

    d.fifo_write(b"h");
    let body = wait_code(&d, &stats, "/health", 503);
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["state"], "paused");
    assert_eq!(body["generation"], 1);
    assert_eq!(wait_code(&d, &stats, "/readyz", 503)["state"], "paused");
    // Liveness stays up: a paused instance must not be restarted.
    assert_eq!(wait_code(&d, &stats, "/livez", 200)["state"], "paused");
    d.fifo_write(b"u");
    assert_eq!(wait_code(&d, &stats, "/health", 200)["state"], "running");

    // A graceful stop with a request in flight: readiness is 503 while it drains.
    let addr = d.addr.clone();
    let slow = std::thread::spawn(move || http_get(&addr, "/sleep?ms=3000"));
    wait_for("the request in flight", Duration::from_secs(10), || {
        let (_, _, doc) = stats_get(&stats, "/")?;
        let doc: Value = serde_json::from_str(&doc).ok()?;
        workers(&doc)
            .iter()
            .any(|w| w["status"] == "busy")
            .then_some(())
    });
    d.fifo_write(b"q");
    let body = wait_code(&d, &stats, "/health", 503);
    assert_eq!(body["state"], "stopping");
    assert_eq!(slow.join().unwrap().unwrap().0, 200);
    assert!(d.wait_exit(Duration::from_secs(20)).success());
}

const PY_PARSE: &str = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
names = {}
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        names.setdefault(fam.name + " " + fam.type, []).append((s.name, dict(s.labels), s.value))
for k in sorted(names):
    print(k, len(names[k]))
"#;

#[test]
fn metrics_parse_with_prometheus_client_and_promtool() {
    let dir = TestDir::new("metrics");
    let (d, stats) = start(&dir, &["--processes", "2"]);
    wait_code(&d, &stats, "/health", 200);
    for _ in 0..3 {
        assert_eq!(d.get("/").unwrap().0, 200);
    }
    let (code, head, text) = wait_for(
        "metrics counting 3 requests",
        Duration::from_secs(20),
        || {
            let r = stats_get(&stats, "/metrics")?;
            // PSS is read within a budget per scrape: every process has one after a few.
            (r.2.lines().any(|l| l == "uwsgid_requests_total 3")
                && r.2.contains("uwsgid_proportional_memory_bytes "))
            .then_some(r)
        },
    );
    assert_eq!(code, 200);
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    for line in [
        "uwsgid_state{state=\"running\"} 1",
        "uwsgid_generation 1",
        "uwsgid_workers{state=\"ready\"} 2",
        "uwsgid_processes 2",
        "uwsgid_reload_in_progress 0",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    for prefix in [
        "uwsgid_uptime_seconds ",
        "uwsgid_master_resident_memory_bytes ",
        "uwsgid_worker_resident_memory_bytes{worker=\"1\"} ",
        "uwsgid_socket_listen_queue_max{socket=",
        "uwsgid_master_proportional_memory_bytes ",
        "uwsgid_worker_proportional_memory_bytes{worker=\"1\"} ",
        "uwsgid_worker_proportional_memory_bytes{worker=\"2\"} ",
    ] {
        assert!(text.contains(prefix), "no {prefix:?} in\n{text}");
    }
    // PSS: more than 0, and the instance's sum is the master's and the workers' values.
    let value = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };
    let parts = [
        "uwsgid_master_proportional_memory_bytes",
        "uwsgid_worker_proportional_memory_bytes{worker=\"1\"}",
        "uwsgid_worker_proportional_memory_bytes{worker=\"2\"}",
    ];
    assert!(parts.iter().all(|p| value(p) > 0), "{text}");
    assert_eq!(
        value("uwsgid_proportional_memory_bytes"),
        parts.iter().map(|p| value(p)).sum::<u64>()
    );

    // prometheus_client's parser.
    let py = Command::new("python3")
        .args(["-c", "import prometheus_client.parser"])
        .output();
    if py.is_ok_and(|o| o.status.success()) {
        let mut child = Command::new("python3")
            .args(["-c", PY_PARSE])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "prometheus_client refused the page: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The client strips `_total` from counter family names.
        for fam in [
            "uwsgid_requests counter 1",
            "uwsgid_worker_requests counter 2",
            "uwsgid_workers gauge 5",
            "uwsgid_state gauge 5",
        ] {
            assert!(stdout.lines().any(|l| l == fam), "no {fam:?} in\n{stdout}");
        }
    } else {
        required("python3 prometheus_client");
    }

    // promtool: parses and lints (names, types, _total suffixes, HELP lines).
    match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(mut child) => {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "promtool check metrics: {}{}\n{text}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Err(_) => required("promtool"),
    }
}

#[test]
fn metrics_count_reloads_by_kind_and_result_across_re_execs() {
    let dir = TestDir::new("metrics-reloads");
    let (d, stats) = start(&dir, &["--processes", "1"]);
    let metrics_with = |line: &str| {
        wait_for(line, Duration::from_secs(20), || {
            let r = stats_get(&stats, "/metrics")?;
            r.2.lines().any(|l| l == line).then_some(r.2)
        })
    };
    metrics_with("uwsgid_workers{state=\"ready\"} 1");
    d.fifo_write(b"w");
    metrics_with("uwsgid_reload_duration_seconds_count 1");
    // A re-exec carries the counts; it is counted itself once it completes.
    d.fifo_write(b"r");
    let text = metrics_with("uwsgid_reload_duration_seconds_count 2");
    for line in [
        "uwsgid_reloads_total{kind=\"workers\",result=\"complete\"} 1",
        "uwsgid_reloads_total{kind=\"graceful\",result=\"complete\"} 1",
        "uwsgid_reload_duration_seconds_bucket{le=\"+Inf\"} 2",
        "# TYPE uwsgid_reload_duration_seconds histogram",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    // A worker that dies is respawned, and counted by cause (soon after its start it is a
    // failed start, later a death).
    let doc: Value = serde_json::from_str(&stats_get(&stats, "/").unwrap().2).unwrap();
    let pid = doc["workers"][0]["pid"].as_i64().unwrap() as i32;
    // SAFETY: killing a worker of the instance we started, by its pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    wait_for("a respawn counted", Duration::from_secs(20), || {
        let r = stats_get(&stats, "/metrics")?;
        r.2.lines()
            .any(|l| {
                l == "uwsgid_respawns_by_cause_total{cause=\"died\"} 1"
                    || l == "uwsgid_respawns_by_cause_total{cause=\"failed_start\"} 1"
            })
            .then_some(())
    });
    drop(d);
}
