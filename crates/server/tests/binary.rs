//! The `meshcall` binary as a user runs it: flags, logs, port 0, SIGTERM.

#![allow(clippy::unwrap_used)]

mod support;

use std::{
    io::{BufRead as _, BufReader},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use support::{Client, WAIT};

/// Starts the binary with `args`; returns the child and the address it logged.
fn start(args: &[&str]) -> (Child, SocketAddr, mpsc::Receiver<String>) {
    start_with_env(args, &[])
}

fn start_with_env(
    args: &[&str],
    vars: &[(&str, &str)],
) -> (Child, SocketAddr, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshcall"))
        .args(args)
        .envs(vars.iter().copied())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let addr = loop {
        let line = lines.recv_timeout(WAIT).expect("no listening line logged");
        if line.contains("meshcall listening") {
            let at = line.find("127.0.0.1:").expect("address in the log line");
            let addr: String = line[at..]
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                .collect();
            break addr.parse().unwrap();
        }
    };
    (child, addr, lines)
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(std::time::Instant::now() < deadline, "binary did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[tokio::test]
async fn sigterm_closes_sockets_with_1001_and_exits_zero() {
    let (mut child, addr, _lines) = start(&["--listen", "127.0.0.1:0"]);
    let (status, _, body) = support::http_get(addr, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .unwrap();
    let mut client = Client { ws: Box::new(ws) };
    client.join("123").await;

    sigterm(&child);
    let close = client.expect_close().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1001);
    let status = tokio::task::spawn_blocking(move || wait_exit(&mut child))
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn json_log_format_writes_one_object_per_line() {
    let (mut child, _addr, lines) = start(&["--listen", "127.0.0.1:0", "--log-format", "json"]);
    sigterm(&child);
    assert_eq!(wait_exit(&mut child).code(), Some(0));
    // The reader thread ends at EOF, which the exit guarantees.
    let logged: Vec<String> = lines.iter().collect();
    assert!(
        logged.iter().any(|l| l.contains("meshcall stopped")),
        "{logged:?}"
    );
    for line in logged {
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string(), "{line}");
    }
}

#[tokio::test]
async fn settings_come_from_environment_variables() {
    let bad = Command::new(env!("CARGO_BIN_EXE_meshcall"))
        .env("MESHCALL_MAX_ROOM_SIZE", "lots")
        .output()
        .unwrap();
    assert!(!bad.status.success(), "a bad MESHCALL_ variable is refused");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("lots"));

    let (mut child, addr, _lines) = start_with_env(
        &[],
        &[
            ("MESHCALL_LISTEN", "127.0.0.1:0"),
            ("MESHCALL_MAX_ROOM_SIZE", "1"),
        ],
    );
    let connect = || async {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
            .await
            .unwrap();
        Client { ws: Box::new(ws) }
    };
    let mut first = connect().await;
    first.join("solo").await;
    let mut second = connect().await;
    second
        .send_json(serde_json::json!({"action": "joinRoom", "roomId": "solo"}))
        .await;
    second.expect_error("roomFull").await;
    sigterm(&child);
    let status = tokio::task::spawn_blocking(move || wait_exit(&mut child))
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn help_lists_every_setting_with_its_variable() {
    let out = Command::new(env!("CARGO_BIN_EXE_meshcall"))
        .arg("--help")
        .env("MESHCALL_TURN_SECRET", "do-not-print-me")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for var in [
        "MESHCALL_LISTEN",
        "MESHCALL_MAX_ROOM_SIZE",
        "MESHCALL_MAX_MESSAGE_BYTES",
        "MESHCALL_IDLE_TIMEOUT",
        "MESHCALL_RATE_PER_SECOND",
        "MESHCALL_RATE_BURST",
        "MESHCALL_STUN",
        "MESHCALL_ALLOWED_ORIGINS",
        "MESHCALL_QUEUE_CAPACITY",
        "MESHCALL_READ_BUFFER_BYTES",
        "MESHCALL_SEND_TIMEOUT",
        "MESHCALL_SHUTDOWN_TIMEOUT",
        "MESHCALL_LOG_FORMAT",
        "MESHCALL_RESUME_GRACE",
        "MESHCALL_TURN",
        "MESHCALL_TURN_SECRET",
        "MESHCALL_TURN_TTL",
    ] {
        assert!(help.contains(var), "--help lacks {var}");
    }
    assert!(
        !help.contains("do-not-print-me"),
        "--help shows the TURN secret"
    );
}

/// `meshcall` with `args` and `vars` run to its end: exit code, stdout, stderr.
fn run(args: &[&str], vars: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_meshcall"))
        .args(args)
        .envs(vars.iter().copied())
        .output()
        .unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (
        out.status.code().unwrap(),
        text(out.stdout),
        text(out.stderr),
    )
}

#[tokio::test]
async fn an_empty_variable_is_not_set() {
    // Once: MESHCALL_ACME_DOMAIN= asked an ACME CA for the domain "" forever, and
    // MESHCALL_REDIRECT_HTTP= was refused as no address. Now both are not set: plain HTTP.
    let (mut child, addr, _lines) = start_with_env(
        &["--listen", "127.0.0.1:0"],
        &[
            ("MESHCALL_ACME_DOMAIN", ""),
            ("MESHCALL_REDIRECT_HTTP", ""),
            ("MESHCALL_TLS_SELF_SIGNED", ""),
            ("MESHCALL_STUN", ""),
            ("MESHCALL_MAX_CONNECTIONS_PER_IP", ""),
            ("MESHCALL_IDLE_TIMEOUT", ""),
        ],
    );
    // Plain HTTP answers: no TLS mode was started.
    let (status, _, body) = support::http_get(addr, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    sigterm(&child);
    let status = tokio::task::spawn_blocking(move || wait_exit(&mut child))
        .await
        .unwrap();
    assert!(status.success());
    // Together with an on/off variable set, they would conflict if they were set.
    let (code, _, stderr) = run(
        &["app-config"],
        &[
            ("MESHCALL_TLS_SELF_SIGNED", "1"),
            ("MESHCALL_ACME_DOMAIN", ""),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn on_off_variables_take_every_usual_spelling() {
    for on in ["1", "yes", "true", "on", "TRUE"] {
        // On, it conflicts with a certificate file: proof that it was read as on.
        let (code, _, stderr) = run(
            &["app-config"],
            &[
                ("MESHCALL_TLS_SELF_SIGNED", on),
                ("MESHCALL_TLS_CERT", "c.pem"),
                ("MESHCALL_TLS_KEY", "k.pem"),
            ],
        );
        assert_eq!(code, 2, "{on}: {stderr}");
        assert!(stderr.contains("cannot be used with"), "{on}: {stderr}");
    }
    for off in ["0", "no", "false", "off"] {
        let (code, _, stderr) = run(
            &["app-config"],
            &[
                ("MESHCALL_TLS_SELF_SIGNED", off),
                ("MESHCALL_TLS_CERT", "c.pem"),
                ("MESHCALL_TLS_KEY", "k.pem"),
            ],
        );
        assert_eq!(code, 0, "{off}: {stderr}");
    }
    let (code, _, stderr) = run(&["app-config"], &[("MESHCALL_TLS_SELF_SIGNED", "maybe")]);
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn ice_server_urls_are_checked_at_start() {
    for (flag, value) in [
        ("--stun", "bogus"),
        ("--turn", "bogus"),
        ("--stun", "turn:t:3478"),
    ] {
        let (code, _, stderr) = run(&[flag, value, "--turn-secret", "s"], &[]);
        assert_eq!(code, 2, "{flag} {value}: {stderr}");
        assert!(stderr.contains("is not an ICE server URL"), "{stderr}");
    }
    let (code, _, stderr) = run(&["app-config"], &[("MESHCALL_STUN", "bogus")]);
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn app_config_prints_the_app_s_settings() {
    let (code, stdout, stderr) = run(
        &[
            "app-config",
            "--ws-url",
            "wss://api.example/prod",
            "--force-relay=true",
        ],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "wsUrl": "wss://api.example/prod",
            "socketMaxAgeMs": 6_900_000,
            "iceTransportPolicy": "relay",
        })
    );
    let (_, stdout, _) = run(&["app-config", "--max-connection-age", "0"], &[]);
    assert_eq!(stdout, "{}\n");
}
