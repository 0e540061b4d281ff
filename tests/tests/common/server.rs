//! A real `vt serve` process for the tests that need a server.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::Env;

/// A running `vt serve`; stopped with SIGTERM when dropped.
pub struct Server {
    child: Option<Child>,
    /// Where it listens, as a store spec (`tcp:127.0.0.1:PORT` or
    /// `unix:PATH`).
    pub spec: String,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Server {
    /// `vt -S STORE serve ARGS...`; waits for its "serving" line.
    pub fn start(env: &Env, store: &Path, args: &[&str]) -> Server {
        Self::start_as(env, store, "serve", args)
    }

    /// `vt -S STORE httpd --listen 127.0.0.1:0 ARGS...`; `spec` is its
    /// URL.
    pub fn httpd(env: &Env, store: &Path, args: &[&str]) -> Server {
        let mut a = vec!["--listen", "127.0.0.1:0"];
        a.extend_from_slice(args);
        Self::start_as(env, store, "httpd", &a)
    }

    /// `vt -S STORE SUBCOMMAND ARGS...`; waits for its "serving" line.
    fn start_as(env: &Env, store: &Path, sub: &str, args: &[&str]) -> Server {
        let mut child = env
            .cmd()
            .env("XDG_RUNTIME_DIR", env.path("run"))
            .arg("-S")
            .arg(store)
            .arg(sub)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vt serve");
        let mut err = BufReader::new(child.stderr.take().expect("stderr"));
        let mut line = String::new();
        let spec = loop {
            line.clear();
            if err.read_line(&mut line).unwrap_or(0) == 0 {
                let st = child.wait().expect("wait");
                panic!("vt {sub} exited ({st}) before serving: {line}");
            }
            if let Some(rest) = line.trim().strip_prefix("vt: serving ") {
                let on = rest.split(" on ").nth(1).expect("on");
                break on.split([',', ' ']).next().expect("listener").to_owned();
            }
        };
        // Keep draining stderr so the server never blocks on it.
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let l2 = log.clone();
        std::thread::spawn(move || {
            let mut s = String::new();
            while err.read_line(&mut s).unwrap_or(0) > 0 {
                l2.lock().unwrap().push_str(&s);
                s.clear();
            }
        });
        Server {
            child: Some(child),
            spec,
            stderr: log,
        }
    }

    pub fn tcp(env: &Env, store: &Path, extra: &[&str]) -> Server {
        let mut args = vec!["--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        Self::start(env, store, &args)
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// Peak resident memory of the server, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmHWM")
    }

    /// SIGTERM, and the exit status must be success.
    pub fn stop(mut self) {
        let mut c = self.child.take().expect("running");
        // SAFETY: signalling our own child.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let st = c.wait().expect("wait");
        assert!(
            st.success(),
            "vt serve: {st}: {}",
            self.stderr.lock().unwrap()
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
