//! Shared by the gateway tests: the gateway in-process on 127.0.0.1 port 0 with no
//! bootstrap (`--instances 0`), a test-only Lambda runtime client that polls its runtime
//! API, a minimal HTTP/1.1 client, and WebSocket helpers. Every wait has a timeout.

#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use std::{
    collections::VecDeque, fmt::Write as _, future::Future, net::SocketAddr, pin::Pin, sync::Arc,
    time::Duration,
};

use clap::Parser as _;
use futures_util::{SinkExt as _, StreamExt as _};
use meshcall_gateway::Settings;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::mpsc,
    task::JoinHandle,
};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{Message, protocol::Role},
};
use tokio_util::sync::CancellationToken;

/// How long any single wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// Awaits `f`, failing the test after [`WAIT`].
pub async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// A gateway running in-process.
pub struct Gateway {
    pub addr: SocketAddr,
    pub runtime: SocketAddr,
    pub shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Gateway {
    /// Starts a gateway with `args`, by default `--instances 0 --sweep-every 0`.
    pub async fn start(args: &[&str]) -> Self {
        let mut argv = vec!["meshcall-gateway"];
        for (flag, value) in [
            ("--listen", "127.0.0.1:0"),
            ("--instances", "0"),
            ("--sweep-every", "0"),
        ] {
            if !args.contains(&flag) {
                argv.extend([flag, value]);
            }
        }
        argv.extend_from_slice(args);
        let settings = parse_settings(&argv);
        Self::start_with(settings).await
    }

    /// Starts a gateway with `settings`.
    pub async fn start_with(settings: Settings) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let runtime = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let runtime_addr = runtime.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let task = tokio::spawn(async move {
            meshcall_gateway::run(listener, runtime, &settings, token).await
        });
        Self {
            addr,
            runtime: runtime_addr,
            shutdown,
            task,
        }
    }

    /// Stops the gateway and waits for `run` to return.
    pub async fn stop(self) {
        self.shutdown.cancel();
        within("the gateway to stop", self.task)
            .await
            .unwrap()
            .unwrap();
    }

    /// The WebSocket URL at `path`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// A runtime client of this gateway's runtime API.
    pub fn runtime(&self) -> Runtime {
        Runtime { addr: self.runtime }
    }
}

/// Parses gateway settings from `argv` (its first item is the program name).
pub fn parse_settings(argv: &[&str]) -> Settings {
    // `argv` names the program first, as `std::env::args` does.
    Settings::try_parse_from(argv).unwrap()
}

/// One HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{:?} is not JSON: {e}", self.text()))
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`), without a timeout.
pub async fn http_untimed(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // One write, without Nagle: the request is never held back by this side.
    stream.set_nodelay(true).unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        let _ = write!(request, "Host: {addr}\r\n");
    }
    for (name, value) in headers {
        let _ = write!(request, "{name}: {value}\r\n");
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    parse_response(&raw)
}

/// One HTTP/1.1 request, failing the test after [`WAIT`].
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    within(
        &format!("{method} {path}"),
        http_untimed(addr, method, path, headers, body),
    )
    .await
}

fn parse_response(raw: &[u8]) -> HttpResponse {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = raw.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&raw[..line_end])
                .split(';')
                .next()
                .unwrap_or("0")
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = line_end + 2;
        out.extend_from_slice(&raw[start..start + size]);
        raw = &raw[start + size + 2..];
    }
}

/// One invocation a runtime client took.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub request_id: String,
    pub event: Value,
    /// The `/next` response, kept for checks of its headers.
    pub response: HttpResponse,
}

impl Invocation {
    /// The event's `requestContext.routeKey`.
    pub fn route(&self) -> &str {
        self.event["requestContext"]["routeKey"]
            .as_str()
            .unwrap_or_default()
    }

    /// The event's `requestContext.connectionId`.
    pub fn conn(&self) -> &str {
        self.event["requestContext"]["connectionId"]
            .as_str()
            .unwrap_or_default()
    }
}

/// A test-only Lambda runtime client: what `lambda_runtime` does, by hand.
#[derive(Debug, Clone, Copy)]
pub struct Runtime {
    pub addr: SocketAddr,
}

impl Runtime {
    /// Long-polls for the next invocation, failing after [`WAIT`].
    pub async fn next(&self) -> Invocation {
        within("an invocation", self.next_untimed()).await
    }

    /// Long-polls for the next invocation, `None` after `wait`.
    pub async fn next_within(&self, wait: Duration) -> Option<Invocation> {
        tokio::time::timeout(wait, self.next_untimed()).await.ok()
    }

    async fn next_untimed(&self) -> Invocation {
        let r = http_untimed(
            self.addr,
            "GET",
            "/2018-06-01/runtime/invocation/next",
            &[],
            b"",
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        Invocation {
            request_id: r
                .header("lambda-runtime-aws-request-id")
                .expect("a request id")
                .to_owned(),
            event: r.json(),
            response: r,
        }
    }

    /// Answers `invocation` with `body`.
    pub async fn respond(&self, invocation: &Invocation, body: &Value) {
        self.answer(
            invocation,
            "response",
            &[("Content-Type", "application/json")],
            body,
        )
        .await;
    }

    /// Answers `invocation` with an error, as `lambda_runtime` reports a handler error.
    pub async fn fail(&self, invocation: &Invocation, message: &str) {
        let body = json!({"errorType": "&str", "errorMessage": message});
        self.answer(
            invocation,
            "error",
            &[("lambda-runtime-function-error-type", "unhandled")],
            &body,
        )
        .await;
    }

    /// Posts `body` to `invocation/{id}/{outcome}` and expects it accepted.
    async fn answer(
        &self,
        invocation: &Invocation,
        outcome: &str,
        headers: &[(&str, &str)],
        body: &Value,
    ) {
        let path = format!(
            "/2018-06-01/runtime/invocation/{}/{outcome}",
            invocation.request_id
        );
        let r = http(
            self.addr,
            "POST",
            &path,
            headers,
            body.to_string().as_bytes(),
        )
        .await;
        assert_eq!(r.status, 202, "{}", r.text());
    }
}

/// What the fake function answers to an event.
pub type Handler = Arc<dyn Fn(Value) -> Pin<Box<dyn Future<Output = Value> + Send>> + Send + Sync>;

/// A handler that answers `{"statusCode": 200}` to everything.
pub fn ok_handler() -> Handler {
    Arc::new(|_| Box::pin(async { json!({"statusCode": 200}) }))
}

/// A fake function: `pollers` runtime clients answering with `handler`, recording every
/// event they took.
pub struct Function {
    events: mpsc::UnboundedReceiver<Value>,
    buffered: VecDeque<Value>,
    pollers: Vec<JoinHandle<()>>,
}

impl Function {
    /// Starts `pollers` runtime clients of `runtime`.
    pub fn start(runtime: Runtime, pollers: usize, handler: &Handler) -> Self {
        let (tx, events) = mpsc::unbounded_channel();
        let pollers = (0..pollers)
            .map(|_| {
                let tx = tx.clone();
                let handler = handler.clone();
                tokio::spawn(async move {
                    loop {
                        let invocation = runtime.next_untimed().await;
                        let _ = tx.send(invocation.event.clone());
                        let body = handler(invocation.event.clone()).await;
                        runtime.respond(&invocation, &body).await;
                    }
                })
            })
            .collect();
        Self {
            events,
            buffered: VecDeque::new(),
            pollers,
        }
    }

    /// A function that answers 200 to everything, with 2 pollers.
    pub fn ok(runtime: Runtime) -> Self {
        Self::start(runtime, 2, &ok_handler())
    }

    /// The next event taken (in the order taken).
    pub async fn next(&mut self) -> Value {
        if let Some(e) = self.buffered.pop_front() {
            return e;
        }
        within("an event", self.events.recv())
            .await
            .expect("the pollers run")
    }

    /// The next event matching `pred`; the others stay for later calls.
    pub async fn next_where(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.buffered.iter().position(&pred) {
            return self.buffered.remove(i).expect("just found");
        }
        within(what, async {
            loop {
                let e = self.events.recv().await.expect("the pollers run");
                if pred(&e) {
                    return e;
                }
                self.buffered.push_back(e);
            }
        })
        .await
    }

    /// The next event of connection `conn` with `route`.
    pub async fn next_of(&mut self, conn: &str, route: &str) -> Value {
        let (c, r) = (conn.to_owned(), route.to_owned());
        self.next_where(&format!("{route} of {conn}"), move |e| {
            e["requestContext"]["connectionId"] == c.as_str()
                && e["requestContext"]["routeKey"] == r.as_str()
        })
        .await
    }

    /// The next event with `route`, any connection.
    pub async fn next_route(&mut self, route: &str) -> Value {
        let r = route.to_owned();
        self.next_where(route, move |e| {
            e["requestContext"]["routeKey"] == r.as_str()
        })
        .await
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        for p in &self.pollers {
            p.abort();
        }
    }
}

/// A WebSocket client.
pub type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Connects a WebSocket client to `url`.
pub async fn connect(url: &str) -> Client {
    // Boxed: with rustls compiled in (the workspace's TLS tests enable it), the handshake
    // future is about 20 KB.
    within(
        "the WebSocket handshake",
        Box::pin(tokio_tungstenite::connect_async(url)),
    )
    .await
    .unwrap_or_else(|e| panic!("connecting to {url}: {e}"))
    .0
}

/// The `requestContext.connectionId` of an event.
pub fn conn_id(event: &Value) -> String {
    event["requestContext"]["connectionId"]
        .as_str()
        .expect("a connection id")
        .to_owned()
}

/// Connects a client at `/ws` and takes its `$connect` from `f`: the client and its id.
pub async fn connected(gw: &Gateway, f: &mut Function) -> (Client, String) {
    let ws = connect(&gw.ws_url("/ws")).await;
    let id = conn_id(&f.next_route("$connect").await);
    (ws, id)
}

/// `id`'s `$disconnect` from `f`, checked to carry the close status `code`.
pub async fn disconnected(f: &mut Function, id: &str, code: u16) -> Value {
    let event = f.next_of(id, "$disconnect").await;
    assert_eq!(
        event["requestContext"]["disconnectStatusCode"], code,
        "{event:#}"
    );
    event
}

/// A WebSocket handshake request written by hand, header names as given.
pub fn handshake_request(addr: SocketAddr, path: &str, extra: &[(&str, &str)]) -> String {
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    for (name, value) in extra {
        let _ = write!(request, "{name}: {value}\r\n");
    }
    request.push_str("\r\n");
    request
}

/// A WebSocket over a raw handshake written by hand (header names as given), returning the
/// stream before it is wrapped, after the 101.
pub async fn raw_handshake(addr: SocketAddr, path: &str, extra: &[(&str, &str)]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = handshake_request(addr, path, extra);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    within("the handshake response", async {
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            let n = stream.read(&mut byte).await.unwrap();
            assert_eq!(n, 1, "EOF in the handshake response: {head:?}");
            head.push(byte[0]);
        }
    })
    .await;
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    stream
}

/// Wraps a handshaken stream as a WebSocket client.
pub async fn wrap(stream: TcpStream) -> WebSocketStream<TcpStream> {
    WebSocketStream::from_raw_socket(stream, Role::Client, None).await
}

/// Reads until the server's close frame: its code and reason.
pub async fn read_close<S>(ws: &mut WebSocketStream<S>) -> (u16, String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    within("a close frame", async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(Some(frame)))) => {
                    return (u16::from(frame.code), frame.reason.to_string());
                }
                Some(Ok(Message::Close(None))) => return (1005, String::new()),
                Some(Ok(_)) => {}
                other => panic!("no close frame: {other:?}"),
            }
        }
    })
    .await
}

/// Reads the next text frame.
pub async fn read_text<S>(ws: &mut WebSocketStream<S>) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    within("a text frame", async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => return t.to_string(),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    })
    .await
}

/// Sends a text frame.
pub async fn send_text<S>(ws: &mut WebSocketStream<S>, text: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    within("a send", ws.send(Message::text(text)))
        .await
        .unwrap();
}
