//! ACME end to end against a real ACME server: Debian's `pebble` (with
//! `pebble-challtestsrv` as its DNS, answering 127.0.0.1 for every name), started here on
//! 127.0.0.1, its TLS-ALPN-01 port pointed at meshcall's port, its certificates valid for
//! [`VALIDITY_SECS`] so that meshcall renews within the test.
//!
//! Runs only with `MESHCALL_PEBBLE=1`, which `scripts/test` sets when it runs this file
//! inside a loopback-only network namespace (`unshare --net`): pebble connects to whatever
//! the name resolves to, and nothing here may leave the machine.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

mod support;

use std::{net::SocketAddr, path::Path, process::Stdio, sync::Arc, time::Duration};

use futures_util::{SinkExt as _, StreamExt as _};
use meshcall::tls::self_signed::{self, Names};
use support::{
    child::{Meshcall, served_chain, wait_served},
    client_trusting, https_get,
};
use tokio::process::{Child, Command};
use tokio_tungstenite::{Connector, client_async_tls_with_config, tungstenite::Message};

/// Lifetime of pebble's certificates: meshcall renews at two thirds of it.
const VALIDITY_SECS: u64 = 12;

/// The name meshcall asks a certificate for.
const DOMAIN: &str = "meshcall.test";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn(program: &str, args: &[&str], envs: &[(&str, &str)], log: &Path) -> Child {
    Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log).unwrap())
        .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {program}: {e} (apt-get install pebble)"))
}

/// Waits until something accepts TCP on `addr`.
async fn wait_listening(addr: SocketAddr, what: &str) {
    let deadline = tokio::time::Instant::now() + support::WAIT;
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} never listened on {addr}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Pebble and its DNS, running; dropped, they are killed.
struct Pebble {
    _children: [Child; 2],
    acme_port: u16,
    /// Pebble's own HTTPS certificate (for its directory), PEM file.
    cert: std::path::PathBuf,
    /// Pebble's root for the certificates it issues, PEM.
    root: String,
}

impl Pebble {
    /// Starts `pebble-challtestsrv` and `pebble` with files in `d`, validating
    /// TLS-ALPN-01 on `meshcall_port`, and fetches pebble's root.
    async fn start(d: &Path, meshcall_port: u16) -> Self {
        // Pebble's own HTTPS certificate (for its directory), for 127.0.0.1.
        let mut names = Names::default();
        names.add("localhost");
        names.add("127.0.0.1");
        let pebble_tls = self_signed::load_or_create(
            &d.join("pebble-tls"),
            &names,
            std::time::SystemTime::now(),
        )
        .unwrap();
        let pebble_cert = d.join("pebble-tls").join(self_signed::CERT_FILE);
        let pebble_key = d.join("pebble-tls").join(self_signed::KEY_FILE);

        let (acme_port, mgmt_port, dns_port, dns_mgmt_port) =
            (free_port(), free_port(), free_port(), free_port());
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{acme_port}"),
            "managementListenAddress": format!("127.0.0.1:{mgmt_port}"),
            "certificate": pebble_cert,
            "privateKey": pebble_key,
            "httpPort": free_port(),
            "tlsPort": meshcall_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
            "certificateValidityPeriod": VALIDITY_SECS,
        }});
        let config_path = d.join("pebble.json");
        std::fs::write(&config_path, config.to_string()).unwrap();

        let dns = format!("127.0.0.1:{dns_port}");
        let challtestsrv = spawn(
            "pebble-challtestsrv",
            &[
                "-dns01",
                &dns,
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-management",
                &format!("127.0.0.1:{dns_mgmt_port}"),
                // No AAAA answers: pebble would try ::1 first, where meshcall does not listen.
                "-defaultIPv6",
                "",
            ],
            &[],
            &d.join("challtestsrv.log"),
        );
        let pebble = spawn(
            "pebble",
            &["-config", config_path.to_str().unwrap(), "-dnsserver", &dns],
            // No random sleeps before validation, and no randomly refused nonces: the test is
            // about meshcall, not about its client's retries.
            &[("PEBBLE_VA_NOSLEEP", "1"), ("PEBBLE_WFE_NONCEREJECT", "0")],
            &d.join("pebble.log"),
        );
        wait_listening(format!("127.0.0.1:{mgmt_port}").parse().unwrap(), "pebble").await;
        wait_listening(format!("127.0.0.1:{acme_port}").parse().unwrap(), "pebble").await;

        // Pebble's root, made fresh at its start: the only thing the client trusts.
        let pebble_trust = client_trusting(&pebble_tls.cert_pem);
        let mgmt: SocketAddr = format!("127.0.0.1:{mgmt_port}").parse().unwrap();
        let (status, _, root) = https_get(mgmt, &pebble_trust, "/roots/0").await;
        assert_eq!(status, 200, "{root}");
        Self {
            _children: [challtestsrv, pebble],
            acme_port,
            cert: pebble_cert,
            root,
        }
    }
}

#[tokio::test]
async fn meshcall_obtains_a_certificate_from_pebble_serves_it_and_renews_it() {
    if std::env::var("MESHCALL_PEBBLE").ok().as_deref() != Some("1") {
        eprintln!(
            "skipped: set MESHCALL_PEBBLE=1 inside a loopback-only namespace (scripts/test does)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let meshcall_port = free_port();
    let pebble = Pebble::start(d, meshcall_port).await;
    let (acme_port, pebble_cert) = (pebble.acme_port, pebble.cert.clone());
    let trust = client_trusting(&pebble.root);

    let listen = format!("127.0.0.1:{meshcall_port}");
    let server = Meshcall::start(&[
        "--listen",
        &listen,
        "--acme-domain",
        DOMAIN,
        "--acme-email",
        "ops@meshcall.test",
        "--acme-directory",
        &format!("https://127.0.0.1:{acme_port}/dir"),
        "--acme-directory-ca",
        pebble_cert.to_str().unwrap(),
        "--state-dir",
        d.join("state").to_str().unwrap(),
    ])
    .await;
    let addr = server.addr;

    // Issued: the handshake verifies against pebble's root, for the domain.
    let started = tokio::time::Instant::now();
    let first = wait_served(addr, DOMAIN, &trust, Duration::from_mins(1), |_| true).await;
    let issued_in = started.elapsed();
    assert!(
        served_chain(addr, "other.test", &trust).await.is_err(),
        "the certificate must name only the domain"
    );

    // The app over it: a WebSocket to wss://meshcall.test (resolved by hand to 127.0.0.1).
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut ws, _) = tokio::time::timeout(
        support::WAIT,
        client_async_tls_with_config(
            format!("wss://{DOMAIN}:{meshcall_port}/ws"),
            tcp,
            None,
            Some(Connector::Rustls(Arc::clone(&trust))),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    ws.send(Message::text(r#"{"action":"ping"}"#))
        .await
        .unwrap();
    let pong = tokio::time::timeout(support::WAIT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(pong.into_text().unwrap().as_str(), r#"{"type":"pong"}"#);

    // Renewed before it runs out: a different, equally trusted certificate.
    let renewed = wait_served(
        addr,
        DOMAIN,
        &trust,
        Duration::from_secs(VALIDITY_SECS * 3),
        |leaf| leaf != first.as_slice(),
    )
    .await;
    assert_ne!(renewed, first);
    // The log says so too: an issue, then a renewal.
    server
        .wait_log_count("an issue and a renewal", 2, |v| {
            v["fields"]["event"].as_str() == Some("DeployedNewCert")
        })
        .await;
    eprintln!(
        "pebble: issued in {:.1} s, renewed {:.1} s after start",
        issued_in.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    drop(ws);
    server.stop().await;
}
