//! `vt serve`: exports stores over the stream protocol (`vt-stream.5`)
//! on a UNIX socket, TCP (with TLS off loopback) or stdio.

use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use vt_stores::spec::split_list;
use vt_stores::stream::transport::server_tls;
use vt_stores::stream::{Export, Listener, ServeOptions, Server, Shutdown};

use crate::config::{default_socket, expand, Config};

/// Arguments of `vt serve`.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Listen on TCP at ADDR:PORT (or just PORT, on 127.0.0.1); may be
    /// given more than once. An address other than loopback needs
    /// --token-file and TLS.
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Vec<String>,
    /// Listen on this UNIX socket [default, when neither --listen nor
    /// --stdio is given: $XDG_RUNTIME_DIR/vt/STORE.sock].
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Speak the protocol on standard input and output, for one client
    /// (`vt -S '!ssh HOST vt serve --stdio'`).
    #[arg(long, conflicts_with_all = ["listen", "socket"])]
    stdio: bool,
    /// What to export: NAME[:STORESPEC], comma-separated [default: the
    /// [serve] export of vtrc, else the -S store as "default"].
    #[arg(long, value_name = "EXPORTS")]
    export: Option<String>,
    /// Refuse every write.
    #[arg(long)]
    read_only: bool,
    /// Refuse removing or rewriting archive lines (appending is allowed).
    #[arg(long)]
    append_only: bool,
    /// Clients must present the token in this file (its first line).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// TLS certificate chain (PEM) for --listen.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for --listen.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

/// The exports named by `text` (`NAME[:STORESPEC],…`); a NAME alone
/// exports the store of that name.
fn exports(cfg: &Config, text: &str) -> Result<Vec<Export>> {
    let mut out: Vec<Export> = Vec::new();
    for item in split_list(text)? {
        let item = item.trim();
        let (name, spec) = match item.split_once(':') {
            Some((n, s)) if !n.contains(['(', '/', '!']) => (n.trim(), s.trim()),
            _ => (item, item),
        };
        if name.is_empty() || out.iter().any(|e| e.name == name) {
            bail!("export {item:?}: every export needs a name of its own");
        }
        let st = cfg
            .open_store(Some(spec), true)
            .with_context(|| format!("export {name}"))?;
        out.push(Export {
            name: name.to_owned(),
            store: st.store,
        });
    }
    if out.is_empty() {
        bail!("nothing to export");
    }
    Ok(out)
}

fn export_text(cfg: &Config, args: &ServeArgs, store_spec: Option<&str>) -> Result<String> {
    if let Some(e) = &args.export {
        return Ok(e.clone());
    }
    if store_spec.is_none() {
        match &cfg.serve.export {
            Some(toml::Value::String(s)) => return Ok(s.clone()),
            Some(toml::Value::Array(a)) => {
                let items: Vec<&str> = a.iter().filter_map(|v| v.as_str()).collect();
                return Ok(items.join(","));
            }
            Some(v) => bail!("[serve] export = {v}: expected NAME[:STORESPEC], comma-separated"),
            None => {}
        }
    }
    Ok(format!(
        "default:{}",
        store_spec.map_or_else(|| cfg.default_store(), str::to_owned)
    ))
}

/// The token in file `f` (its first line).
pub fn read_token(f: &Path) -> Result<String> {
    let t =
        std::fs::read_to_string(f).with_context(|| format!("read token file {}", f.display()))?;
    let t = t.lines().next().unwrap_or("").trim().to_owned();
    if t.is_empty() {
        bail!("token file {} is empty", f.display());
    }
    Ok(t)
}

/// `ADDR:PORT`, or `PORT` on loopback.
pub fn tcp_addr(a: &str) -> Result<SocketAddr> {
    let full = if a.parse::<u16>().is_ok() {
        format!("127.0.0.1:{a}")
    } else {
        a.to_owned()
    };
    use std::net::ToSocketAddrs;
    full.to_socket_addrs()
        .with_context(|| format!("--listen {a}: expected ADDR:PORT or PORT"))?
        .next()
        .ok_or_else(|| anyhow!("--listen {a}: no such address"))
}

/// Binds a UNIX socket at `path`, readable and writable by this user only;
/// a stale socket left by a server that died is replaced, a live one is
/// an error.
fn bind_unix(path: &Path) -> Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            bail!("{} is already being served", path.display());
        }
        std::fs::remove_file(path)
            .with_context(|| format!("remove the stale socket {}", path.display()))?;
    }
    // The socket is created with the process umask: make it 0600 from the
    // start, not only after a chmod.
    // SAFETY: umask only sets the process's file mode mask; no thread is
    // creating files yet.
    let old = unsafe { libc::umask(0o177) };
    let l = UnixListener::bind(path);
    // SAFETY: as above, restoring it.
    unsafe { libc::umask(old) };
    let l = l.with_context(|| format!("listen on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod {}", path.display()))?;
    Ok(l)
}

/// `vt serve`.
pub fn serve(
    args: ServeArgs,
    cfg: &Config,
    store_spec: Option<&str>,
    quiet: bool,
) -> Result<ExitCode> {
    let stop = Shutdown::new();
    let on_stop = stop.clone();
    crate::signals::block().on_signal(move |sig| {
        if !quiet {
            eprintln!("vt: signal {sig}: finishing the requests in flight and syncing");
        }
        on_stop.trigger();
    });
    let token_file = args
        .token_file
        .clone()
        .or_else(|| cfg.serve.token_file.as_deref().map(expand));
    let token = token_file.as_deref().map(read_token).transpose()?;
    let cert = args
        .tls_cert
        .clone()
        .or_else(|| cfg.serve.tls_cert.as_deref().map(expand));
    let key = args
        .tls_key
        .clone()
        .or_else(|| cfg.serve.tls_key.as_deref().map(expand));
    let tls = match (&cert, &key) {
        (Some(c), Some(k)) => Some(server_tls(c, k)?),
        (None, None) => None,
        _ => bail!("TLS needs both a certificate (--tls-cert) and a key (--tls-key)"),
    };
    let listen = if args.listen.is_empty() && args.socket.is_none() && !args.stdio {
        cfg.serve.listen.clone().unwrap_or_default()
    } else {
        args.listen.clone()
    };
    let mut listeners = Vec::new();
    let mut shown = Vec::new();
    let mut socket_path = None;
    for a in &listen {
        let addr = tcp_addr(a)?;
        if !addr.ip().is_loopback() && (token.is_none() || tls.is_none()) {
            bail!(
                "refusing to listen on {addr} without --token-file and TLS (--tls-cert, --tls-key): \
                 anyone on the path could read the blocks, and the token too; across networks you \
                 do not trust, use ssh: vt -S '!ssh HOST vt serve --stdio'"
            );
        }
        let l = TcpListener::bind(addr).with_context(|| format!("listen on {addr}"))?;
        let bound = l.local_addr().map_or(addr, |a| a);
        shown.push(format!(
            "{}:{bound}",
            if tls.is_some() { "tls" } else { "tcp" }
        ));
        listeners.push(Listener::Tcp(l, tls.clone()));
    }
    if args.stdio {
        listeners.push(Listener::Stdio);
        shown.push("stdio".into());
    } else if listen.is_empty() || args.socket.is_some() {
        let name = store_spec
            .map(str::to_owned)
            .unwrap_or_else(|| cfg.default_store());
        let path = match &args.socket {
            Some(p) => p.clone(),
            None if name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) => {
                default_socket(&name)
            }
            None => bail!("give --socket PATH (or --listen): {name:?} is not a store name to name the socket after"),
        };
        listeners.push(Listener::Unix(bind_unix(&path)?));
        shown.push(format!("unix:{}", path.display()));
        socket_path = Some(path);
    }
    let exports = exports(cfg, &export_text(cfg, &args, store_spec)?)?;
    let names: Vec<String> = exports.iter().map(|e| e.name.clone()).collect();
    let server = Arc::new(Server::new(
        exports,
        ServeOptions {
            read_only: args.read_only,
            append_only: args.append_only,
            token,
            ..Default::default()
        },
    )?);
    let banner = format!(
        "vt: serving {} on {}{}",
        names.join(", "),
        shown.join(", "),
        match (args.read_only, args.append_only) {
            (true, _) => " (read-only)",
            (false, true) => " (append-only)",
            _ => "",
        }
    );
    // Through ssh, stderr is the user's terminal at every connection.
    if args.stdio {
        tracing::info!("{banner}");
    } else if !quiet {
        eprintln!("{banner}");
    }
    let r = server.run(listeners, stop);
    if let Some(p) = socket_path {
        let _ = std::fs::remove_file(p);
    }
    r?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_the_first_line_of_its_file_for_servers_and_clients_alike() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("token");
        std::fs::write(&f, "  s3cret \n# made by the admin on Monday\n").unwrap();
        assert_eq!(read_token(&f).unwrap(), "s3cret");
        std::fs::write(&f, "\n").unwrap();
        let e = read_token(&f).unwrap_err().to_string();
        assert!(e.contains("is empty"), "{e}");
    }
}
