//! The `meshcall` binary as a child process, for what only a process has: signals (SIGHUP
//! reloads), its log, a second listener whose port it picks itself. Its stderr is read as
//! JSON log lines; waits are on lines and connections, with [`WAIT`](super::WAIT) or a
//! given timeout.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use serde_json::Value;
use tokio::{io::AsyncBufReadExt as _, process::Child, sync::watch};

use super::WAIT;

/// A running `meshcall` binary.
pub struct Meshcall {
    child: Child,
    log: watch::Receiver<Vec<Value>>,
    /// Where it listens (from its "meshcall listening" line).
    pub addr: SocketAddr,
}

impl Meshcall {
    /// Starts `meshcall --log-format json` with `flags` (`--listen 127.0.0.1:0` unless
    /// they say otherwise) and waits for it to listen.
    pub async fn start(flags: &[&str]) -> Self {
        Self::start_within(flags, WAIT).await
    }

    /// As [`start`](Self::start), waiting up to `limit` for the listening line.
    pub async fn start_within(flags: &[&str], limit: Duration) -> Self {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_meshcall"));
        if !flags.contains(&"--listen") {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        command
            .args(["--log-format", "json"])
            .args(flags)
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("starting meshcall");
        let stderr = child.stderr.take().unwrap();
        let (tx, log) = watch::channel(Vec::new());
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let value = serde_json::from_str(&line).unwrap_or(Value::String(line));
                tx.send_modify(|all| all.push(value));
            }
        });
        let mut this = Self {
            child,
            log,
            addr: "0.0.0.0:0".parse().unwrap(),
        };
        let line = this
            .wait_log_within("the listening line", limit, |v| {
                message(v).starts_with("meshcall listening")
            })
            .await;
        this.addr = line["fields"]["addr"].as_str().unwrap().parse().unwrap();
        this
    }

    /// Waits for a log line matching `pred`; returns it. Fails with the whole log.
    pub async fn wait_log(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_log_within(what, WAIT, pred).await
    }

    /// As [`wait_log`](Self::wait_log), up to `limit`.
    pub async fn wait_log_within(
        &self,
        what: &str,
        limit: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let mut log = self.log.clone();
        let found =
            tokio::time::timeout(limit, log.wait_for(|lines| lines.iter().any(&pred))).await;
        let lines = self.log.borrow().clone();
        match found {
            Ok(Ok(_)) => lines.into_iter().find(|v| pred(v)).unwrap(),
            _ => panic!("no log line for {what}; the log:\n{}", dump(&lines)),
        }
    }

    /// Waits until `n` log lines match `pred`. Fails with the whole log.
    pub async fn wait_log_count(&self, what: &str, n: usize, pred: impl Fn(&Value) -> bool) {
        let mut log = self.log.clone();
        let found = tokio::time::timeout(
            WAIT,
            log.wait_for(|lines| lines.iter().filter(|v| pred(v)).count() >= n),
        )
        .await;
        assert!(
            matches!(found, Ok(Ok(_))),
            "fewer than {n} log lines for {what}; the log:\n{}",
            dump(&self.log())
        );
    }

    /// Every log line so far.
    pub fn log(&self) -> Vec<Value> {
        self.log.borrow().clone()
    }

    /// Sends `signal` (a `kill` name: `HUP`, `TERM`) to the process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("meshcall is running");
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// SIGTERM, then waits for a clean exit.
    pub async fn stop(mut self) {
        self.signal("TERM");
        let log = self.log();
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("meshcall did not stop in time")
            .unwrap();
        assert!(
            status.success(),
            "meshcall exited with {status}; the log:\n{}",
            dump(&log)
        );
    }
}

impl Drop for Meshcall {
    /// A failing test shows the server's log.
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("meshcall's log:\n{}", dump(&self.log()));
        }
    }
}

/// A JSON log line's message.
pub fn message(line: &Value) -> &str {
    line["fields"]["message"].as_str().unwrap_or_default()
}

fn dump(lines: &[Value]) -> String {
    lines
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The certificate chain `addr` presents for `server_name` to a client with `config`
/// (leaf first), or the handshake's error.
pub async fn served_chain(
    addr: SocketAddr,
    server_name: &str,
    config: &Arc<rustls::ClientConfig>,
) -> std::io::Result<Vec<Vec<u8>>> {
    let connector = tokio_rustls::TlsConnector::from(config.clone());
    let name = rustls::pki_types::ServerName::try_from(server_name.to_owned())
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let tls = tokio::time::timeout(WAIT, connector.connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::other("TLS handshake timed out"))??;
    let chain = tls
        .get_ref()
        .1
        .peer_certificates()
        .unwrap_or_default()
        .iter()
        .map(|c| c.as_ref().to_vec())
        .collect();
    Ok(chain)
}

/// Polls `addr` until it serves a leaf for which `want` holds (each try a new connection,
/// a short pause between tries); returns that leaf. Fails after `limit` with the last
/// outcome.
pub async fn wait_served(
    addr: SocketAddr,
    server_name: &str,
    config: &Arc<rustls::ClientConfig>,
    limit: Duration,
    want: impl Fn(&[u8]) -> bool,
) -> Vec<u8> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let last = served_chain(addr, server_name, config).await;
        if let Ok(chain) = &last
            && chain.first().is_some_and(|leaf| want(leaf))
        {
            return chain[0].clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the wanted certificate was never served; last try: {:?}",
            last.map(|c| c.first().map(|l| meshcall::tls::fingerprint(l)))
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
