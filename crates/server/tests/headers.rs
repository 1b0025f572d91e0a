//! Security headers on every response of the self-hosted server: a Content-Security-Policy
//! that allows the app's own files and its socket on the same host, nosniff, no referrer,
//! no framing; HSTS only when the runtime says its certificate is real.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

mod support;

use std::net::SocketAddr;

use meshcall::{Settings, app};
use support::{TestServer, header, http_get};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// Checks the headers every response carries; returns the CSP.
fn assert_security_headers(path: &str, headers: &[(String, String)], host: &str) -> String {
    let csp = header(headers, "content-security-policy")
        .unwrap_or_else(|| panic!("{path}: no CSP in {headers:?}"))
        .to_owned();
    let scripts = csp
        .split(';')
        .find_map(|d| d.trim().strip_prefix("script-src "))
        .unwrap_or_else(|| panic!("{path}: no script-src in {csp:?}"));
    // The app's files, and one inline script by its hash: the boot script (checked against
    // the page in `the_policy_allows_the_pages_boot_script_by_its_hash`).
    let sources: Vec<&str> = scripts.split(' ').collect();
    assert!(
        sources.len() == 2 && sources[0] == "'self'" && sources[1].starts_with("'sha256-"),
        "{path}: script-src {scripts:?}"
    );
    for directive in [
        "default-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        &format!("connect-src 'self' ws://{host} wss://{host}"),
    ] {
        assert!(
            csp.split(';').any(|d| d.trim() == directive),
            "{path}: {directive:?} missing from {csp:?}"
        );
    }
    assert!(!csp.contains("unsafe"), "{path}: {csp}");
    assert_eq!(
        header(headers, "x-content-type-options"),
        Some("nosniff"),
        "{path}"
    );
    assert_eq!(
        header(headers, "referrer-policy"),
        Some("no-referrer"),
        "{path}"
    );
    assert_eq!(header(headers, "x-frame-options"), Some("DENY"), "{path}");
    csp
}

#[tokio::test]
async fn every_response_carries_the_security_headers_and_no_hsts_over_http() {
    let server = TestServer::start().await;
    let host = server.addr.to_string();
    for (path, status) in [
        ("/", 200),
        ("/r/x", 200),
        ("/config.json", 200),
        ("/js/main.js", 200),
        ("/css/app.css", 200),
        ("/missing.js", 404),
        ("/healthz", 200),
    ] {
        let (got, headers, _) = server.get(path).await;
        assert_eq!(got, status, "{path}");
        assert_security_headers(path, &headers, &host);
        assert_eq!(
            header(&headers, "strict-transport-security"),
            None,
            "{path}"
        );
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn the_policy_allows_the_pages_boot_script_by_its_hash() {
    use base64::{Engine as _, engine::general_purpose::STANDARD};
    use sha2::{Digest as _, Sha256};

    let server = TestServer::start().await;
    for path in ["/", "/r/x"] {
        let (status, headers, page) = server.get(path).await;
        assert_eq!(status, 200, "{path}");
        // The page's one attribute-less <script>: what a browser hashes is its exact text.
        let (_, after) = page.split_once("<script>").expect("an inline script");
        let (boot, _) = after.split_once("</script>").expect("its end");
        assert!(boot.contains("meshcallBoot"), "{path}: {boot}");
        let hash = format!("'sha256-{}'", STANDARD.encode(Sha256::digest(boot)));
        let csp = header(&headers, "content-security-policy").unwrap();
        assert!(
            csp.split(';')
                .any(|d| d.trim() == format!("script-src 'self' {hash}")),
            "{path}: {hash} not allowed by {csp:?}"
        );
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn hsts_is_sent_when_the_runtime_turns_it_on() {
    let settings = Settings::default();
    let shutdown = CancellationToken::new();
    let state = app::AppState::new(&settings, shutdown.clone(), TaskTracker::new()).with_hsts(true);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = app::router(state).into_make_service_with_connect_info::<SocketAddr>();
    let server = tokio::spawn(async move {
        axum::serve(listener, service)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
    });
    for path in ["/", "/r/x", "/config.json"] {
        let (status, headers, _) = http_get(addr, path).await;
        assert_eq!(status, 200);
        assert_security_headers(path, &headers, &addr.to_string());
        assert_eq!(
            header(&headers, "strict-transport-security"),
            Some("max-age=31536000"),
            "{path}"
        );
    }
    server.abort();
}

#[tokio::test]
async fn a_hostile_host_header_is_not_echoed_into_the_policy() {
    let server = TestServer::start().await;
    // A Host with a `;` would add a directive if copied: the policy keeps 'self' only.
    let raw = raw_get(server.addr, "evil.example; script-src *").await;
    let csp = raw
        .lines()
        .find_map(|l| l.strip_prefix("content-security-policy: "))
        .unwrap_or_else(|| panic!("no CSP in {raw}"));
    assert!(csp.ends_with("connect-src 'self'"), "{csp}");
    assert!(!csp.contains("evil"), "{csp}");
    server.stop().await.unwrap();
}

/// A GET with a given `Host` header; the raw response head, header names lower-cased.
async fn raw_get(addr: SocketAddr, host: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(support::WAIT, s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    head.lines()
        .map(|l| match l.split_once(':') {
            Some((k, v)) => format!("{}: {}", k.to_ascii_lowercase(), v.trim()),
            None => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}
