//! The one helper integration tests use: start the real server on 127.0.0.1 port 0, talk
//! WebSocket and HTTP to it. Every receive has a timeout; "nothing arrives" is proven with
//! a ping barrier (see [`Client::expect_only_pong`]), never a sleep.

#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use std::{net::SocketAddr, time::Duration};

use clap::Parser as _;
use futures_util::{SinkExt as _, StreamExt as _};
use meshcall::Settings;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async,
    tungstenite::{
        Message,
        client::IntoClientRequest as _,
        protocol::{
            CloseFrame,
            frame::{
                Frame, FrameHeader,
                coding::{Data, OpCode},
            },
        },
    },
};
use tokio_util::sync::CancellationToken;

pub mod child;

/// How long any single wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// The server under test.
pub struct TestServer {
    pub addr: SocketAddr,
    backend: Backend,
    /// With `MESHCALL_SUITE_TLS=1`: the server speaks HTTPS with a self-signed certificate
    /// and clients trust exactly that certificate.
    tls: Option<SuiteTls>,
}

/// The self-signed certificate of a server run over TLS, and a client config trusting it.
pub struct SuiteTls {
    _state: tempfile::TempDir,
    pub client: std::sync::Arc<rustls::ClientConfig>,
    pub cert_pem: String,
}

/// Whether the suite runs over TLS (`MESHCALL_SUITE_TLS=1`; `scripts/test` runs it once so).
pub fn suite_tls() -> bool {
    std::env::var("MESHCALL_SUITE_TLS").is_ok_and(|v| v == "1") && !on_gateway()
}

/// A rustls client config (ring) that trusts only the certificates in `pem`.
pub fn client_trusting(pem: &str) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls::pki_types::{CertificateDer, pem::PemObject as _};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    assert!(!roots.is_empty(), "no certificate to trust");
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    std::sync::Arc::new(config)
}

impl SuiteTls {
    /// Makes the self-signed certificate the server will find and reuse in a new state
    /// directory; returns it and the flags that start the server with it.
    fn make() -> (Self, Vec<String>) {
        let state = tempfile::tempdir().unwrap();
        let names = meshcall::tls::self_signed::Names::of_this_host(&[]);
        let made = meshcall::tls::self_signed::load_or_create(
            &state.path().join("tls"),
            &names,
            std::time::SystemTime::now(),
        )
        .unwrap();
        let flags = vec![
            "--tls-self-signed".to_owned(),
            "--state-dir".to_owned(),
            state.path().to_string_lossy().into_owned(),
        ];
        let tls = Self {
            _state: state,
            client: client_trusting(&made.cert_pem),
            cert_pem: made.cert_pem,
        };
        (tls, flags)
    }
}

/// The same suite runs against two runtimes of the same core: the self-hosted server in
/// this process, or (with `MESHCALL_SUITE_GATEWAY` naming the `meshcall-gateway` binary)
/// the serverless path: the local API Gateway running the real Lambda bootstrap on the
/// DynamoDB emulator at `AWS_ENDPOINT_URL` (`scripts/test` runs both).
enum Backend {
    InProcess {
        shutdown: CancellationToken,
        handle: JoinHandle<anyhow::Result<()>>,
    },
    Gateway {
        child: tokio::process::Child,
        log: std::path::PathBuf,
    },
}

/// The `meshcall-gateway` binary when the suite runs on the serverless path.
fn gateway_binary() -> Option<String> {
    suite_path("MESHCALL_SUITE_GATEWAY")
}

/// A path from the environment; a relative one is taken from the workspace root (tests
/// run in their crate's directory).
fn suite_path(var: &str) -> Option<String> {
    let value = std::env::var(var).ok().filter(|v| !v.is_empty())?;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    Some(root.join(value).to_string_lossy().into_owned())
}

/// Whether this run is on the local API Gateway + Lambda + DynamoDB path.
pub fn on_gateway() -> bool {
    gateway_binary().is_some()
}

/// For a test of what only the self-hosted server has (its metrics, its shutdown, its
/// per-connection queues and rate limit): on the gateway path, says so and returns `true`
/// (the test returns early); docs/aws.md lists these differences.
pub fn self_hosted_only(why: &str) -> bool {
    if !on_gateway() {
        return false;
    }
    let name = std::thread::current().name().unwrap_or("a test").to_owned();
    let _ = std::io::Write::write_fmt(
        &mut std::io::stderr(),
        format_args!("{name}: self-hosted only ({why}); skipped on the gateway path\n"),
    );
    true
}

/// Settings from flags, as a user would give them (`meshcall` is prepended).
pub fn settings(flags: &[&str]) -> Settings {
    Settings::parse_from(std::iter::once("meshcall").chain(flags.iter().copied()))
}

impl TestServer {
    pub async fn start() -> Self {
        Self::with(&[]).await
    }

    pub async fn with(flags: &[&str]) -> Self {
        if let Some(gateway) = gateway_binary() {
            return Self::gateway(&gateway, flags).await;
        }
        let (tls, tls_flags) = if suite_tls() {
            let (tls, tls_flags) = SuiteTls::make();
            (Some(tls), tls_flags)
        } else {
            (None, Vec::new())
        };
        let all: Vec<&str> = flags
            .iter()
            .copied()
            .chain(tls_flags.iter().map(String::as_str))
            .collect();
        let settings = settings(&all);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let handle = tokio::spawn(async move { meshcall::run(listener, &settings, token).await });
        Self {
            addr,
            backend: Backend::InProcess { shutdown, handle },
            tls,
        }
    }

    /// Starts `meshcall-gateway` on a fresh table with the same flags, and waits for the
    /// line that gives its address. It runs strict, as AWS does, with its defaults: one
    /// connection's messages invoked concurrently, the template's function timeout, the
    /// sweep once a minute, graces ended through the SQS expiry queue it creates with the
    /// table. Its log (and its Lambda instances') goes to `target/suite-logs/<table>.log`.
    async fn gateway(binary: &str, flags: &[&str]) -> Self {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let table = format!("suite-{}-{seq}-{nanos}", std::process::id());
        let logs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/suite-logs");
        std::fs::create_dir_all(&logs).unwrap();
        let log = logs.join(format!("{table}.log"));
        let mut command = tokio::process::Command::new(binary);
        command
            .args([
                "--listen",
                "127.0.0.1:0",
                "--create-table",
                "--table",
                &table,
            ])
            .args(flags)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true);
        if let Some(bootstrap) = suite_path("MESHCALL_SUITE_BOOTSTRAP") {
            command.args(["--bootstrap", &bootstrap]);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {binary}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("the gateway did not start in time; see {}", log.display()))
            .unwrap()
            .unwrap_or_else(|| panic!("the gateway exited; see {}", log.display()));
        let addr = line
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap();
        Self {
            addr,
            backend: Backend::Gateway { child, log },
            tls: None,
        }
    }

    /// Parses flags as `meshcall` would, without starting anything.
    pub fn try_settings(flags: &[&str]) -> Result<Settings, clap::Error> {
        Settings::try_parse_from(std::iter::once("meshcall").chain(flags.iter().copied()))
    }

    pub fn ws_url(&self) -> String {
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        format!("{scheme}://{}/ws", self.addr)
    }

    /// The server's TLS certificate and a client trusting it, when the suite runs over TLS.
    pub fn tls(&self) -> Option<&SuiteTls> {
        self.tls.as_ref()
    }

    pub async fn client(&self) -> Client {
        let req = self.ws_url().into_client_request().unwrap();
        let (ws, _) = tokio::time::timeout(WAIT, self.connect_request(req))
            .await
            .expect("connect timed out")
            .expect("connect failed");
        Client { ws: Box::new(ws) }
    }

    /// Opens a WebSocket for `req`, over TLS trusting the server's certificate when the
    /// suite runs over TLS.
    async fn connect_request(
        &self,
        req: tokio_tungstenite::tungstenite::handshake::client::Request,
    ) -> Result<
        (
            WebSocketStream<MaybeTlsStream<TcpStream>>,
            tokio_tungstenite::tungstenite::handshake::client::Response,
        ),
        tokio_tungstenite::tungstenite::Error,
    > {
        match &self.tls {
            None => connect_async(req).await,
            Some(tls) => {
                tokio_tungstenite::connect_async_tls_with_config(
                    req,
                    None,
                    false,
                    Some(tokio_tungstenite::Connector::Rustls(tls.client.clone())),
                )
                .await
            }
        }
    }

    /// Two new clients in `room`, the first told of the second:
    /// `(first, its id, second, its id)`.
    pub async fn pair_in(&self, room: &str) -> (Client, String, Client, String) {
        let mut first = self.client().await;
        let mut second = self.client().await;
        let first_id = first.id_via(room).await;
        let second_id = second.id_via(room).await;
        first.expect_new_participant(&second_id).await;
        (first, first_id, second, second_id)
    }

    /// Connects with an `Origin` header; returns the HTTP status of a refused upgrade.
    pub async fn client_with_origin(&self, origin: &str) -> Result<Client, u16> {
        let mut req = self.ws_url().into_client_request().unwrap();
        req.headers_mut().insert("origin", origin.parse().unwrap());
        self.connect(req).await
    }

    /// Connects without an `Origin` header; returns the HTTP status of a refused upgrade.
    pub async fn try_client(&self) -> Result<Client, u16> {
        self.connect(self.ws_url().into_client_request().unwrap())
            .await
    }

    async fn connect(
        &self,
        req: tokio_tungstenite::tungstenite::handshake::client::Request,
    ) -> Result<Client, u16> {
        match tokio::time::timeout(WAIT, self.connect_request(req))
            .await
            .expect("connect timed out")
        {
            Ok((ws, _)) => Ok(Client { ws: Box::new(ws) }),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
            Err(e) => panic!("unexpected connect error: {e}"),
        }
    }

    /// A plain HTTP/1.1 GET; returns status, headers (lower-cased names) and body.
    pub async fn get(&self, path: &str) -> (u16, Vec<(String, String)>, String) {
        match &self.tls {
            None => http_get(self.addr, path).await,
            Some(tls) => https_get(self.addr, &tls.client, path).await,
        }
    }

    /// Cancels the server and waits for `run` to return. A gateway gets SIGTERM, which
    /// stops its Lambda instances too.
    pub async fn stop(self) -> anyhow::Result<()> {
        match self.backend {
            Backend::InProcess { shutdown, handle } => {
                shutdown.cancel();
                tokio::time::timeout(WAIT, handle)
                    .await
                    .expect("server did not stop in time")
                    .expect("server task panicked")
            }
            Backend::Gateway { mut child, log } => {
                if let Some(pid) = child.id() {
                    let _ = std::process::Command::new("kill")
                        .args(["-TERM", &pid.to_string()])
                        .status();
                }
                let status = tokio::time::timeout(WAIT, child.wait())
                    .await
                    .unwrap_or_else(|_| {
                        panic!("the gateway did not stop; see {}", log.display())
                    })?;
                anyhow::ensure!(
                    status.success(),
                    "the gateway exited with {status}; see {}",
                    log.display()
                );
                Ok(())
            }
        }
    }

    /// The in-process server's shutdown token; panics on the gateway path.
    fn in_process(&self) -> &CancellationToken {
        match &self.backend {
            Backend::InProcess { shutdown, .. } => shutdown,
            Backend::Gateway { .. } => {
                panic!("the self-hosted server's own API; mark the test self_hosted_only")
            }
        }
    }

    /// Cancels the server without waiting (the caller watches clients instead).
    pub fn begin_shutdown(&self) -> &CancellationToken {
        let shutdown = self.in_process();
        shutdown.cancel();
        shutdown
    }

    /// The body of `GET /metrics`.
    pub async fn metrics(&self) -> String {
        self.in_process();
        let (status, _, body) = self.get("/metrics").await;
        assert_eq!(status, 200, "GET /metrics: {body}");
        body
    }

    /// Scrapes `/metrics` until every `(name, value)` in `expected` holds, and returns that
    /// scrape. Counters are bumped just after a frame is queued and gauges are read at
    /// scrape time, so a scrape may briefly lag what a client has already seen; this polls
    /// (a short pause between scrapes) and fails with the last scrape after [`WAIT`].
    ///
    /// On the gateway path, which has no metrics, it waits instead until the gateway has no
    /// event queued or in flight and no `$disconnect` to run (`GET /_gateway/idle`): the
    /// same barrier, without the values.
    pub async fn wait_for_metrics(&self, expected: &[(&str, f64)]) -> String {
        if on_gateway() {
            self.wait_gateway_idle().await;
            return String::new();
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let text = self.metrics().await;
            let wrong: Vec<String> = expected
                .iter()
                .filter(|&&(name, want)| !metric_is(&text, name, want))
                .map(|&(name, want)| format!("{name}: want {want}, got {}", metric(&text, name)))
                .collect();
            if wrong.is_empty() {
                return text;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "metrics never matched: {wrong:#?}\nlast scrape:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the gateway reports that nothing is queued, in flight or pending.
    async fn wait_gateway_idle(&self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (status, _, body) = self.get("/_gateway/idle").await;
            if status == 200 && body.trim() == "idle" {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the gateway never went idle: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn join_handle(self) -> anyhow::Result<()> {
        match self.backend {
            Backend::InProcess { handle, .. } => tokio::time::timeout(WAIT, handle)
                .await
                .expect("server did not stop in time")
                .expect("server task panicked"),
            Backend::Gateway { .. } => {
                panic!("the self-hosted server's own API; mark the test self_hosted_only")
            }
        }
    }
}

pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, Vec<(String, String)>, String) {
    http_get_with(addr, path, &[]).await
}

/// An HTTP/1.1 GET over TLS to `addr` (by IP address) with `client`'s trust.
pub async fn https_get(
    addr: SocketAddr,
    client: &std::sync::Arc<rustls::ClientConfig>,
    path: &str,
) -> (u16, Vec<(String, String)>, String) {
    let connector = tokio_rustls::TlsConnector::from(client.clone());
    let name = rustls::pki_types::ServerName::from(addr.ip());
    let tls = tokio::time::timeout(WAIT, async {
        let tcp = TcpStream::connect(addr).await.unwrap();
        connector.connect(name, tcp).await.unwrap()
    })
    .await
    .expect("TLS connect timed out");
    http_get_on(tls, addr, path, &[]).await
}

/// A plain HTTP/1.1 GET with extra request headers.
pub async fn http_get_with(
    addr: SocketAddr,
    path: &str,
    extra: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, String) {
    let tcp = tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .expect("connect timed out")
        .unwrap();
    http_get_on(tcp, addr, path, extra).await
}

/// A GET on an open stream (plain or TLS); `addr` is the `Host`.
pub async fn http_get_on<S>(
    mut s: S,
    addr: SocketAddr,
    path: &str,
    extra: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let extra = extra.iter().fold(String::new(), |mut out, (k, v)| {
        for part in [*k, ": ", *v, "\r\n"] {
            out.push_str(part);
        }
        out
    });
    let fut = async {
        let req =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        String::from_utf8(buf).unwrap()
    };
    let raw = tokio::time::timeout(WAIT, fut)
        .await
        .expect("GET timed out");
    let (head, body) = raw.split_once("\r\n\r\n").expect("no header end");
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

/// A response header's value, by its lower-case name (as [`http_get`] returns them).
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Reads one value from a Prometheus text exposition (`name` includes labels, e.g.
/// `meshcall_errors_total{code="badJson"}`).
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("metric {name} not found in:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// Whether `name` reads exactly `want` in a Prometheus text exposition.
#[allow(clippy::float_cmp)] // metrics in tests are small whole numbers, exact in an f64
pub fn metric_is(text: &str, name: &str, want: f64) -> bool {
    metric(text, name) == want
}

pub struct Client {
    /// Boxed: a stream that may be TLS is large, and tests hold several across awaits.
    pub ws: Box<WebSocketStream<MaybeTlsStream<TcpStream>>>,
}

impl Client {
    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    pub async fn send_json(&mut self, v: Value) {
        self.send_text(&v.to_string()).await;
    }

    /// The next data or close frame (WebSocket pings and pongs are skipped).
    pub async fn recv(&mut self) -> Message {
        loop {
            let next = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for a frame");
            match next {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(m)) => return m,
                Some(Err(e)) => panic!("socket error: {e}"),
                None => panic!("socket ended"),
            }
        }
    }

    pub async fn recv_text(&mut self) -> String {
        match self.recv().await {
            Message::Text(t) => t.to_string(),
            other => panic!("expected text, got {other:?}"),
        }
    }

    pub async fn recv_json(&mut self) -> Value {
        let text = self.recv_text().await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    /// The next frame must be an error with `code`.
    pub async fn expect_error(&mut self, code: &str) -> Value {
        let v = self.recv_json().await;
        assert_eq!(v["type"], "error", "expected error {code}, got {v}");
        assert_eq!(v["code"], code, "got {v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        v
    }

    /// Joins `room`; returns the `joined` reply.
    pub async fn join(&mut self, room: &str) -> Value {
        self.send_json(json!({"action": "joinRoom", "roomId": room}))
            .await;
        let v = self.recv_json().await;
        assert_eq!(v["type"], "joined", "got {v}");
        v
    }

    /// This connection's id, learned by joining `room` (the connection stays in it).
    pub async fn id_via(&mut self, room: &str) -> String {
        self.join(room).await["connectionId"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Sends `ping` and requires the next frame to be `pong`: proves that nothing was
    /// queued for this connection before the ping was handled.
    pub async fn expect_only_pong(&mut self) {
        self.send_json(json!({"action": "ping"})).await;
        let v = self.recv_json().await;
        assert_eq!(v, json!({"type": "pong"}), "expected nothing before pong");
    }

    /// Waits for the server to close the socket; returns the close frame.
    pub async fn expect_close(&mut self) -> Option<CloseFrame> {
        loop {
            let next = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for close");
            match next {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// Sends one binary frame.
    pub async fn send_binary(&mut self, bytes: &[u8]) {
        self.ws.send(Message::binary(bytes.to_vec())).await.unwrap();
    }

    /// Sends a text frame whose payload is `bytes` as given, valid UTF-8 or not.
    pub async fn send_raw_text(&mut self, bytes: &[u8]) {
        self.send_text_frame_with(bytes, |_| {}).await;
    }

    /// Sends `bytes` as one text frame whose header `edit` may change first (to break a
    /// rule of RFC 6455 on purpose).
    pub async fn send_text_frame_with(
        &mut self,
        bytes: &[u8],
        edit: impl FnOnce(&mut FrameHeader),
    ) {
        let mut frame = Frame::message(bytes.to_vec(), OpCode::Data(Data::Text), true);
        edit(frame.header_mut());
        self.ws.send(Message::Frame(frame)).await.unwrap();
    }

    /// Starts the closing handshake with `code` (does not wait for the reply).
    pub async fn send_close(&mut self, code: u16, reason: &str) {
        let frame = CloseFrame {
            code: code.into(),
            reason: reason.into(),
        };
        self.ws.send(Message::Close(Some(frame))).await.unwrap();
    }

    /// Sends one WebSocket Ping control frame (the server's Pong is skipped by `recv`).
    pub async fn ws_ping(&mut self) {
        self.ws
            .send(Message::Ping(b"keepalive".to_vec().into()))
            .await
            .unwrap();
    }

    /// The next frame must be exactly `expected`.
    pub async fn expect_json(&mut self, expected: Value) {
        let v = self.recv_json().await;
        assert_eq!(v, expected);
    }

    /// The next frame must announce that `id` joined.
    pub async fn expect_new_participant(&mut self, id: &str) {
        self.expect_json(json!({"type": "newParticipant", "participantConnectionId": id}))
            .await;
    }

    /// The next frame must announce that `id` left.
    pub async fn expect_participant_left(&mut self, id: &str) {
        self.expect_json(json!({"type": "participantLeft", "participantConnectionId": id}))
            .await;
    }

    /// Sends `leaveRoom` (which has no reply when it succeeds) and waits until the server
    /// has handled it, with a ping barrier.
    pub async fn leave(&mut self) {
        self.send_json(json!({"action": "leaveRoom"})).await;
        self.expect_only_pong().await;
    }

    /// Sends `sendMsgToRoom`.
    pub async fn say(&mut self, room: &str, message: &str) {
        self.send_json(json!({"action": "sendMsgToRoom", "roomId": room, "message": message}))
            .await;
    }

    /// The next JSON frame that is not a `pong`, sending a JSON `ping` every `every` while
    /// waiting, so that this connection does not idle out. Fails after [`WAIT`].
    pub async fn recv_json_keeping_alive(&mut self, every: Duration) -> Value {
        let wait = async {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        self.ws
                            .send(Message::text(json!({"action": "ping"}).to_string()))
                            .await
                            .unwrap();
                    }
                    next = self.ws.next() => match next {
                        Some(Ok(Message::Text(t))) => {
                            let v: Value = serde_json::from_str(&t)
                                .unwrap_or_else(|e| panic!("not JSON ({e}): {t}"));
                            if v != json!({"type": "pong"}) {
                                return v;
                            }
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                        other => panic!("expected a text frame, got {other:?}"),
                    },
                }
            }
        };
        tokio::time::timeout(WAIT, wait)
            .await
            .expect("timed out waiting for a frame")
    }

    /// Waits for the server to close the socket with `code`; returns the reason.
    pub async fn expect_close_code(&mut self, code: u16) -> String {
        let frame = self
            .expect_close()
            .await
            .unwrap_or_else(|| panic!("socket ended without a close frame (wanted {code})"));
        assert_eq!(u16::from(frame.code), code, "close frame {frame:?}");
        frame.reason.to_string()
    }

    /// Drops the TCP stream without a WebSocket close frame (the kernel sends FIN, or RST
    /// if unread data is pending).
    pub fn drop_without_close(self) {
        drop(self);
    }

    /// Resets the TCP connection (`SO_LINGER` 0, then drop): the server sees RST, no close
    /// frame and no FIN.
    pub fn reset(self) {
        match self.ws.get_ref() {
            MaybeTlsStream::Plain(tcp) => tcp.set_zero_linger().unwrap(),
            MaybeTlsStream::Rustls(tls) => tls.get_ref().0.set_zero_linger().unwrap(),
            _ => unreachable!("tests connect over plain TCP or rustls"),
        }
        drop(self);
    }

    pub async fn close(mut self) {
        let _ = (*self.ws).close(None).await;
        // Drain until the server's close reply, so the close is complete.
        let _ = tokio::time::timeout(WAIT, async { while self.ws.next().await.is_some() {} }).await;
    }
}
