//! The files in `contrib/` (issue 15): each is checked for what can be checked on this machine.
//! Shell scripts pass `sh -n`; XML is well-formed (`xmllint`; the SMF DTD is not shipped on
//! Linux, so the manifest's required elements and their DTD order are checked by hand); the
//! plist loads with `plistlib`; systemd units pass `systemd-analyze verify` (with the binaries'
//! paths pointed at the built ones) and name the keys a graceful stop and reload need; the
//! Kubernetes manifests parse as YAML and their probes, ports and grace period agree with the
//! image's configuration. Every uwsgid command line in these files runs `--check-config` with
//! the real binary (paths moved into a temp dir), and every uwsgictl command line parses with
//! uwsgictl's own definition. Under CI=true a missing tool fails; otherwise its check is
//! skipped with a message.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use uwsgi_tests::*;

fn contrib(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../contrib")
        .join(p)
}

fn read(p: &str) -> String {
    std::fs::read_to_string(contrib(p)).unwrap_or_else(|e| panic!("contrib/{p}: {e}"))
}

/// Whether `tool` runs; under CI=true its absence fails the test.
fn have(tool: &str, probe: &[&str]) -> bool {
    let ok = Command::new(tool)
        .args(probe)
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{tool} is missing (tests/run.sh installs it)"
        );
        eprintln!("skipping the {tool} check: not installed (tests/run.sh installs it)");
    }
    ok
}

fn python(script: &str, arg: &Path) -> Value {
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(arg)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}: {}",
        arg.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The init files' paths moved into `dir`: configuration, logs, runtime files.
fn relocate(dir: &TestDir, word: &str) -> String {
    let ini = dir.join("app.ini");
    let log = dir.join("log/app.log");
    let mut w = word.trim_matches(|c| c == '"' || c == '\'').to_string();
    // Longest first: /etc/uwsgid/app.ini is inside /usr/local/etc/uwsgid/app.ini.
    for from in [
        "/usr/local/etc/uwsgid/app.ini",
        "/etc/uwsgid/%i.ini",
        "/etc/uwsgid/app.ini",
        "/etc/uwsgid/uwsgid.ini",
        "${uwsgid_ini}",
        "$INI",
    ] {
        w = w.replace(from, ini.to_str().unwrap());
    }
    for from in [
        "/usr/local/var/log/uwsgid/app.log",
        "/var/log/uwsgid/%i.log",
        "/var/log/uwsgid/app.log",
        "${uwsgid_log}",
        "$LOG",
    ] {
        w = w.replace(from, log.to_str().unwrap());
    }
    w.replace("$STOP_TIMEOUT", "90")
}

/// A copy of an ini file with its runtime paths in `dir`, at `dir/app.ini`.
fn relocated_ini(dir: &TestDir, ini: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("log")).unwrap();
    let text = read(ini).replace("/run/uwsgid/app/", &format!("{}/", dir.path.display()));
    let text = text.replace("/run/uwsgid/", &format!("{}/", dir.path.display()));
    dir.write("app.ini", &text)
}

/// The command lines in a text file that start with one of `programs`, cut at the shell's
/// redirections and operators.
fn command_lines(text: &str, programs: &[&str]) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        for p in programs {
            let Some(at) = line.find(p) else { continue };
            // Only where a command starts: not `DAEMON=/usr/bin/uwsgid` or `[ -x "$DAEMON" ]`.
            let before = line[..at].trim_end();
            let starts = ["if", "!", "then", "exec", "ExecStart=", "exec=\""];
            if !before.is_empty() && !starts.iter().any(|s| before.ends_with(s)) {
                continue;
            }
            let rest = &line[at + p.len()..];
            if !rest.is_empty() && !rest.starts_with(' ') && !rest.starts_with('"') {
                continue;
            }
            let mut words = vec![p.to_string()];
            for w in rest.split_whitespace() {
                if w.starts_with('>') || w.starts_with("2>") || [";", "&&", "||"].contains(&w) {
                    break;
                }
                words.push(w.trim_end_matches('"').to_string());
            }
            words.retain(|w| !w.is_empty() && w != "\"");
            found.push(words);
        }
    }
    found
}

/// Run a uwsgid command line (program word first) with `--check-config`.
fn check_uwsgid(dir: &TestDir, file: &str, words: &[String]) {
    let args: Vec<String> = words[1..].iter().map(|w| relocate(dir, w)).collect();
    let mut cmd = Command::new(bin("uwsgid"));
    cmd.args(&args);
    if !args.iter().any(|a| a == "--check-config") {
        cmd.arg("--check-config");
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "contrib/{file}: uwsgid {args:?} --check-config: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Parse a uwsgictl command line with uwsgictl's definition.
fn check_uwsgictl(dir: &TestDir, file: &str, words: &[String]) {
    let args: Vec<String> = std::iter::once("uwsgictl".to_string())
        .chain(words[1..].iter().map(|w| relocate(dir, w)))
        .collect();
    if let Err(e) = uwsgictl::cli::command().try_get_matches_from(&args) {
        panic!("contrib/{file}: {args:?}: {e}");
    }
}

/// Check every uwsgid and uwsgictl command line of a text file; returns how many.
fn check_commands(file: &str, ini: &str, uwsgid: &[&str], ctl: &[&str]) -> usize {
    let dir = TestDir::new(&format!("contrib-{}", file.replace('/', "-")));
    relocated_ini(&dir, ini);
    let text = read(file);
    let mut n = 0;
    for words in command_lines(&text, uwsgid) {
        check_uwsgid(&dir, file, &words);
        n += 1;
    }
    for words in command_lines(&text, ctl) {
        check_uwsgictl(&dir, file, &words);
        n += 1;
    }
    n
}

/// `KEY=VALUE` lines of one section of a systemd unit.
fn unit_section(text: &str, section: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == format!("[{section}]");
        } else if inside && !line.is_empty() && !line.starts_with('#') {
            let (k, v) = line.split_once('=').expect("KEY=VALUE");
            out.push((k.to_string(), v.to_string()));
        }
    }
    out
}

fn key<'a>(kv: &'a [(String, String)], k: &str) -> &'a str {
    kv.iter()
        .find(|(key, _)| key == k)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {k}="))
}

/// The ini's worker reload mercy, in seconds.
fn mercy(ini: &str) -> u64 {
    read(ini)
        .lines()
        .find_map(|l| l.strip_prefix("worker-reload-mercy = "))
        .expect("worker-reload-mercy set")
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn example_configurations_pass_check_config() {
    for ini in ["uwsgid.ini", "docker/uwsgid.ini"] {
        let dir = TestDir::new("contrib-ini");
        let path = relocated_ini(&dir, ini);
        for forbidden in ["die-on-term", "daemonize"] {
            assert!(
                !read(ini)
                    .lines()
                    .any(|l| l.trim_start().starts_with(forbidden)),
                "contrib/{ini} sets {forbidden}, which the init files pass"
            );
        }
        let words = vec!["uwsgid".into(), "--ini".into(), path.display().to_string()];
        check_uwsgid(&dir, ini, &words);
    }
}

#[test]
fn systemd_units_verify_and_stop_and_reload_gracefully() {
    let service = read("systemd/uwsgid@.service");
    let s = unit_section(&service, "Service");
    assert_eq!(key(&s, "Type"), "notify-reload");
    assert_eq!(key(&s, "KillMode"), "mixed");
    assert_eq!(key(&s, "KillSignal"), "SIGTERM");
    assert_eq!(key(&s, "ReloadSignal"), "SIGHUP");
    assert_eq!(key(&s, "NotifyAccess"), "main");
    assert!(key(&s, "ExecStart").contains("--die-on-term"));
    let stop: u64 = key(&s, "TimeoutStopSec").parse().unwrap();
    assert!(
        stop > mercy("uwsgid.ini"),
        "TimeoutStopSec {stop} within the mercy"
    );
    let socket = read("systemd/uwsgid@.socket");
    let k = unit_section(&socket, "Socket");
    assert_eq!(key(&k, "Service"), "uwsgid@%i.service");
    key(&k, "ListenStream");
    assert_eq!(
        check_commands(
            "systemd/uwsgid@.service",
            "uwsgid.ini",
            &["/usr/bin/uwsgid"],
            &[]
        ),
        1
    );

    if !have("systemd-analyze", &["--version"]) {
        return;
    }
    let dir = TestDir::new("contrib-systemd");
    let exe = bin("uwsgid");
    dir.write(
        "uwsgid@test.service",
        &service.replace("/usr/bin/uwsgid", exe.to_str().unwrap()),
    );
    dir.write("uwsgid@test.socket", &socket);
    let version = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .unwrap();
    let version: u32 = String::from_utf8_lossy(&version.stdout)
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    for unit in ["uwsgid@test.service", "uwsgid@test.socket"] {
        let out = Command::new("systemd-analyze")
            // The man pages are in man/, not installed: Documentation= is not looked up.
            .args(["verify", "--man=no"])
            .arg(dir.join(unit))
            .current_dir(&dir.path)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // Systemd before 253 does not know notify-reload (the unit says what to use there).
        let problems: Vec<&str> = text
            .lines()
            .filter(|l| !(version < 253 && l.contains("notify-reload")))
            .filter(|l| !(version < 253 && l.contains("ReloadSignal")))
            .collect();
        assert!(
            out.status.success() && problems.is_empty(),
            "systemd-analyze verify {unit} (systemd {version}):\n{text}"
        );
    }
}

#[test]
fn init_scripts_are_valid_sh_and_their_commands_exist() {
    for script in ["sysvinit/uwsgid", "openrc/uwsgid"] {
        let out = Command::new("sh")
            .arg("-n")
            .arg(contrib(script))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "sh -n contrib/{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(contrib(script))
            .unwrap()
            .permissions()
            .mode();
        assert!(mode & 0o111 != 0, "contrib/{script} is not executable");
    }
    let sysv = read("sysvinit/uwsgid");
    assert!(sysv.contains("### BEGIN INIT INFO") && sysv.contains("### END INIT INFO"));
    for action in [
        "start)",
        "stop)",
        "reload|force-reload)",
        "restart)",
        "status)",
    ] {
        assert!(sysv.contains(action), "sysvinit script lacks {action}");
    }
    assert!(sysv.contains("DAEMON=/usr/bin/uwsgid") && sysv.contains("CTL=/usr/bin/uwsgictl"));
    // start, and uwsgictl's status, stop, status, reload, status.
    let n = check_commands(
        "sysvinit/uwsgid",
        "uwsgid.ini",
        &["\"$DAEMON\""],
        &["\"$CTL\""],
    );
    assert_eq!(n, 6, "command lines found in the sysvinit script");

    let openrc = read("openrc/uwsgid");
    assert!(openrc.starts_with("#!/sbin/openrc-run\n"));
    assert!(openrc.contains("command=/usr/bin/uwsgid\n"));
    assert!(openrc.contains("retry=\"TERM/90/KILL/5\""));
    let args = openrc
        .lines()
        .find_map(|l| l.strip_prefix("command_args=\""))
        .expect("command_args")
        .trim_end_matches('"');
    let dir = TestDir::new("contrib-openrc");
    relocated_ini(&dir, "uwsgid.ini");
    let mut words = vec!["uwsgid".to_string()];
    words.extend(args.split_whitespace().map(String::from));
    check_uwsgid(&dir, "openrc/uwsgid", &words);
    let n = check_commands(
        "openrc/uwsgid",
        "uwsgid.ini",
        &["/usr/bin/uwsgid"],
        &["/usr/bin/uwsgictl"],
    );
    // --check-config in start_pre, reload.
    assert_eq!(n, 2, "command lines found in the OpenRC script");
}

#[test]
fn upstart_job_runs_uwsgid_in_the_foreground_with_graceful_signals() {
    let job = read("upstart/uwsgid.conf");
    let stanzas: Vec<&str> = job
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for s in [
        "respawn",
        "kill signal TERM",
        "reload signal HUP",
        "start on runlevel [2345]",
        "stop on runlevel [!2345]",
    ] {
        assert!(stanzas.contains(&s), "no {s:?} stanza");
    }
    assert!(
        !stanzas.iter().any(|s| s.starts_with("expect ")),
        "uwsgid does not fork"
    );
    let timeout: u64 = stanzas
        .iter()
        .find_map(|s| s.strip_prefix("kill timeout "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(timeout > mercy("uwsgid.ini"));
    let known = [
        "description",
        "start",
        "stop",
        "respawn",
        "kill",
        "reload",
        "exec",
    ];
    for s in &stanzas {
        let first = s.split_whitespace().next().unwrap();
        assert!(known.contains(&first), "unexpected stanza {s:?}");
    }
    assert!(stanzas
        .iter()
        .any(|s| s.starts_with("exec /usr/bin/uwsgid ") && s.contains("--die-on-term")));
    assert_eq!(
        check_commands(
            "upstart/uwsgid.conf",
            "uwsgid.ini",
            &["/usr/bin/uwsgid"],
            &[]
        ),
        1
    );
}

const PLIST: &str = r#"
import json, plistlib, sys
with open(sys.argv[1], "rb") as f:
    print(json.dumps(plistlib.load(f)))
"#;

#[test]
fn launchd_plist_is_well_formed_and_runs_uwsgid() {
    let path = contrib("launchd/org.uwsgid.app.plist");
    if have("xmllint", &["--version"]) {
        let out = Command::new("xmllint")
            .args(["--noout", "--nonet"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let p = python(PLIST, &path);
    assert_eq!(p["Label"], "org.uwsgid.app");
    assert_eq!(p["RunAtLoad"], true);
    assert_eq!(p["KeepAlive"]["SuccessfulExit"], false);
    assert!(p["ExitTimeOut"].as_u64().unwrap() > mercy("uwsgid.ini"));
    let words: Vec<String> = p["ProgramArguments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(words[0], "/usr/local/bin/uwsgid");
    assert!(words.contains(&"--die-on-term".to_string()));
    let dir = TestDir::new("contrib-launchd");
    relocated_ini(&dir, "uwsgid.ini");
    check_uwsgid(&dir, "launchd/org.uwsgid.app.plist", &words);
}

const SMF: &str = r#"
import json, sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
def el(e):
    return {"tag": e.tag, "attrib": e.attrib, "children": [el(c) for c in e]}
print(json.dumps(el(root)))
"#;

#[test]
fn smf_manifest_is_well_formed_with_the_required_elements_in_dtd_order() {
    let path = contrib("smf/uwsgid.xml");
    if have("xmllint", &["--version"]) {
        let out = Command::new("xmllint")
            .args(["--noout", "--nonet"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let root = python(SMF, &path);
    assert_eq!(root["tag"], "service_bundle");
    assert_eq!(root["attrib"]["type"], "manifest");
    let service = &root["children"][0];
    assert_eq!(service["tag"], "service");
    assert_eq!(service["attrib"]["type"], "service");
    let children = service["children"].as_array().unwrap();
    // The DTD's content model of <service>, in order.
    let order = [
        "create_default_instance",
        "single_instance",
        "restarter",
        "dependency",
        "dependent",
        "method_context",
        "exec_method",
        "property_group",
        "instance",
        "stability",
        "template",
    ];
    let ranks: Vec<usize> = children
        .iter()
        .map(|c| {
            let tag = c["tag"].as_str().unwrap();
            order
                .iter()
                .position(|o| *o == tag)
                .unwrap_or_else(|| panic!("<{tag}> is not allowed in <service>"))
        })
        .collect();
    assert!(
        ranks.windows(2).all(|w| w[0] <= w[1]),
        "elements out of DTD order: {ranks:?}"
    );
    let methods: Vec<(&str, &str)> = children
        .iter()
        .filter(|c| c["tag"] == "exec_method")
        .map(|c| {
            assert!(c["attrib"]["timeout_seconds"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .is_ok());
            (
                c["attrib"]["name"].as_str().unwrap(),
                c["attrib"]["exec"].as_str().unwrap(),
            )
        })
        .collect();
    let names: Vec<&str> = methods.iter().map(|m| m.0).collect();
    assert_eq!(names, ["start", "stop", "refresh"]);
    assert!(children.iter().any(|c| c["tag"] == "instance"));
    let dir = TestDir::new("contrib-smf");
    relocated_ini(&dir, "uwsgid.ini");
    for (name, exec) in &methods {
        let words: Vec<String> = exec.split_whitespace().map(String::from).collect();
        match words[0].as_str() {
            "/usr/bin/uwsgid" => check_uwsgid(&dir, "smf/uwsgid.xml", &words),
            "/usr/bin/uwsgictl" => check_uwsgictl(&dir, "smf/uwsgid.xml", &words),
            other => panic!("{name} runs {other}"),
        }
    }
}

#[test]
fn dockerfile_builds_both_binaries_and_stops_gracefully() {
    let text = read("docker/Dockerfile");
    let instructions: Vec<(&str, &str)> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split_once(' ').expect("INSTRUCTION args"))
        .collect();
    let known = [
        "FROM",
        "WORKDIR",
        "COPY",
        "RUN",
        "EXPOSE",
        "STOPSIGNAL",
        "HEALTHCHECK",
        "ENTRYPOINT",
    ];
    for (i, _) in &instructions {
        assert!(known.contains(i), "unexpected instruction {i}");
    }
    let all = |name: &str| -> Vec<&str> {
        instructions
            .iter()
            .filter(|(i, _)| *i == name)
            .map(|(_, a)| *a)
            .collect()
    };
    assert_eq!(all("FROM").len(), 2, "a build stage and a runtime stage");
    assert_eq!(all("STOPSIGNAL"), ["SIGTERM"]);
    assert_eq!(all("EXPOSE"), ["8000 9191"]);
    assert!(all("RUN")[0].contains("-p uwsgid -p uwsgictl"));
    // What is copied from the build context exists in the repository.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for c in all("COPY").iter().filter(|c| !c.starts_with("--from")) {
        let src = c.split_whitespace().next().unwrap();
        assert!(root.join(src).exists(), "COPY {src}: not in the repository");
    }
    let dir = TestDir::new("contrib-docker");
    relocated_ini(&dir, "docker/uwsgid.ini");
    let entry: Vec<String> = serde_json::from_str(all("ENTRYPOINT")[0]).unwrap();
    assert_eq!(entry[0], "/usr/local/bin/uwsgid");
    assert!(entry.contains(&"--die-on-term".to_string()));
    check_uwsgid(&dir, "docker/Dockerfile", &entry);
    let health = all("HEALTHCHECK")[0];
    let cmd: Vec<String> = serde_json::from_str(health.split_once("CMD ").unwrap().1).unwrap();
    assert_eq!(cmd[0], "/usr/local/bin/uwsgictl");
    check_uwsgictl(&dir, "docker/Dockerfile", &cmd);
    assert!(read("docker/Dockerfile.dockerignore")
        .lines()
        .any(|l| l == "target/"));
}

const YAML: &str = r#"
import json, sys, yaml
with open(sys.argv[1]) as f:
    print(json.dumps(list(yaml.safe_load_all(f))))
"#;

#[test]
fn kubernetes_manifests_probe_the_health_routes_and_outlast_the_mercy() {
    let path = contrib("kubernetes/deployment.yaml");
    let docs = if have("python3", &["-c", "import yaml"]) {
        python(YAML, &path)
    } else {
        return;
    };
    let docs = docs.as_array().unwrap();
    let deploy = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let service = docs.iter().find(|d| d["kind"] == "Service").unwrap();
    assert_eq!(deploy["apiVersion"], "apps/v1");
    let labels = &deploy["spec"]["template"]["metadata"]["labels"];
    assert_eq!(&deploy["spec"]["selector"]["matchLabels"], labels);
    assert_eq!(&service["spec"]["selector"], labels);
    let pod = &deploy["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let ports: Vec<(String, u64)> = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["containerPort"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        [("http".to_string(), 8000), ("stats".to_string(), 9191)]
    );
    let ini = read("docker/uwsgid.ini");
    assert!(ini.contains("http-socket = 0.0.0.0:8000"));
    assert!(ini.contains("stats = 0.0.0.0:9191") && ini.contains("stats-http = true"));
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/livez");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["startupProbe"]["httpGet"]["path"], "/readyz");
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        assert_eq!(c[probe]["httpGet"]["port"], "stats", "{probe}");
    }
    // The routes the probes use are the stats server's.
    for p in ["/livez", "/readyz"] {
        let route =
            uwsgid::stats_server::Route::of_request(format!("GET {p} HTTP/1.1\r\n").as_bytes());
        assert_ne!(route, uwsgid::stats_server::Route::Stats, "{p}");
    }
    let pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .unwrap();
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    let mercy = mercy("docker/uwsgid.ini");
    assert!(
        grace > pre_stop + mercy,
        "terminationGracePeriodSeconds {grace} <= preStop {pre_stop} + mercy {mercy}"
    );
    assert_eq!(
        deploy["spec"]["template"]["metadata"]["annotations"]["prometheus.io/path"],
        "/metrics"
    );
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "http");
}

#[test]
fn the_readme_covers_every_file() {
    let readme = read("README.md");
    for f in [
        "uwsgid.ini",
        "systemd/uwsgid@.service",
        "systemd/uwsgid@.socket",
        "upstart/uwsgid.conf",
        "launchd/org.uwsgid.app.plist",
        "smf/uwsgid.xml",
        "sysvinit/uwsgid",
        "openrc/uwsgid",
        "docker/Dockerfile",
        "docker/uwsgid.ini",
        "kubernetes/deployment.yaml",
    ] {
        assert!(contrib(f).exists(), "contrib/{f} is missing");
        assert!(readme.contains(f), "contrib/README.md does not mention {f}");
    }
}
