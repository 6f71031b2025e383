//! [`Nginx`]: a real nginx (apt `nginx`) in front of an instance under test, started in the
//! test's directory on a loopback port as a foreground process (`nginx -p DIR -c CONF -g
//! 'daemon off;'`), ended by its pid. Its configuration is written by the test: `uwsgi_pass`
//! to the upstream with `include uwsgi_params` (the file nginx ships, copied into the
//! directory), plus `/unbuffered/` with `uwsgi_request_buffering off`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, listening, poll, TestDir};

/// Where nginx is, if installed.
pub fn nginx_binary() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// A running nginx; stopped (SIGQUIT, then SIGKILL) on drop.
pub struct Nginx {
    child: Child,
    pub pid: i32,
    /// `127.0.0.1:PORT`, where it serves.
    pub addr: String,
    pub error_log: PathBuf,
}

/// nginx's `uwsgi_params`, as Debian ships it (used if /etc/nginx has none).
const UWSGI_PARAMS: &str = "uwsgi_param QUERY_STRING $query_string;
uwsgi_param REQUEST_METHOD $request_method;
uwsgi_param CONTENT_TYPE $content_type;
uwsgi_param CONTENT_LENGTH $content_length;
uwsgi_param REQUEST_URI $request_uri;
uwsgi_param PATH_INFO $document_uri;
uwsgi_param DOCUMENT_ROOT $document_root;
uwsgi_param SERVER_PROTOCOL $server_protocol;
uwsgi_param REQUEST_SCHEME $scheme;
uwsgi_param HTTPS $https if_not_empty;
uwsgi_param REMOTE_ADDR $remote_addr;
uwsgi_param REMOTE_PORT $remote_port;
uwsgi_param SERVER_PORT $server_port;
uwsgi_param SERVER_NAME $server_name;
";

impl Nginx {
    /// Start nginx passing every request to `upstream` (`unix:/path` or `HOST:PORT`).
    pub fn start(dir: &TestDir, upstream: &str) -> Nginx {
        let bin = nginx_binary().expect("nginx is installed (apt-get install nginx)");
        let root = dir.join("nginx");
        for sub in ["", "tmp", "logs"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        let params = std::fs::read_to_string("/etc/nginx/uwsgi_params")
            .unwrap_or_else(|_| UWSGI_PARAMS.to_string());
        std::fs::write(root.join("uwsgi_params"), params).unwrap();
        let error_log = root.join("logs/error.log");
        // Root (CI) would run nginx's workers as nobody, who cannot enter the test directory.
        // SAFETY: geteuid has no memory effects.
        let user = if unsafe { libc::geteuid() } == 0 {
            "user root root;"
        } else {
            ""
        };
        for _attempt in 0..5 {
            let port = free_port();
            let conf = format!(
                "{user}
worker_processes 1;
pid {root}/nginx.pid;
error_log {log} info;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {root}/tmp/body;
    proxy_temp_path {root}/tmp/proxy;
    fastcgi_temp_path {root}/tmp/fastcgi;
    uwsgi_temp_path {root}/tmp/uwsgi;
    scgi_temp_path {root}/tmp/scgi;
    client_max_body_size 64m;
    keepalive_requests 10000;
    upstream app {{ server {upstream}; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            include {root}/uwsgi_params;
            uwsgi_pass app;
        }}
        location /unbuffered/ {{
            include {root}/uwsgi_params;
            uwsgi_pass app;
            uwsgi_request_buffering off;
        }}
    }}
}}
",
                root = root.display(),
                log = error_log.display(),
            );
            let conf_path = root.join("nginx.conf");
            std::fs::write(&conf_path, conf).unwrap();
            let mut cmd = Command::new(&bin);
            cmd.arg("-p")
                .arg(&root)
                .arg("-c")
                .arg(&conf_path)
                .args(["-g", "daemon off;"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
            let mut child = cmd.spawn().expect("spawn nginx");
            let addr = format!("127.0.0.1:{port}");
            let up = poll(Duration::from_secs(10), || {
                if let Ok(Some(_)) = child.try_wait() {
                    return Some(false);
                }
                listening(&addr).then_some(true)
            });
            if up == Some(true) {
                return Nginx {
                    pid: child.id() as i32,
                    child,
                    addr,
                    error_log,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "nginx did not start; its error log:\n{}",
            std::fs::read_to_string(&error_log).unwrap_or_default()
        );
    }

    pub fn error_log_text(&self) -> String {
        std::fs::read_to_string(&self.error_log).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- nginx error log ----\n{}\n----", self.error_log_text());
        }
        // SAFETY: signalling the process we started, by its pid.
        unsafe {
            libc::kill(self.pid, libc::SIGQUIT);
        }
        let child = &mut self.child;
        if poll(Duration::from_secs(5), || child.try_wait().ok().flatten()).is_none() {
            // SAFETY: the process group nginx leads (its master and workers), created for it.
            unsafe {
                libc::killpg(self.pid, libc::SIGKILL);
            }
        }
        let _ = self.child.wait();
        // Its workers are in its group: make sure none is left.
        // SAFETY: as above.
        unsafe {
            libc::killpg(self.pid, libc::SIGKILL);
        }
    }
}
