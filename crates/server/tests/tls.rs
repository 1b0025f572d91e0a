//! HTTPS built in: the self-signed certificate (made, kept, served over wss), certificate
//! files reloaded on SIGHUP and on change while open connections stay, and the plain-HTTP
//! redirect. ACME against pebble is in `acme.rs`.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

mod support;

use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use futures_util::{SinkExt as _, StreamExt as _};
use meshcall::tls::self_signed::{self, Names};
use serde_json::{Value, json};
use support::{
    WAIT, child::Meshcall, child::message, child::served_chain, child::wait_served,
    client_trusting, http_get_with, https_get, settings,
};
use tokio::net::TcpListener;
use tokio_tungstenite::{
    Connector, MaybeTlsStream, WebSocketStream, connect_async, connect_async_tls_with_config,
    tungstenite::Message,
};
use tokio_util::sync::CancellationToken;

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

async fn wss(addr: SocketAddr, trust: &Arc<rustls::ClientConfig>) -> Ws {
    let url = format!("wss://{addr}/ws");
    let (ws, _) = tokio::time::timeout(
        WAIT,
        connect_async_tls_with_config(url, None, false, Some(Connector::Rustls(trust.clone()))),
    )
    .await
    .expect("wss connect timed out")
    .expect("wss connect failed");
    ws
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

async fn recv(ws: &mut Ws) -> Value {
    loop {
        let next = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("timed out waiting for a frame");
        match next {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).unwrap(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

async fn join(ws: &mut Ws, room: &str) -> String {
    send(ws, json!({"action": "joinRoom", "roomId": room})).await;
    let v = recv(ws).await;
    assert_eq!(v["type"], "joined", "{v}");
    v["connectionId"].as_str().unwrap().to_owned()
}

async fn pong(ws: &mut Ws) {
    send(ws, json!({"action": "ping"})).await;
    assert_eq!(recv(ws).await, json!({"type": "pong"}));
}

/// The in-process server with `flags` on 127.0.0.1 port 0.
async fn start(
    flags: &[&str],
) -> (
    SocketAddr,
    CancellationToken,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let settings = settings(flags);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let handle = tokio::spawn(async move { meshcall::run(listener, &settings, token).await });
    (addr, shutdown, handle)
}

/// Waits until `path` exists (the server writes it whole, through a rename); returns it.
async fn wait_file(path: &Path) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn wss_works_for_a_client_trusting_the_generated_certificate_and_restarts_keep_it() {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().to_str().unwrap();
    let (addr, shutdown, handle) = start(&["--tls-self-signed", "--state-dir", dir]).await;
    let pem = wait_file(&state.path().join("tls").join(self_signed::CERT_FILE)).await;
    let trust = client_trusting(&pem);

    // Two wss clients in a room: the protocol works over TLS.
    let mut a = wss(addr, &trust).await;
    let mut b = wss(addr, &trust).await;
    join(&mut a, "tls-room").await;
    let b_id = join(&mut b, "tls-room").await;
    assert_eq!(
        recv(&mut a).await,
        json!({"type": "newParticipant", "participantConnectionId": b_id})
    );
    let (status, headers, body) = https_get(addr, &trust, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    // No HSTS with a self-signed certificate: it would pin browsers to a warning.
    assert_eq!(support::header(&headers, "strict-transport-security"), None);

    // A client that does not trust this certificate refuses it; plain ws:// gets no
    // WebSocket. (The provider is named: with the AWS crates in the same build, rustls has
    // two and picks no default.)
    let stranger = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth(),
    );
    let public = tokio::time::timeout(
        WAIT,
        connect_async_tls_with_config(
            format!("wss://{addr}/ws"),
            None,
            false,
            Some(Connector::Rustls(stranger)),
        ),
    )
    .await
    .expect("connect timed out");
    let err = public.expect_err("a self-signed certificate must not pass the public roots");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    let plain = tokio::time::timeout(WAIT, connect_async(format!("ws://{addr}/ws")))
        .await
        .expect("connect timed out");
    assert!(plain.is_err(), "plain ws:// on the TLS port must fail");

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let key = state.path().join("tls").join(self_signed::KEY_FILE);
        let mode = std::fs::metadata(key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let first = served_chain(addr, "localhost", &trust).await.unwrap();
    drop((a, b));
    shutdown.cancel();
    tokio::time::timeout(WAIT, handle)
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    // A restart on the same state directory serves the very same certificate.
    let (addr, shutdown, handle) = start(&["--tls-self-signed", "--state-dir", dir]).await;
    let again = served_chain(addr, "127.0.0.1", &trust).await.unwrap();
    assert_eq!(again[0], first[0], "a restart must keep the certificate");
    shutdown.cancel();
    tokio::time::timeout(WAIT, handle)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn redirect_http_needs_a_tls_mode() {
    let (_, _, handle) = start(&["--redirect-http", "127.0.0.1:0"]).await;
    let err = tokio::time::timeout(WAIT, handle)
        .await
        .unwrap()
        .unwrap()
        .expect_err("--redirect-http without TLS must fail");
    assert!(
        format!("{err:#}").contains("--redirect-http needs a TLS mode"),
        "{err:#}"
    );
}

/// Two certificate pairs for localhost and 127.0.0.1, in files: `(dir, a, b)`, each
/// `(cert PEM, key PEM)`.
fn two_pairs() -> (tempfile::TempDir, (String, String), (String, String)) {
    let dir = tempfile::tempdir().unwrap();
    let mut names = Names::default();
    names.add("localhost");
    names.add("127.0.0.1");
    let pair = |sub: &str| {
        let made = self_signed::load_or_create(
            &dir.path().join(sub),
            &names,
            std::time::SystemTime::now(),
        )
        .unwrap();
        (made.cert_pem, made.key_pem)
    };
    let a = pair("a");
    let b = pair("b");
    assert_ne!(a.0, b.0);
    (dir, a, b)
}

/// Writes a pair where the server reads it: key first, then the certificate, each through
/// a rename, as certbot and friends do.
fn install(dir: &Path, pair: &(String, String)) {
    for (name, text) in [("key.pem", &pair.1), ("cert.pem", &pair.0)] {
        let tmp = dir.join(format!("{name}.new"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, dir.join(name)).unwrap();
    }
}

fn der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::{CertificateDer, pem::PemObject as _};
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

#[tokio::test]
async fn sighup_serves_new_files_to_new_connections_while_an_open_call_stays() {
    let (dir, a, b) = two_pairs();
    install(dir.path(), &a);
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    // Watching is off (an hour), so only the signal can cause the reload.
    let server = Meshcall::start(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--tls-watch-interval",
        "1h",
    ])
    .await;
    let trust = client_trusting(&format!("{}{}", a.0, b.0));
    let served = served_chain(server.addr, "localhost", &trust)
        .await
        .unwrap();
    assert_eq!(served[0], der(&a.0), "the first pair is served");

    // A call in progress over the first certificate.
    let mut alice = wss(server.addr, &trust).await;
    join(&mut alice, "reload").await;

    install(dir.path(), &b);
    // Nothing reloads without the signal.
    assert_eq!(
        served_chain(server.addr, "localhost", &trust)
            .await
            .unwrap()[0],
        der(&a.0)
    );
    server.signal("HUP");
    server
        .wait_log("the reload", |v| {
            message(v).starts_with("certificate reloaded")
        })
        .await;
    wait_served(server.addr, "localhost", &trust, WAIT, |leaf| {
        leaf == der(&b.0)
    })
    .await;

    // The open call is still up, and a newcomer (over the new certificate) reaches it.
    pong(&mut alice).await;
    let mut bob = wss(server.addr, &trust).await;
    let bob_id = join(&mut bob, "reload").await;
    assert_eq!(
        recv(&mut alice).await,
        json!({"type": "newParticipant", "participantConnectionId": bob_id})
    );
    drop((alice, bob));
    server.stop().await;
}

#[tokio::test]
async fn changed_files_are_reloaded_and_a_broken_pair_leaves_the_last_good_one() {
    let (dir, a, b) = two_pairs();
    install(dir.path(), &a);
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let server = Meshcall::start(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--tls-watch-interval",
        "100ms",
    ])
    .await;
    let trust = client_trusting(&format!("{}{}", a.0, b.0));
    assert_eq!(
        served_chain(server.addr, "localhost", &trust)
            .await
            .unwrap()[0],
        der(&a.0)
    );
    // An operator's own certificate is a real one: HSTS is on.
    let (_, headers, _) = support::https_get(server.addr, &trust, "/healthz").await;
    assert_eq!(
        support::header(&headers, "strict-transport-security"),
        Some("max-age=31536000")
    );

    install(dir.path(), &b);
    wait_served(server.addr, "localhost", &trust, WAIT, |leaf| {
        leaf == der(&b.0)
    })
    .await;

    // A's certificate with B's key does not fit: refused, B stays in force.
    std::fs::write(&cert, &a.0).unwrap();
    server
        .wait_log("the refused pair", |v| {
            message(v).starts_with("certificate not reloaded")
        })
        .await;
    assert_eq!(
        served_chain(server.addr, "localhost", &trust)
            .await
            .unwrap()[0],
        der(&b.0)
    );
    server.stop().await;
}

#[tokio::test]
async fn the_binary_prints_links_and_fingerprint_and_redirects_plain_http_with_308() {
    let state = tempfile::tempdir().unwrap();
    let server = Meshcall::start(&[
        "--tls-self-signed",
        "--state-dir",
        state.path().to_str().unwrap(),
        "--tls-hostname",
        "meshcall.test",
        "--redirect-http",
        "127.0.0.1:0",
    ])
    .await;
    let pem = wait_file(&state.path().join("tls").join(self_signed::CERT_FILE)).await;
    let fingerprint = meshcall::tls::fingerprint(&der(&pem));
    let announced = server
        .wait_log("the fingerprint", |v| {
            v["fields"]["fingerprint"].is_string()
        })
        .await;
    assert_eq!(announced["fields"]["fingerprint"], fingerprint.as_str());
    let link = format!("https://127.0.0.1:{}/", server.addr.port());
    server
        .wait_log("the link", |v| {
            message(v) == "open" && v["fields"]["link"] == link.as_str()
        })
        .await;
    // The extra name is in the certificate.
    let trust = client_trusting(&pem);
    served_chain(server.addr, "meshcall.test", &trust)
        .await
        .unwrap();

    let line = server
        .wait_log("the redirect listener", |v| {
            message(v).starts_with("redirecting plain HTTP")
        })
        .await;
    let plain: SocketAddr = line["fields"]["addr"].as_str().unwrap().parse().unwrap();
    let head = raw_request(
        plain,
        "GET /r/team?x=1 HTTP/1.1\r\nHost: call.example.org\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 308 "), "{head}");
    let want = format!(
        "location: https://call.example.org:{}/r/team?x=1\r\n",
        server.addr.port()
    );
    assert!(head.to_ascii_lowercase().contains(&want), "{head}");
    // The app itself is not served on the plain port.
    let (status, _, _) = http_get_with(plain, "/healthz", &[]).await;
    assert_eq!(status, 308);
    server.stop().await;
}

/// Sends `request` as is; returns the whole response.
async fn raw_request(addr: SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        String::from_utf8(buf).unwrap()
    };
    tokio::time::timeout(WAIT, fut)
        .await
        .expect("request timed out")
}

/// `scripts/test` runs the protocol suite once with `MESHCALL_SUITE_TLS=1` (and this file
/// with it): this proves that run really spoke TLS, and the plain run really did not.
#[tokio::test]
async fn the_suite_helper_speaks_tls_exactly_when_asked() {
    let server = support::TestServer::start().await;
    let mut client = server.client().await;
    client.join("suite-tls").await;
    let plain = tokio::time::timeout(WAIT, connect_async(format!("ws://{}/ws", server.addr)))
        .await
        .expect("connect timed out");
    if support::suite_tls() {
        assert!(server.ws_url().starts_with("wss://"));
        let tls = server.tls().unwrap();
        let served = served_chain(server.addr, "127.0.0.1", &tls.client)
            .await
            .unwrap();
        assert_eq!(served[0], der(&tls.cert_pem));
        assert!(
            plain.is_err(),
            "plain ws:// must fail on the TLS suite's server"
        );
    } else {
        assert!(server.ws_url().starts_with("ws://"));
        assert!(plain.is_ok());
    }
    server.stop().await.unwrap();
}

/// One address holding silent sockets on the HTTPS port (no `ClientHello`) costs only that
/// address: past `--max-handshakes-per-ip` its new sockets are closed at once (counted in
/// `/metrics`), the listener keeps accepting, and another address is served meanwhile.
#[tokio::test]
async fn silent_sockets_from_one_address_cost_only_that_address() {
    const PER_IP: usize = 8;
    const FLOOD: usize = 40;
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().to_str().unwrap();
    let per_ip = PER_IP.to_string();
    let (addr, shutdown, handle) = start(&[
        "--tls-self-signed",
        "--state-dir",
        dir,
        "--max-handshakes-per-ip",
        &per_ip,
    ])
    .await;
    let pem = wait_file(&state.path().join("tls").join(self_signed::CERT_FILE)).await;
    let trust = client_trusting(&pem);

    // The flood, from 127.0.0.2 (loopback, another address), one socket after another so
    // the server accepts them in this order.
    let mut flood = Vec::new();
    for _ in 0..FLOOD {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from(([127, 0, 0, 2], 0))).unwrap();
        flood.push(
            tokio::time::timeout(WAIT, socket.connect(addr))
                .await
                .expect("connect timed out")
                .unwrap(),
        );
    }
    // Everyone else is served while the flood holds its places.
    let (status, _, body) = https_get(addr, &trust, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let mut b = wss(addr, &trust).await;
    pong(&mut b).await;

    // Past its share, the flood's sockets were closed at once: well before the 10 s
    // handshake timeout that ends the ones holding a place.
    for (i, socket) in flood.iter_mut().enumerate().skip(PER_IP) {
        use tokio::io::AsyncReadExt as _;
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(3), socket.read(&mut byte))
            .await
            .unwrap_or_else(|_| panic!("flood socket {i} still open past the per-address bound"));
        assert!(matches!(read, Ok(0) | Err(_)), "socket {i}: {read:?}");
    }
    // Those holding a place are still waiting for their handshake.
    for (i, socket) in flood.iter().take(PER_IP).enumerate() {
        let mut byte = [0u8; 1];
        let read = socket.try_read(&mut byte);
        assert!(
            matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "socket {i} (within the bound) should be open: {read:?}"
        );
    }
    let (_, _, metrics) = https_get(addr, &trust, "/metrics").await;
    let refused = format!(
        "meshcall_limit_hits_total{{limit=\"handshakes_per_ip\"}} {}",
        FLOOD - PER_IP
    );
    assert!(metrics.contains(&refused), "want {refused} in\n{metrics}");

    drop(flood);
    shutdown.cancel();
    handle.await.unwrap().unwrap();
}

/// An `http://` URL with the HTTPS port (a plain request where TLS is expected) is
/// redirected to `https://`, not answered with bytes a browser shows as an error.
#[tokio::test]
async fn a_plain_request_on_the_https_port_is_redirected() {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().to_str().unwrap();
    let (addr, shutdown, handle) = start(&["--tls-self-signed", "--state-dir", dir]).await;
    wait_file(&state.path().join("tls").join(self_signed::CERT_FILE)).await;
    let port = addr.port();
    let response = raw_request(
        addr,
        &format!("GET /r/team?x=1 HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 308"), "{response}");
    assert!(
        response.to_ascii_lowercase().contains(&format!(
            "location: https://localhost:{port}/r/team?x=1\r\n"
        )),
        "{response}"
    );
    shutdown.cancel();
    handle.await.unwrap().unwrap();
}
