//! The three servers under test: how each is started (its recommended production setup,
//! docs/benchmarks.md), waited for, measured and stopped.

use std::{
    fmt,
    fs::File,
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::tls::Tls;
use crate::procfs;

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// meshcall (this repository), `target/release/meshcall`.
    Meshcall,
    /// `matchbox_server` 0.15.
    Matchbox,
    /// The `PeerJS` server, npm package `peer` 1.0, on Node.
    Peerjs,
}

impl Kind {
    /// All three, in the table's column order.
    pub const ALL: [Self; 3] = [Self::Meshcall, Self::Matchbox, Self::Peerjs];

    /// The lower-case name used on the command line, in the table and in the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::Meshcall => "meshcall",
            Self::Matchbox => "matchbox",
            Self::Peerjs => "peerjs",
        }
    }

    /// The kind named `name`.
    ///
    /// # Errors
    /// If `name` is none of `meshcall`, `matchbox`, `peerjs`.
    pub fn parse(name: &str) -> anyhow::Result<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .with_context(|| format!("unknown server {name:?} (meshcall, matchbox, peerjs)"))
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How the clients reach the server: plain WebSocket connections, or the same over the
/// server's own TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    /// `ws://`.
    Ws,
    /// `wss://`, the server terminating TLS itself with the run's certificate.
    Wss,
}

impl Transport {
    /// Both, in the order they run and are reported.
    pub const ALL: [Self; 2] = [Self::Ws, Self::Wss];

    /// `ws` or `wss`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ws => "ws",
            Self::Wss => "wss",
        }
    }

    /// What a case's name gets in the output and the JSON: nothing for `ws` (the names
    /// of earlier runs), `-wss` for `wss` (`idle-10000-wss`).
    pub fn suffix(self) -> &'static str {
        match self {
            Self::Ws => "",
            Self::Wss => "-wss",
        }
    }

    /// The transport named `name`.
    ///
    /// # Errors
    /// If `name` is neither `ws` nor `wss`.
    pub fn parse(name: &str) -> anyhow::Result<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.name() == name)
            .with_context(|| format!("unknown transport {name:?} (ws, wss)"))
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Kind {
    /// Whether `kind` can be measured over `transport`: `matchbox_server` has no TLS of
    /// its own (it would need a proxy in front, which is not the server any more).
    pub fn serves(self, transport: Transport) -> bool {
        !(self == Self::Matchbox && transport == Transport::Wss)
    }
}

/// Where the servers' programs are, and how to run them.
#[derive(Debug, Clone)]
pub struct Programs {
    /// The meshcall binary (release build).
    pub meshcall: PathBuf,
    /// The `matchbox_server` binary.
    pub matchbox: PathBuf,
    /// Node.
    pub node: PathBuf,
    /// The `peer` package's CLI script (`node_modules/peer/dist/bin/peerjs.js`).
    pub peerjs: PathBuf,
    /// Run each server on this CPU (`taskset -c`), if set.
    pub pin_cpu: Option<u32>,
    /// Where the servers' logs go (one file per start, overwritten).
    pub log_dir: PathBuf,
    /// The run's certificate, for the wss cases.
    pub tls: Option<Tls>,
}

impl Programs {
    /// The command line that starts `kind` on `addr` over `transport`, as (program,
    /// arguments, environment). For `wss`, meshcall gets `--tls-cert`/`--tls-key` and the
    /// `PeerJS` server `--sslcert`/`--sslkey` (its CLI's own HTTPS) with the run's
    /// certificate; `matchbox_server` has no TLS ([`Kind::serves`]).
    pub fn command(
        &self,
        kind: Kind,
        addr: SocketAddr,
        transport: Transport,
    ) -> (PathBuf, Vec<String>, Vec<(&str, &str)>) {
        let (program, mut args, env) = self.plain_command(kind, addr);
        if let (Transport::Wss, Some(tls)) = (transport, &self.tls) {
            let (cert, key) = (
                tls.cert.display().to_string(),
                tls.key.display().to_string(),
            );
            let (cert_flag, key_flag) = match kind {
                Kind::Meshcall => ("--tls-cert", "--tls-key"),
                Kind::Peerjs => ("--sslcert", "--sslkey"),
                Kind::Matchbox => return (program, args, env),
            };
            args.extend([cert_flag.to_owned(), cert, key_flag.to_owned(), key]);
        }
        (program, args, env)
    }

    fn plain_command(
        &self,
        kind: Kind,
        addr: SocketAddr,
    ) -> (PathBuf, Vec<String>, Vec<(&str, &str)>) {
        let s = |x: &str| x.to_owned();
        match kind {
            // The abuse limits are lifted: every benchmark connection comes from 127.0.0.1,
            // which the per-address limits would refuse after 256 sockets or 240 joins a
            // minute, and the saturated case sends far above 50 messages a second per
            // connection. `--stun none`: no STUN URL in each `joined`.
            Kind::Meshcall => (
                self.meshcall.clone(),
                vec![
                    s("--listen"),
                    addr.to_string(),
                    s("--max-connections"),
                    s("0"),
                    s("--max-connections-per-ip"),
                    s("0"),
                    s("--max-joins-per-minute-per-ip"),
                    s("0"),
                    s("--rate-per-second"),
                    s("1000000"),
                    s("--rate-burst"),
                    s("1000000"),
                    s("--stun"),
                    s("none"),
                ],
                vec![("RUST_LOG", "warn")],
            ),
            // Its only argument is the address; its default log level is info for itself
            // and debug for tower_http (a line per request), which a production setup turns
            // down like meshcall's.
            Kind::Matchbox => (
                self.matchbox.clone(),
                vec![addr.to_string()],
                vec![("RUST_LOG", "warn")],
            ),
            // The CLI as the package's README runs it, with the connection cap (5 000 by
            // default) raised for the 10 000-connection case, and Express in production
            // mode. The CLI logs every connect and disconnect on stdout; there is no switch.
            Kind::Peerjs => (
                self.node.clone(),
                vec![
                    self.peerjs.display().to_string(),
                    s("--host"),
                    addr.ip().to_string(),
                    s("--port"),
                    addr.port().to_string(),
                    s("--key"),
                    s("peerjs"),
                    s("--path"),
                    s("/"),
                    s("--concurrent_limit"),
                    s("1000000"),
                ],
                vec![("NODE_ENV", "production")],
            ),
        }
    }

    /// Starts `kind` over `transport` on a free loopback port and waits until it accepts
    /// connections and has settled for `settle`.
    ///
    /// # Errors
    /// If it cannot be started, exits, or does not accept connections within 20 s; if it
    /// has no TLS, or the run has no certificate, for `wss`.
    pub fn start(
        &self,
        kind: Kind,
        transport: Transport,
        settle: Duration,
    ) -> anyhow::Result<Server> {
        if !kind.serves(transport) {
            bail!("{kind} has no {transport}");
        }
        let client_tls = match transport {
            Transport::Ws => None,
            Transport::Wss => Some(Arc::clone(
                &self.tls.as_ref().context("no certificate for wss")?.client,
            )),
        };
        let addr = free_port()?;
        let (program, args, env) = self.command(kind, addr, transport);
        std::fs::create_dir_all(&self.log_dir)
            .with_context(|| format!("creating {}", self.log_dir.display()))?;
        let log_path = self
            .log_dir
            .join(format!("{kind}{}.log", transport.suffix()));
        let log =
            File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let mut command = if let Some(cpu) = self.pin_cpu {
            // taskset execs the program: the child's pid is the server's.
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpu.to_string()).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        command
            .args(&args)
            .envs(env)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let mut server = Server {
            kind,
            addr,
            client_tls,
            child,
            log: log_path,
        };
        server.wait_ready()?;
        std::thread::sleep(settle);
        Ok(server)
    }
}

/// A free port on 127.0.0.1 (bound and released: another process could take it first,
/// which the start then reports).
fn free_port() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(listener.local_addr()?)
}

/// One running server.
#[derive(Debug)]
pub struct Server {
    /// Which server.
    pub kind: Kind,
    /// Where it listens.
    pub addr: SocketAddr,
    /// For `wss`: the clients' TLS configuration (trusting the run's certificate).
    pub client_tls: Option<Arc<rustls::ClientConfig>>,
    child: Child,
    log: PathBuf,
}

impl Server {
    /// The process id (the server's own, also when pinned).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory, bytes.
    ///
    /// # Errors
    /// If the process is gone.
    pub fn rss(&self) -> anyhow::Result<u64> {
        procfs::rss_bytes(self.pid())
    }

    /// CPU time used so far (user + system, all threads), seconds.
    ///
    /// # Errors
    /// If the process is gone.
    pub fn cpu(&self, clk_tck: u32) -> anyhow::Result<f64> {
        procfs::cpu_seconds(self.pid(), clk_tck)
    }

    /// Fails if the server has exited.
    ///
    /// # Errors
    /// If it has, with the end of its log.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited ({status}); {}", self.kind, self.log_tail());
        }
        Ok(())
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            self.check_alive()?;
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} does not accept connections on {} within 20 s",
                    self.kind,
                    self.addr
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(10)..].join("\n");
        format!("the end of {}:\n{tail}", self.log.display())
    }

    /// Stops the server: SIGTERM, then SIGKILL after 5 s.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A server left behind by an error: never outlive the benchmark.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
