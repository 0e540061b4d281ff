//! Where a stream client connects: a UNIX socket, TCP (plain or TLS), or
//! a command's standard input and output (`!ssh host vt serve --stdio`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use vt_core::{Error, Result};

/// A byte stream to read frames from.
pub type ReadHalf = Box<dyn AsyncRead + Unpin + Send>;
/// A byte stream to write frames to.
pub type WriteHalf = Box<dyn AsyncWrite + Unpin + Send>;

/// How to reach a server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// A UNIX socket.
    Unix(PathBuf),
    /// Plain TCP to `host:port`.
    Tcp(String),
    /// TLS over TCP to `host:port`, trusting the certificate(s) in `ca`
    /// (PEM), checked against the host name (or IP address).
    Tls {
        /// `host:port`.
        addr: String,
        /// PEM file of the certificate authorities to trust (a server's
        /// self-signed certificate is its own authority).
        ca: PathBuf,
    },
    /// A command run by `/bin/sh -c`, spoken to on its stdin and stdout.
    Command(String),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
            Endpoint::Tcp(a) => write!(f, "tcp:{a}"),
            Endpoint::Tls { addr, .. } => write!(f, "tls:{addr}"),
            Endpoint::Command(c) => write!(f, "!{c}"),
        }
    }
}

/// An open connection.
pub struct Transport {
    /// What the server sends.
    pub rd: ReadHalf,
    /// What we send.
    pub wr: WriteHalf,
    /// The command, for a [`Endpoint::Command`]: killed when dropped.
    pub child: Option<tokio::process::Child>,
}

fn io_err(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::io(what, e)
}

impl Endpoint {
    /// Whether what crosses this connection stays on this machine (a UNIX
    /// socket, or TCP to a loopback address): then compressing it costs
    /// more than it saves.
    pub fn is_local(&self) -> bool {
        match self {
            Endpoint::Unix(_) => true,
            Endpoint::Tcp(a) | Endpoint::Tls { addr: a, .. } => is_loopback_addr(a),
            Endpoint::Command(_) => false,
        }
    }

    /// Connects.
    pub async fn connect(&self) -> Result<Transport> {
        match self {
            Endpoint::Unix(p) => {
                let s = tokio::net::UnixStream::connect(p)
                    .await
                    .map_err(io_err(format!("connect to {self}")))?;
                let (rd, wr) = s.into_split();
                Ok(Transport {
                    rd: Box::new(rd),
                    wr: Box::new(wr),
                    child: None,
                })
            }
            Endpoint::Tcp(addr) => {
                let s = tokio::net::TcpStream::connect(addr.as_str())
                    .await
                    .map_err(io_err(format!("connect to {self}")))?;
                let _ = s.set_nodelay(true);
                let (rd, wr) = s.into_split();
                Ok(Transport {
                    rd: Box::new(rd),
                    wr: Box::new(wr),
                    child: None,
                })
            }
            Endpoint::Tls { addr, ca } => {
                let cfg = client_tls(ca)?;
                let host = host_of(addr);
                let name = rustls::pki_types::ServerName::try_from(host.to_owned())
                    .map_err(|e| Error::Store(format!("{self}: bad server name {host:?}: {e}")))?;
                let s = tokio::net::TcpStream::connect(addr.as_str())
                    .await
                    .map_err(io_err(format!("connect to {self}")))?;
                let _ = s.set_nodelay(true);
                let tls = tokio_rustls::TlsConnector::from(cfg)
                    .connect(name, s)
                    .await
                    .map_err(io_err(format!("TLS handshake with {self}")))?;
                let (rd, wr) = tokio::io::split(tls);
                Ok(Transport {
                    rd: Box::new(rd),
                    wr: Box::new(wr),
                    child: None,
                })
            }
            Endpoint::Command(cmd) => {
                let mut child = tokio::process::Command::new("/bin/sh")
                    .arg("-c")
                    .arg(cmd)
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::inherit())
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(io_err(format!("run {self}")))?;
                let (Some(wr), Some(rd)) = (child.stdin.take(), child.stdout.take()) else {
                    return Err(Error::Store(format!("{self}: no pipes to the command")));
                };
                Ok(Transport {
                    rd: Box::new(rd),
                    wr: Box::new(wr),
                    child: Some(child),
                })
            }
        }
    }
}

/// The host part of `host:port` (`[v6]:port` too).
pub fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// Whether `host:port` names this machine's loopback interface.
pub fn is_loopback_addr(addr: &str) -> bool {
    let host = host_of(addr);
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Reads every PEM certificate in `path`.
pub fn read_certs(path: &Path) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_file_iter(path)
        .map_err(|e| Error::Store(format!("read certificates from {}: {e}", path.display())))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Store(format!("read certificates from {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::Store(format!(
            "{} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// The TLS implementation: *ring*, which builds with a C compiler alone
/// (aws-lc-rs, rustls' default, needs cmake and adds minutes to a clean
/// build). rustls 0.23.48 deprecates it for lacking post-quantum key
/// exchange; TLS here is for a trusted LAN, and ssh is the documented way
/// across untrusted networks (vt.1).
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS client configuration trusting the certificates in `ca`.
pub fn client_tls(ca: &Path) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in read_certs(ca)? {
        roots
            .add(c)
            .map_err(|e| Error::Store(format!("{}: {e}", ca.display())))?;
    }
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Store(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// A TLS server configuration from a certificate chain and a private key
/// (PEM files).
pub fn server_tls(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    let chain = read_certs(cert)?;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key)
        .map_err(|e| Error::Store(format!("read private key {}: {e}", key.display())))?;
    let cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Store(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| Error::Store(format!("TLS certificate {}: {e}", cert.display())))?;
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_addresses() {
        assert!(is_loopback_addr("127.0.0.1:9"));
        assert!(is_loopback_addr("[::1]:9"));
        assert!(is_loopback_addr("localhost:9"));
        assert!(!is_loopback_addr("0.0.0.0:9"));
        assert!(!is_loopback_addr("192.168.1.2:9"));
        assert!(!is_loopback_addr("example.org:9"));
        assert_eq!(host_of("[::1]:80"), "::1");
    }
}
