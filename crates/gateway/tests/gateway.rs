//! The gateway against a test-only runtime client (no bootstrap, no DynamoDB): event
//! shapes, route selection, concurrent invocations, `$connect` refusals, `@connections` at
//! the stage path, close codes (1003 for binary frames), lost `$disconnect`s, limits, the
//! sweep, the web app, shutdown, and notification latency (`TCP_NODELAY`).

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

mod support;

use std::{sync::Arc, time::Duration};

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use aws_sdk_apigatewaymanagement::{
    Client as Management,
    config::{BehaviorVersion, Credentials, Region},
    primitives::Blob,
};
use futures_util::SinkExt as _;
use serde_json::{Value, json};
use tokio::{io::AsyncWriteExt as _, sync::mpsc};
use tokio_tungstenite::tungstenite::{
    self, Message,
    protocol::{CloseFrame, frame::coding::CloseCode},
};

use support::{
    Function, Gateway, Handler, conn_id, connect, connected, disconnected, handshake_request, http,
    raw_handshake, read_close, read_text, send_text, within, wrap,
};

fn ok() -> Value {
    json!({"statusCode": 200})
}

/// Checks that `event` is an API Gateway WebSocket event to the typed model the function
/// uses.
fn typed(event: &Value) -> ApiGatewayWebsocketProxyRequest {
    serde_json::from_value(event.clone())
        .unwrap_or_else(|e| panic!("not an ApiGatewayWebsocketProxyRequest: {e}\n{event:#}"))
}

/// A connection id as a URL path segment (ids are base64: `+`, `/`, `=`).
fn encode(id: &str) -> String {
    id.replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

fn management(endpoint: &str) -> Management {
    let config = aws_sdk_apigatewaymanagement::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .endpoint_url(endpoint)
        .build();
    Management::from_conf(config)
}

#[tokio::test]
async fn connect_event_has_api_gateway_shape() {
    let gw = Gateway::start(&[]).await;
    let mut f = Function::ok(gw.runtime());
    let stream = raw_handshake(
        gw.addr,
        "/ws?token=abc&x=1&x=2",
        &[
            ("Origin", "http://example.test"),
            ("User-Agent", "test-agent/1"),
        ],
    )
    .await;
    let event = f.next().await;
    let ctx = &event["requestContext"];
    assert_eq!(ctx["routeKey"], "$connect");
    assert_eq!(ctx["eventType"], "CONNECT");
    assert_eq!(ctx["messageDirection"], "IN");
    assert_eq!(ctx["stage"], "local");
    assert_eq!(ctx["apiId"], "local");
    assert_eq!(ctx["domainName"], gw.addr.to_string());
    assert_eq!(ctx["identity"]["sourceIp"], "127.0.0.1");
    assert_eq!(ctx["identity"]["userAgent"], "test-agent/1");
    assert_eq!(conn_id(&event).len(), 16);
    assert!(ctx["connectedAt"].as_i64().unwrap() <= ctx["requestTimeEpoch"].as_i64().unwrap());
    let time = ctx["requestTime"].as_str().unwrap();
    assert!(time.len() == 26 && time.ends_with(" +0000"), "{time}");
    assert_eq!(ctx["requestId"], ctx["extendedRequestId"]);
    assert!(ctx.get("messageId").is_none());
    assert!(ctx.get("disconnectStatusCode").is_none());
    // Header names as the client wrote them, plus API Gateway's X-Forwarded-*.
    assert_eq!(event["headers"]["Origin"], "http://example.test");
    assert_eq!(
        event["headers"]["Sec-WebSocket-Key"],
        "dGhlIHNhbXBsZSBub25jZQ=="
    );
    assert_eq!(event["headers"]["X-Forwarded-For"], "127.0.0.1");
    assert_eq!(
        event["multiValueHeaders"]["Origin"],
        json!(["http://example.test"])
    );
    assert_eq!(
        event["queryStringParameters"],
        json!({"token": "abc", "x": "2"})
    );
    assert_eq!(
        event["multiValueQueryStringParameters"]["x"],
        json!(["1", "2"])
    );
    assert_eq!(event["isBase64Encoded"], false);
    assert!(event.get("body").is_none());
    let t = typed(&event);
    assert_eq!(
        t.headers.get("origin").and_then(|v| v.to_str().ok()),
        Some("http://example.test")
    );
    assert_eq!(t.query_string_parameters.first("token"), Some("abc"));
    assert_eq!(t.request_context.event_type.as_deref(), Some("CONNECT"));

    // The upgrade went through: messages of the same connection follow.
    let mut ws = wrap(stream).await;
    send_text(&mut ws, r#"{"action":"ping"}"#).await;
    let message = f.next().await;
    assert_eq!(conn_id(&message), conn_id(&event));
    assert_eq!(message["requestContext"]["connectedAt"], ctx["connectedAt"]);
    gw.stop().await;
}

#[tokio::test]
async fn websocket_at_the_stage_path() {
    let gw = Gateway::start(&["--stage", "prod"]).await;
    let mut f = Function::ok(gw.runtime());
    let mut ws = connect(&gw.ws_url("/prod")).await;
    let event = f.next_route("$connect").await;
    assert_eq!(event["requestContext"]["stage"], "prod");
    assert!(
        event["headers"]["Sec-WebSocket-Key"].is_string(),
        "{event:#}"
    );
    send_text(&mut ws, r#"{"action":"ping"}"#).await;
    let message = f.next_route("ping").await;
    assert_eq!(message["requestContext"]["stage"], "prod");
    gw.stop().await;
}

#[tokio::test]
async fn messages_are_routed_by_action() {
    let gw = Gateway::start(&[]).await;
    let mut f = Function::ok(gw.runtime());
    let (mut ws, conn) = connected(&gw, &mut f).await;
    let cases = [
        (r#"{"action":"joinRoom","roomId":"1"}"#, "joinRoom"),
        (
            r#"{"action":"sendMsgToRoom","roomId":"1","message":"hi"}"#,
            "sendMsgToRoom",
        ),
        (r#"{"action":"signal","to":"x","data":{}}"#, "signal"),
        (r#"{"action":"leaveRoom"}"#, "leaveRoom"),
        (r#"{"action":"ping"}"#, "ping"),
        (r#"{"action":"resume","token":"t"}"#, "resume"),
        (r#"{"action":"nope"}"#, "$default"),
        (r#"{"action":7}"#, "$default"),
        (r#"{"roomId":"1"}"#, "$default"),
        (r#"["joinRoom"]"#, "$default"),
        ("not json", "$default"),
    ];
    for (body, _) in cases {
        send_text(&mut ws, body).await;
    }
    // Invoked concurrently: taken in any order.
    let mut events = Vec::new();
    for _ in cases {
        events.push(f.next().await);
    }
    for (body, route) in cases {
        let i = events
            .iter()
            .position(|e| e["body"] == body)
            .unwrap_or_else(|| panic!("no event for {body}"));
        let event = events.swap_remove(i);
        let ctx = &event["requestContext"];
        assert_eq!(ctx["routeKey"], route, "{body}");
        assert_eq!(ctx["eventType"], "MESSAGE");
        assert_eq!(conn_id(&event), conn);
        assert_eq!(ctx["messageId"].as_str().map(str::len), Some(16));
        assert_eq!(event["body"], body);
        assert_eq!(event["isBase64Encoded"], false);
        assert!(event.get("headers").is_none());
        let t = typed(&event);
        assert_eq!(t.body.as_deref(), Some(body));
    }
    gw.stop().await;
}

#[tokio::test]
async fn binary_frames_close_with_1003_without_an_invocation() {
    let gw = Gateway::start(&[]).await;
    let mut f = Function::ok(gw.runtime());
    let (mut ws, id) = connected(&gw, &mut f).await;
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    assert_eq!(read_close(&mut ws).await.0, 1003);
    disconnected(&mut f, &id, 1003).await;
    until_idle(&gw).await;
    let s = stats(&gw).await;
    assert_eq!(
        s["invocations"],
        json!({"$connect": 1, "$disconnect": 1}),
        "{s:#}"
    );
    assert_eq!(s["received"]["binary"], 1, "{s:#}");
    assert_eq!(s["received"]["frames"], 0, "{s:#}");
    gw.stop().await;
}

/// Connects a client while answering its `$connect` by hand; returns it and its id.
async fn connect_by_hand(gw: &Gateway) -> (support::Client, String) {
    let rt = gw.runtime();
    let url = gw.ws_url("/ws");
    let client = tokio::spawn(async move { connect(&url).await });
    let invocation = rt.next().await;
    assert_eq!(invocation.route(), "$connect");
    rt.respond(&invocation, &ok()).await;
    (client.await.unwrap(), invocation.conn().to_owned())
}

#[tokio::test]
async fn one_connections_messages_are_invoked_concurrently() {
    let gw = Gateway::start(&[]).await;
    let rt = gw.runtime();
    let (mut a, a_id) = connect_by_hand(&gw).await;
    let (mut b, b_id) = connect_by_hand(&gw).await;
    send_text(&mut a, "a1").await;
    send_text(&mut a, "a2").await;
    send_text(&mut b, "b1").await;

    // All three are handed out before any is answered: a2 does not wait for a1.
    let mut taken = Vec::new();
    for _ in 0..3 {
        taken.push(rt.next().await);
    }
    let mut seen: Vec<(String, String)> = taken
        .iter()
        .map(|i| {
            (
                i.conn().to_owned(),
                i.event["body"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    seen.sort();
    let mut expected = vec![
        (a_id.clone(), "a1".to_owned()),
        (a_id.clone(), "a2".to_owned()),
        (b_id.clone(), "b1".to_owned()),
    ];
    expected.sort();
    assert_eq!(seen, expected);
    assert_eq!(idle(&gw).await, "busy: 3 invocations, 0 closing\n");

    // The runtime API headers, as lambda_runtime reads them; the deadline is the
    // template's 10 s function timeout.
    let first = &taken[0];
    let header = |name: &str| {
        first
            .response
            .header(name)
            .unwrap_or_else(|| panic!("no {name}"))
            .to_owned()
    };
    assert_eq!(header("lambda-runtime-aws-request-id"), first.request_id);
    let deadline: i64 = header("lambda-runtime-deadline-ms").parse().unwrap();
    let now = meshcall_gateway::clock::now_ms();
    assert!(
        (now + 5_000..=now + 10_000).contains(&deadline),
        "{deadline}"
    );
    assert_eq!(
        header("lambda-runtime-invoked-function-arn"),
        "arn:aws:lambda:us-east-1:000000000000:function:meshcall"
    );
    assert!(header("lambda-runtime-trace-id").starts_with("Root=1-"));

    // Answered out of order.
    for invocation in taken.iter().rev() {
        rt.respond(invocation, &ok()).await;
    }
    until_idle(&gw).await;

    let f = Function::ok(rt);
    drop((a, b));
    gw.stop().await;
    drop(f);
}

#[tokio::test]
async fn connect_is_refused_with_the_functions_status() {
    let gw = Gateway::start(&[]).await;
    let rt = gw.runtime();
    let url = gw.ws_url("/ws");

    let attempt = {
        let url = url.clone();
        tokio::spawn(async move { tokio_tungstenite::connect_async(url).await })
    };
    let invocation = rt.next().await;
    rt.respond(
        &invocation,
        &json!({"statusCode": 403, "body": "origin not allowed"}),
    )
    .await;
    match within("the refusal", attempt).await.unwrap() {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403);
            assert_eq!(response.body().as_deref(), Some(&b"origin not allowed"[..]));
        }
        other => panic!("expected a 403, got {other:?}"),
    }

    // A failing function refuses with 502.
    let attempt = {
        let url = url.clone();
        tokio::spawn(async move { tokio_tungstenite::connect_async(url).await })
    };
    let invocation = rt.next().await;
    rt.fail(&invocation, "boom").await;
    match within("the refusal", attempt).await.unwrap() {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 502),
        other => panic!("expected a 502, got {other:?}"),
    }

    // A refused connection never existed: no $disconnect.
    assert!(
        rt.next_within(Duration::from_millis(300)).await.is_none(),
        "an invocation followed a refused $connect"
    );

    // A response without a statusCode accepts.
    let attempt = tokio::spawn(async move { tokio_tungstenite::connect_async(url).await });
    let invocation = rt.next().await;
    rt.respond(&invocation, &Value::Null).await;
    assert!(within("the upgrade", attempt).await.unwrap().is_ok());
    let f = Function::ok(rt);
    gw.stop().await;
    drop(f);
}

#[tokio::test]
async fn a_client_gone_during_connect_still_gets_its_disconnect() {
    let gw = Gateway::start(&[]).await;
    let rt = gw.runtime();
    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(handshake_request(gw.addr, "/ws", &[]).as_bytes())
        .await
        .unwrap();
    let connect = rt.next().await;
    assert_eq!(connect.route(), "$connect");
    drop(stream);
    rt.respond(&connect, &ok()).await;
    let disconnect = rt.next().await;
    assert_eq!(disconnect.route(), "$disconnect");
    assert_eq!(disconnect.conn(), connect.conn());
    assert_eq!(
        disconnect.event["requestContext"]["disconnectStatusCode"],
        1006
    );
    rt.respond(&disconnect, &ok()).await;
    gw.stop().await;
}

#[tokio::test]
async fn function_timeouts_refuse_and_are_never_delivered_late() {
    let gw = Gateway::start(&["--function-timeout", "300ms"]).await;
    match tokio_tungstenite::connect_async(gw.ws_url("/ws")).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 502),
        other => panic!("expected a 502, got {other:?}"),
    }
    assert!(
        gw.runtime()
            .next_within(Duration::from_millis(300))
            .await
            .is_none(),
        "an invocation whose caller gave up was handed out"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_poller_that_went_away_loses_no_invocation() {
    let gw = Gateway::start(&[]).await;
    // A runtime client that asks for an event, then dies.
    let mut gone = tokio::net::TcpStream::connect(gw.runtime).await.unwrap();
    gone.write_all(
        format!(
            "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: {}\r\n\r\n",
            gw.runtime
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    // Its request has most likely reached the handler once this one is answered.
    let rt_probe = support::http(gw.runtime, "GET", "/nothing", &[], b"").await;
    assert_eq!(rt_probe.status, 404);
    drop(gone);
    let mut f = Function::ok(gw.runtime());
    let _ws = connect(&gw.ws_url("/ws")).await;
    f.next_route("$connect").await;
    gw.stop().await;
}

#[tokio::test]
async fn connections_api_posts_gets_and_deletes() {
    let gw = Gateway::start(&[]).await;
    let mut f = Function::ok(gw.runtime());
    let (mut ws, id) = connected(&gw, &mut f).await;
    let api = management(&format!("http://{}/local", gw.addr));

    api.post_to_connection()
        .connection_id(&id)
        .data(Blob::new("hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(read_text(&mut ws).await, "hello");

    let got = api
        .get_connection()
        .connection_id(&id)
        .send()
        .await
        .unwrap();
    assert!(got.connected_at().is_some());
    assert!(got.last_active_at().is_some());
    assert_eq!(
        got.identity().and_then(|i| i.source_ip()),
        Some("127.0.0.1")
    );

    // By hand: the path with the id percent-encoded, API Gateway's error shape.
    let path = format!("/local/@connections/{}", encode(&id));
    let r = http(gw.addr, "GET", &path, &[], b"").await;
    assert_eq!(r.status, 200);
    let body = r.json();
    for field in ["connectedAt", "lastActiveAt"] {
        let time = body[field].as_str().unwrap();
        assert!(
            time.len() == 24 && time.ends_with('Z') && &time[10..11] == "T",
            "{field}: {time}"
        );
    }
    assert_eq!(body["identity"]["sourceIp"], "127.0.0.1");
    let r = http(gw.addr, "POST", "/local/@connections/nobody", &[], b"x").await;
    assert_eq!(r.status, 410);
    assert_eq!(r.header("x-amzn-ErrorType"), Some("GoneException"));
    assert_eq!(r.json(), json!({"message": null}));
    let r = http(gw.addr, "GET", "/local/@connections/nobody", &[], b"").await;
    assert_eq!(r.status, 410);
    let err = api
        .post_to_connection()
        .connection_id("nobody")
        .data(Blob::new("x"))
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_gone_exception());

    // 128 KiB is the most one post carries.
    let big = "y".repeat(128 * 1024);
    let r = http(gw.addr, "POST", &path, &[], format!("{big}z").as_bytes()).await;
    assert_eq!(r.status, 413);
    assert_eq!(
        r.header("x-amzn-ErrorType"),
        Some("PayloadTooLargeException")
    );
    let r = http(gw.addr, "POST", &path, &[], big.as_bytes()).await;
    assert_eq!(r.status, 200);
    assert_eq!(read_text(&mut ws).await.len(), big.len());

    // DeleteConnection: frames already posted go first, then 1000, then $disconnect.
    api.post_to_connection()
        .connection_id(&id)
        .data(Blob::new("last"))
        .send()
        .await
        .unwrap();
    api.delete_connection()
        .connection_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(read_text(&mut ws).await, "last");
    assert_eq!(read_close(&mut ws).await.0, 1000);
    let event = disconnected(&mut f, &id, 1000).await;
    assert_eq!(event["requestContext"]["eventType"], "DISCONNECT");
    typed(&event);
    let err = api
        .get_connection()
        .connection_id(&id)
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_gone_exception());
    let err = api
        .delete_connection()
        .connection_id(&id)
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_gone_exception());
    gw.stop().await;
}

#[tokio::test]
async fn connections_api_is_only_at_the_stage_path() {
    let gw = Gateway::start(&[]).await;
    let mut f = Function::ok(gw.runtime());
    let (mut ws, id) = connected(&gw, &mut f).await;
    let unstaged = management(&format!("http://{}", gw.addr));
    // Only at the stage path, as on AWS: without it, or with another stage, 404.
    let err = unstaged
        .post_to_connection()
        .connection_id(&id)
        .data(Blob::new("unstaged"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        err.raw_response().map(|r| r.status().as_u16()),
        Some(404),
        "{err:?}"
    );
    for method in ["POST", "GET", "DELETE"] {
        for prefix in ["", "/prod"] {
            let path = format!("{prefix}/@connections/{}", encode(&id));
            let r = http(gw.addr, method, &path, &[], b"x").await;
            assert_eq!(r.status, 404, "{method} {path}");
        }
    }

    // Nothing reached the connection; at the stage path it works.
    let r = http(
        gw.addr,
        "POST",
        &format!("/local/@connections/{}", encode(&id)),
        &[],
        b"ok",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(read_text(&mut ws).await, "ok");
    gw.stop().await;
}

/// A function that, on `$disconnect`, checks whether the connection is still reachable
/// through `@connections` and reports the status of that GET.
fn reachability_probe(gw: &Gateway) -> (Handler, mpsc::UnboundedReceiver<(String, u16)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let addr = gw.addr;
    let handler: Handler = Arc::new(move |event: Value| {
        let tx = tx.clone();
        Box::pin(async move {
            if event["requestContext"]["eventType"] == "DISCONNECT" {
                let id = conn_id(&event);
                let path = format!("/local/@connections/{}", encode(&id));
                let status = http(addr, "GET", &path, &[], b"").await.status;
                let _ = tx.send((id, status));
            }
            ok()
        })
    });
    (handler, rx)
}

async fn check_disconnect(
    f: &mut Function,
    reachable: &mut mpsc::UnboundedReceiver<(String, u16)>,
    id: &str,
    code: u16,
    reason: Option<&str>,
) {
    let event = disconnected(f, id, code).await;
    let ctx = &event["requestContext"];
    if let Some(reason) = reason {
        assert_eq!(ctx["disconnectReason"], reason);
    }
    let t = typed(&event);
    assert_eq!(
        t.request_context.disconnect_status_code,
        Some(i64::from(code))
    );
    let (gone, status) = within("the probe", reachable.recv()).await.unwrap();
    assert_eq!((gone.as_str(), status), (id, 410));
}

#[tokio::test]
async fn disconnect_carries_the_close_status_after_the_connection_is_gone() {
    let gw = Gateway::start(&[]).await;
    let (handler, mut reachable) = reachability_probe(&gw);
    let mut f = Function::start(gw.runtime(), 2, &handler);
    // A clean close.
    let (mut ws, id) = connected(&gw, &mut f).await;
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    }))
    .await
    .unwrap();
    check_disconnect(&mut f, &mut reachable, &id, 1000, Some("bye")).await;

    // A close frame without a status.
    let (mut ws, id) = connected(&gw, &mut f).await;
    ws.send(Message::Close(None)).await.unwrap();
    check_disconnect(&mut f, &mut reachable, &id, 1005, None).await;

    // The TCP connection ends without a close frame.
    let stream = raw_handshake(gw.addr, "/ws", &[]).await;
    let id = conn_id(&f.next_route("$connect").await);
    drop(stream);
    check_disconnect(&mut f, &mut reachable, &id, 1006, None).await;

    // The TCP connection is reset.
    let stream = raw_handshake(gw.addr, "/ws", &[]).await;
    let id = conn_id(&f.next_route("$connect").await);
    stream.set_zero_linger().unwrap();
    drop(stream);
    check_disconnect(&mut f, &mut reachable, &id, 1006, None).await;
    gw.stop().await;
}

#[tokio::test]
async fn oversize_messages_close_with_1009() {
    let gw = Gateway::start(&["--api-message-limit", "1024"]).await;
    let mut f = Function::ok(gw.runtime());
    let (mut ws, id) = connected(&gw, &mut f).await;
    send_text(&mut ws, &"x".repeat(1024)).await;
    let event = f.next_of(&id, "$default").await;
    assert_eq!(event["body"].as_str().map(str::len), Some(1024));
    send_text(&mut ws, &"x".repeat(1025)).await;
    assert_eq!(read_close(&mut ws).await.0, 1009);
    disconnected(&mut f, &id, 1009).await;
    gw.stop().await;
}

#[tokio::test]
async fn frames_over_32_kib_close_with_1009_but_fragmented_messages_pass() {
    use tungstenite::protocol::frame::{
        Frame,
        coding::{Data, OpCode},
    };
    let gw = Gateway::start(&[]).await;
    let mut f = Function::ok(gw.runtime());
    let (mut ws, id) = connected(&gw, &mut f).await;
    // 40 000 bytes in two frames of 20 000: one message, under 128 KiB.
    let half = "y".repeat(20_000);
    let first = Frame::message(half.clone().into_bytes(), OpCode::Data(Data::Text), false);
    let last = Frame::message(half.into_bytes(), OpCode::Data(Data::Continue), true);
    within("a send", ws.send(Message::Frame(first)))
        .await
        .unwrap();
    within("a send", ws.send(Message::Frame(last)))
        .await
        .unwrap();
    let event = f.next_of(&id, "$default").await;
    assert_eq!(event["body"].as_str().map(str::len), Some(40_000));
    send_text(&mut ws, &"x".repeat(32 * 1024)).await;
    let event = f.next_of(&id, "$default").await;
    assert_eq!(event["body"].as_str().map(str::len), Some(32 * 1024));
    send_text(&mut ws, &"x".repeat(32 * 1024 + 1)).await;
    assert_eq!(read_close(&mut ws).await.0, 1009);
    disconnected(&mut f, &id, 1009).await;
    gw.stop().await;
}

#[tokio::test]
async fn invalid_utf8_closes_with_1007() {
    let gw = Gateway::start(&[]).await;
    let mut f = Function::ok(gw.runtime());
    let mut stream = raw_handshake(gw.addr, "/ws", &[]).await;
    let id = conn_id(&f.next_route("$connect").await);
    // A masked text frame (mask 0) carrying 0xC3 0x28, which is not UTF-8.
    stream
        .write_all(&[0x81, 0x82, 0, 0, 0, 0, 0xC3, 0x28])
        .await
        .unwrap();
    let mut ws = wrap(stream).await;
    assert_eq!(read_close(&mut ws).await.0, 1007);
    disconnected(&mut f, &id, 1007).await;
    gw.stop().await;
}

#[tokio::test]
async fn idle_connections_close_with_1001() {
    let gw = Gateway::start(&["--idle-timeout", "300ms"]).await;
    let mut f = Function::ok(gw.runtime());
    let (mut ws, id) = connected(&gw, &mut f).await;
    assert_eq!(read_close(&mut ws).await, (1001, "Going away".to_owned()));
    let event = disconnected(&mut f, &id, 1001).await;
    assert_eq!(event["requestContext"]["disconnectReason"], "Going away");
    gw.stop().await;
}

#[tokio::test]
async fn connections_end_at_the_maximum_duration() {
    let gw = Gateway::start(&["--max-connection-age", "300ms"]).await;
    let mut f = Function::ok(gw.runtime());
    let (mut ws, id) = connected(&gw, &mut f).await;
    assert_eq!(read_close(&mut ws).await.0, 1001);
    disconnected(&mut f, &id, 1001).await;
    gw.stop().await;
}

#[tokio::test]
async fn shutdown_closes_connections_and_runs_disconnect() {
    let gw = Gateway::start(&[]).await;
    let mut f = Function::ok(gw.runtime());
    let (mut ws, id) = connected(&gw, &mut f).await;
    let addr = gw.addr;
    let stopping = tokio::spawn(gw.stop());
    assert_eq!(read_close(&mut ws).await.0, 1001);
    disconnected(&mut f, &id, 1001).await;
    within("the gateway to stop", stopping).await.unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn the_sweep_is_a_scheduled_event() {
    let gw = Gateway::start(&["--sweep-every", "50ms"]).await;
    let rt = gw.runtime();
    let invocation = rt.next().await;
    let e = &invocation.event;
    assert_eq!(e["detail-type"], "Scheduled Event");
    assert_eq!(e["source"], "aws.events");
    assert_eq!(e["version"], "0");
    assert_eq!(e["account"], "000000000000");
    assert_eq!(e["region"], "us-east-1");
    assert_eq!(
        e["resources"],
        json!(["arn:aws:events:us-east-1:000000000000:rule/meshcall-sweep"])
    );
    assert_eq!(e["detail"], json!({}));
    assert_eq!(e["id"].as_str().map(str::len), Some(36));
    let time = e["time"].as_str().unwrap();
    assert!(time.len() == 20 && time.ends_with('Z'), "{time}");
    rt.respond(&invocation, &json!({"expired": 0})).await;
    // The next tick comes after the response.
    let again = rt.next().await;
    assert_eq!(again.event["detail-type"], "Scheduled Event");
    assert_ne!(again.event["id"], e["id"]);
    rt.respond(&again, &json!({"expired": 0})).await;
    gw.stop().await;
}

#[tokio::test]
async fn the_web_app_is_served_with_this_gateways_ws_url() {
    let gw = Gateway::start(&[]).await;
    let r = http(
        gw.addr,
        "GET",
        "/config.json",
        &[("Host", "example.test:1234")],
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    // The app moves to a fresh socket 5 minutes before the 2-hour connection limit.
    assert_eq!(
        r.json(),
        json!({"wsUrl": "ws://example.test:1234/ws", "socketMaxAgeMs": 6_900_000})
    );
    for path in ["/", "/r/some-room"] {
        let r = http(gw.addr, "GET", path, &[], b"").await;
        assert_eq!(r.status, 200, "{path}");
        assert!(r.header("content-type").unwrap().starts_with("text/html"));
    }
    let r = http(gw.addr, "GET", "/healthz", &[], b"").await;
    assert_eq!((r.status, r.text().as_str()), (200, "ok\n"));
    let r = http(gw.addr, "GET", "/no-such-file.js", &[], b"").await;
    assert_eq!(r.status, 404);
    gw.stop().await;

    let gw = Gateway::start(&[
        "--force-relay",
        "--turn",
        "turn:t:3478",
        "--turn-secret",
        "s",
    ])
    .await;
    let r = http(gw.addr, "GET", "/config.json", &[], b"").await;
    assert_eq!(
        r.json(),
        json!({"wsUrl": format!("ws://{}/ws", gw.addr), "socketMaxAgeMs": 6_900_000, "iceTransportPolicy": "relay"})
    );
    gw.stop().await;

    for (limit, age) in [("8s", json!(6_000)), ("0s", Value::Null)] {
        let gw = Gateway::start(&["--max-connection-age", limit]).await;
        let r = http(gw.addr, "GET", "/config.json", &[], b"").await;
        assert_eq!(r.json()["socketMaxAgeMs"], age, "limit {limit}");
        gw.stop().await;
    }
}

#[tokio::test]
async fn stats_count_invocations_posts_and_bytes() {
    let gw = Gateway::start(&["--sweep-every", "50ms"]).await;
    let mut f = Function::ok(gw.runtime());
    let stats = || stats(&gw);
    let before = stats().await;
    assert_eq!(before["invocations"].get("$connect"), None);
    assert_eq!(before["posts"]["delivered"], 0);

    let (mut ws, id) = connected(&gw, &mut f).await;
    let join = r#"{"action":"joinRoom","roomId":"1"}"#;
    send_text(&mut ws, join).await;
    f.next_of(&id, "joinRoom").await;
    send_text(&mut ws, "?").await;
    f.next_of(&id, "$default").await;
    f.next_where("a sweep", |e| e["source"] == "aws.events")
        .await;
    let api = management(&format!("http://{}/local", gw.addr));
    api.post_to_connection()
        .connection_id(&id)
        .data(Blob::new("hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(read_text(&mut ws).await, "hello");
    let r = http(gw.addr, "POST", "/local/@connections/nobody", &[], b"x").await;
    assert_eq!(r.status, 410);
    let r = http(
        gw.addr,
        "POST",
        "/local/@connections/nobody",
        &[],
        "y".repeat(128 * 1024 + 1).as_bytes(),
    )
    .await;
    assert_eq!(r.status, 413);
    let r = http(gw.addr, "GET", "/local/@connections/nobody", &[], b"").await;
    assert_eq!(r.status, 410);
    let r = http(gw.addr, "DELETE", "/local/@connections/nobody", &[], b"").await;
    assert_eq!(r.status, 410);

    let s = stats().await;
    assert_eq!(s["invocations"]["$connect"], 1, "{s:#}");
    assert_eq!(s["invocations"]["joinRoom"], 1, "{s:#}");
    assert_eq!(s["invocations"]["$default"], 1, "{s:#}");
    assert!(s["invocations"]["sweep"].as_u64().unwrap() >= 1, "{s:#}");
    assert_eq!(s["received"]["frames"], 2, "{s:#}");
    assert_eq!(s["received"]["bytes"], join.len() + 1, "{s:#}");
    assert_eq!(s["received"]["binary"], 0, "{s:#}");
    assert_eq!(s["disconnectsLost"], 0, "{s:#}");
    assert_eq!(s["posts"]["delivered"], 1, "{s:#}");
    assert_eq!(s["posts"]["gone"], 1, "{s:#}");
    assert_eq!(s["posts"]["bytes"], 5, "{s:#}");
    assert_eq!(s["posts"]["tooLarge"], 1, "{s:#}");
    assert_eq!(s["gets"], 1, "{s:#}");
    assert_eq!(s["deletes"]["gone"], 1, "{s:#}");
    assert_eq!(s["invocationsFailed"], 0, "{s:#}");

    let r = http(
        gw.addr,
        "DELETE",
        &format!("/local/@connections/{}", encode(&id)),
        &[],
        b"",
    )
    .await;
    assert_eq!(r.status, 204);
    f.next_of(&id, "$disconnect").await;
    let s = stats().await;
    assert_eq!(s["deletes"]["deleted"], 1, "{s:#}");
    assert_eq!(s["invocations"]["$disconnect"], 1, "{s:#}");
    gw.stop().await;
}

/// `GET /_gateway/stats`.
async fn stats(gw: &Gateway) -> Value {
    http(gw.addr, "GET", "/_gateway/stats", &[], b"")
        .await
        .json()
}

/// `GET /_gateway/idle`, the barrier other suites wait on.
async fn idle(gw: &Gateway) -> String {
    http(gw.addr, "GET", "/_gateway/idle", &[], b"")
        .await
        .text()
}

/// Polls `GET /_gateway/idle` until it answers `idle`, failing after the usual wait.
async fn until_idle(gw: &Gateway) {
    within("the gateway to go idle", async {
        while idle(gw).await != "idle\n" {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn idle_waits_for_invocations_and_disconnects() {
    let gw = Gateway::start(&[]).await;
    let rt = gw.runtime();
    assert_eq!(idle(&gw).await, "idle\n");
    let (mut ws, id) = connect_by_hand(&gw).await;
    until_idle(&gw).await;

    // A message invocation taken and not answered yet.
    send_text(&mut ws, r#"{"action":"ping"}"#).await;
    let ping = rt.next().await;
    assert_eq!(idle(&gw).await, "busy: 1 invocations, 0 closing\n");
    rt.respond(&ping, &ok()).await;
    until_idle(&gw).await;

    // A closed connection counts as closing until its $disconnect returns.
    ws.close(None).await.unwrap();
    let disconnect = rt.next().await;
    assert_eq!(
        (disconnect.route(), disconnect.conn()),
        ("$disconnect", id.as_str())
    );
    assert_eq!(idle(&gw).await, "busy: 1 invocations, 1 closing\n");
    rt.respond(&disconnect, &ok()).await;
    until_idle(&gw).await;
    gw.stop().await;
}

/// Polls `GET /_gateway/stats` until `pred` holds; returns that answer.
async fn stats_until(gw: &Gateway, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    within(what, async {
        loop {
            let s = stats(gw).await;
            if pred(&s) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

#[tokio::test]
async fn lost_disconnects_leave_connections_without_telling_the_function() {
    let gw = Gateway::start(&["--lose-disconnects", "1"]).await;
    let mut f = Function::ok(gw.runtime());
    let (mut ws, id) = connected(&gw, &mut f).await;
    let path = format!("/local/@connections/{}", encode(&id));
    assert_eq!(http(gw.addr, "GET", &path, &[], b"").await.status, 200);
    ws.close(None).await.unwrap();
    assert_eq!(read_close(&mut ws).await.0, 1005);
    stats_until(&gw, "the lost $disconnect", |s| s["disconnectsLost"] == 1).await;
    // Gone from @connections, and the function never heard of it.
    assert_eq!(http(gw.addr, "GET", &path, &[], b"").await.status, 410);
    until_idle(&gw).await;
    let s = stats(&gw).await;
    assert_eq!(s["invocations"], json!({"$connect": 1}), "{s:#}");

    // A dropped socket's is lost too.
    let stream = support::raw_handshake(gw.addr, "/ws", &[]).await;
    conn_id(&f.next_route("$connect").await);
    drop(stream);
    stats_until(&gw, "the second lost $disconnect", |s| {
        s["disconnectsLost"] == 2
    })
    .await;
    until_idle(&gw).await;
    assert_eq!(stats(&gw).await["invocations"].get("$disconnect"), None);
    gw.stop().await;
}

/// The median of `samples`.
fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Joins in a row, each announced to the members already there through `@connections`
/// (the way the function does it), then followed at once by the joiner's offer; the first
/// member answers each pair (as a browser does, which keeps its TCP in interactive mode,
/// where Linux delays ACKs to piggyback them on data). Both frames must reach it in a few
/// milliseconds: without `TCP_NODELAY` on the gateway's sockets, the second frame is
/// written while the member's delayed ACK of the first is pending and waits for it
/// (40 ms on Linux).
#[tokio::test]
async fn notifications_are_not_delayed_by_nagle() {
    let gw = Gateway::start(&[]).await;
    let addr = gw.addr;
    let members: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let handler: Handler = {
        let members = members.clone();
        Arc::new(move |event: Value| {
            let members = members.clone();
            Box::pin(async move {
                if event["requestContext"]["routeKey"] == "joinRoom" {
                    let joiner = conn_id(&event);
                    let others = members.lock().unwrap().clone();
                    let frames = [
                        json!({"type": "newParticipant", "participantConnectionId": joiner}),
                        json!({"type": "signal", "from": joiner, "data": {"sdp": "offer"}}),
                    ];
                    for other in others {
                        let path = format!("/local/@connections/{}", encode(&other));
                        for frame in &frames {
                            let r =
                                http(addr, "POST", &path, &[], frame.to_string().as_bytes()).await;
                            // 410 once the test has let the joiners go.
                            assert!(matches!(r.status, 200 | 410), "{}", r.status);
                        }
                    }
                    members.lock().unwrap().push(joiner);
                }
                ok()
            })
        })
    };
    let mut f = Function::start(gw.runtime(), 2, &handler);
    let (mut first, _) = connected(&gw, &mut f).await;
    send_text(&mut first, r#"{"action":"joinRoom","roomId":"r"}"#).await;
    f.next_route("joinRoom").await;
    let mut latencies = Vec::new();
    let mut joiners = Vec::new();
    for _ in 0..10 {
        let (mut ws, id) = connected(&gw, &mut f).await;
        let sent = tokio::time::Instant::now();
        send_text(&mut ws, r#"{"action":"joinRoom","roomId":"r"}"#).await;
        for expected in ["newParticipant", "signal"] {
            let frame: Value = serde_json::from_str(&read_text(&mut first).await).unwrap();
            assert_eq!(frame["type"], expected);
            assert!(frame.to_string().contains(&id), "{frame}");
        }
        // The member answers (its ping keeps its TCP interactive, as a browser's is).
        send_text(&mut first, r#"{"action":"ping"}"#).await;
        latencies.push(sent.elapsed());
        joiners.push(ws);
    }
    let median = median(latencies.clone());
    // About 2 ms here with TCP_NODELAY, 45 ms without (checked by removing it).
    assert!(
        median < Duration::from_millis(20),
        "median {median:?} from a join to its announcement and offer: {latencies:?}"
    );
    drop(joiners);
    gw.stop().await;
}
