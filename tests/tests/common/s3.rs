//! A real S3-compatible server for the tests: s3s-fs on loopback, over a
//! temporary directory (a bucket is a directory, an object a file).

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The credentials every test server takes.
pub const ACCESS_KEY: &str = "vt-e2e-access";
/// ... and its secret.
pub const SECRET_KEY: &str = "vt-e2e-secret-key";

/// s3s-fs on PATH or in ~/.cargo/bin; missing, the test fails saying how
/// to install it (tests/run.sh does).
fn binary() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("s3s-fs"))
            .find(|f| f.is_file())
    });
    let in_cargo = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cargo/bin/s3s-fs"))
        .filter(|f| f.is_file());
    on_path.or(in_cargo).unwrap_or_else(|| {
        panic!("s3s-fs is not installed: cargo install --locked s3s-fs@0.14.1 --features binary")
    })
}

/// A running s3s-fs, killed on drop; its root outlives it (restart).
pub struct S3Server {
    child: Option<Child>,
    /// Its port.
    pub port: u16,
    /// The directory it serves.
    pub root: PathBuf,
}

impl S3Server {
    /// s3s-fs over `root` (created), on `port` or a free one.
    pub fn start(root: PathBuf, port: Option<u16>) -> S3Server {
        std::fs::create_dir_all(&root).unwrap();
        for _ in 0..5 {
            let port = port.unwrap_or_else(|| {
                TcpListener::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap()
                    .port()
            });
            let mut child = Command::new(binary())
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
                .arg(&root)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("run s3s-fs");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return S3Server {
                        child: Some(child),
                        port,
                        root,
                    };
                }
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("s3s-fs did not start on {}", root.display());
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Makes bucket `name`.
    pub fn bucket(&self, name: &str) {
        std::fs::create_dir_all(self.root.join(name)).unwrap();
    }

    /// Kills the server (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
    }
}
