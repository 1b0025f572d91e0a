//! The bootstrap processes: spawned with the function's environment, respawned when they
//! exit, killed when the gateway stops, added while every one is busy (up to
//! `--max-instances`). The "bootstrap" here is a shell script that reports its environment
//! through a named pipe and waits; the test then plays the instance's runtime client on the
//! runtime API port it was given. It tests process handling only (the product path, with
//! the real bootstrap, is the lead's end-to-end suite).

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

mod support;

use std::{
    collections::HashMap,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    time::SystemTime,
};

use serde_json::json;
use support::{Gateway, Runtime, connect, http, parse_settings, send_text, within};

/// A fresh directory under the system's temporary directory.
fn temp_dir(name: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let dir = std::env::temp_dir().join(format!(
        "meshcall-gateway-{name}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A bootstrap that writes `PID=<pid>` and its environment to the pipe
/// `<dir>/<AWS_LAMBDA_LOG_STREAM_NAME>` (pipes for instances 0 and 1; a later instance
/// writes a plain file), then waits to be killed.
fn fake_bootstrap(dir: &Path) -> PathBuf {
    let script = dir.join("bootstrap");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n{{ echo \"PID=$$\"; env; }} > \"{}/$AWS_LAMBDA_LOG_STREAM_NAME\"\nexec sleep 300\n",
            dir.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    for n in 0..2 {
        let status = std::process::Command::new("mkfifo")
            .arg(dir.join(format!("local-{n}")))
            .status()
            .unwrap();
        assert!(status.success());
    }
    script
}

/// What instance `n` reported on starting: its environment, `PID` included.
async fn report(dir: &Path, n: usize) -> HashMap<String, String> {
    let pipe = dir.join(format!("local-{n}"));
    let text = within(
        &format!("instance {n} to start"),
        tokio::task::spawn_blocking(move || std::fs::read_to_string(pipe)),
    )
    .await
    .unwrap()
    .unwrap();
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn alive(pid: &str) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test]
async fn instances_get_the_functions_environment_are_respawned_and_stopped() {
    let dir = temp_dir("instances");
    let bootstrap = fake_bootstrap(&dir);
    let settings = parse_settings(&[
        "meshcall-gateway",
        "--listen",
        "127.0.0.1:0",
        "--instances",
        "2",
        "--sweep-every",
        "0",
        "--bootstrap",
        bootstrap.to_str().unwrap(),
        "--table",
        "t-instances",
        "--max-room-size",
        "3",
        "--allowed-origin",
        "http://a,http://b",
    ]);
    let gw = Gateway::start_with(settings).await;
    let (zero, one) = tokio::join!(report(&dir, 0), report(&dir, 1));

    for (n, env) in [(0, &zero), (1, &one)] {
        assert_eq!(env["AWS_LAMBDA_LOG_STREAM_NAME"], format!("local-{n}"));
        assert_eq!(env["AWS_LAMBDA_FUNCTION_NAME"], "meshcall");
        assert_eq!(env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "128");
        assert_eq!(env["AWS_LAMBDA_FUNCTION_VERSION"], "$LATEST");
        assert_eq!(env["AWS_LAMBDA_LOG_GROUP_NAME"], "/aws/lambda/meshcall");
        assert_eq!(env["MESHCALL_TABLE"], "t-instances");
        assert_eq!(env["MESHCALL_MAX_ROOM_SIZE"], "3");
        assert_eq!(env["MESHCALL_ALLOWED_ORIGINS"], "http://a,http://b");
        assert_eq!(env["MESHCALL_MAX_MESSAGE_BYTES"], "131072");
        // `@connections` with the stage, for the SDK and for the function's settings.
        let callback = format!("http://{}/local", gw.addr);
        assert_eq!(env["AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI"], callback);
        assert_eq!(env["MESHCALL_CALLBACK_URL"], callback);
        let runtime = &env["AWS_LAMBDA_RUNTIME_API"];
        assert!(runtime.starts_with("127.0.0.1:"), "{runtime}");
        // Secrets by parameter name only (no --create-table: no queue).
        assert_eq!(
            env["MESHCALL_RESUME_SECRET_PARAMETER"],
            "/t-instances/resume-secret"
        );
        for absent in [
            "MESHCALL_RESUME_SECRET",
            "MESHCALL_TURN_SECRET",
            "MESHCALL_TURN_SECRET_PARAMETER",
            "MESHCALL_EXPIRY_QUEUE_URL",
        ] {
            assert!(!env.contains_key(absent), "{absent}");
        }
        assert!(alive(&env["PID"]));
    }
    assert_ne!(
        zero["AWS_LAMBDA_RUNTIME_API"],
        one["AWS_LAMBDA_RUNTIME_API"]
    );

    // Each instance's runtime API answers (the same API as the shared one).
    let runtime: std::net::SocketAddr = zero["AWS_LAMBDA_RUNTIME_API"].parse().unwrap();
    let r = support::http(
        runtime,
        "POST",
        "/2018-06-01/runtime/invocation/unknown/response",
        &[],
        b"{}",
    )
    .await;
    assert_eq!(r.status, 400);

    // A dead instance is replaced, with the same runtime API and secret.
    let status = std::process::Command::new("kill")
        .args(["-9", &zero["PID"]])
        .status()
        .unwrap();
    assert!(status.success());
    let respawned = report(&dir, 0).await;
    assert_ne!(respawned["PID"], zero["PID"]);
    assert_eq!(
        respawned["AWS_LAMBDA_RUNTIME_API"],
        zero["AWS_LAMBDA_RUNTIME_API"]
    );
    assert_eq!(
        respawned["MESHCALL_CALLBACK_URL"],
        zero["MESHCALL_CALLBACK_URL"]
    );

    // Stopping the gateway stops its instances.
    gw.stop().await;
    assert!(!alive(&respawned["PID"]), "instance 0 outlived the gateway");
    assert!(!alive(&one["PID"]), "instance 1 outlived the gateway");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_missing_bootstrap_is_an_error() {
    let settings = parse_settings(&[
        "meshcall-gateway",
        "--instances",
        "1",
        "--bootstrap",
        "/nonexistent/bootstrap",
    ]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let runtime = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = meshcall_gateway::run(
        listener,
        runtime,
        &settings,
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("no Lambda bootstrap"), "{err}");
}

/// The runtime client of the instance that reported `env`.
fn runtime_of(env: &HashMap<String, String>) -> Runtime {
    Runtime {
        addr: env["AWS_LAMBDA_RUNTIME_API"].parse().unwrap(),
    }
}

/// `GET /_gateway/stats`'s `instances`.
async fn instances(gw: &Gateway) -> u64 {
    http(gw.addr, "GET", "/_gateway/stats", &[], b"")
        .await
        .json()["instances"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn instances_are_added_while_every_one_is_busy_up_to_the_maximum() {
    let dir = temp_dir("scaling");
    let bootstrap = fake_bootstrap(&dir);
    let gw = Gateway::start(&[
        "--instances",
        "1",
        "--max-instances",
        "2",
        "--bootstrap",
        bootstrap.to_str().unwrap(),
    ])
    .await;
    let zero = runtime_of(&report(&dir, 0).await);
    assert_eq!(instances(&gw).await, 1);

    // Instance 0 is free: a connection's $connect waits for it, no instance is added.
    let url = gw.ws_url("/ws");
    let a = tokio::spawn({
        let url = url.clone();
        async move { connect(&url).await }
    });
    let connect_a = zero.next().await;
    assert_eq!(connect_a.route(), "$connect");
    assert_eq!(instances(&gw).await, 1);

    // Instance 0 is busy: the next $connect starts instance 1, which takes it.
    let b = tokio::spawn(async move { connect(&url).await });
    let one = runtime_of(&report(&dir, 1).await);
    let connect_b = one.next().await;
    assert_eq!(connect_b.route(), "$connect");
    assert_eq!(instances(&gw).await, 2);
    zero.respond(&connect_a, &json!({"statusCode": 200})).await;
    one.respond(&connect_b, &json!({"statusCode": 200})).await;
    let mut a = within("a's upgrade", a).await.unwrap();
    let _b = within("b's upgrade", b).await.unwrap();

    // One connection's messages on both instances at once; a third waits for a free one
    // (the maximum is 2).
    for body in ["m1", "m2", "m3"] {
        send_text(&mut a, body).await;
    }
    let first = zero.next().await;
    let second = one.next().await;
    let mut bodies = [
        first.event["body"].as_str().unwrap().to_owned(),
        second.event["body"].as_str().unwrap().to_owned(),
    ];
    bodies.sort();
    within("the third message to be queued", async {
        loop {
            let idle = http(gw.addr, "GET", "/_gateway/idle", &[], b"")
                .await
                .text();
            if idle.starts_with("busy: 3 invocations") {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(instances(&gw).await, 2, "scaled past --max-instances");
    assert!(!dir.join("local-2").exists(), "a third instance started");
    zero.respond(&first, &json!({})).await;
    let third = zero.next().await;
    bodies.sort();
    let mut all: Vec<String> = bodies.to_vec();
    all.push(third.event["body"].as_str().unwrap().to_owned());
    all.sort();
    assert_eq!(all, ["m1", "m2", "m3"]);
    one.respond(&second, &json!({})).await;
    zero.respond(&third, &json!({})).await;
    assert_eq!(instances(&gw).await, 2);

    // The test plays the instances' runtime client; the fakes only wait to be killed.
    let f = support::Function::ok(zero);
    let g = support::Function::ok(one);
    drop(a);
    gw.stop().await;
    drop((f, g));
    let _ = std::fs::remove_dir_all(&dir);
}
