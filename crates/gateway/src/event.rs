//! The events the function receives, in the shapes API Gateway and EventBridge give a
//! Lambda function: the WebSocket proxy event (`$connect`, message routes, `$disconnect`)
//! and the scheduled event of the sweep, and route selection. The clock and its formats
//! are [`crate::clock`]'s, the ids [`crate::ids`]'.

use meshcall_core::Route;
use serde_json::{Map, Value, json};

use crate::{
    clock::{iso8601_seconds, request_time},
    connections::Connection,
    ids::{short_id, uuid},
};

/// The API id in every event (`requestContext.apiId`).
pub const API_ID: &str = "local";
/// The account in ARNs and events.
pub const ACCOUNT: &str = "000000000000";
/// The region in ARNs and events.
pub const REGION: &str = "us-east-1";

/// The message route keys: every route the deployment template defines
/// ([`Route::ALL`]) but `$connect`, `$disconnect` and `$default`.
pub fn message_routes() -> impl Iterator<Item = &'static str> {
    Route::ALL
        .iter()
        .map(|r| r.as_str())
        .filter(|r| !r.starts_with('$'))
}

/// The route for a text frame, by the selection expression `$request.body.action`: the
/// body's `action` when the body is a JSON object whose `action` is a string naming a
/// message route, `$default` otherwise.
pub fn select_route(body: &str) -> &'static str {
    let Ok(Value::Object(object)) = serde_json::from_str::<Value>(body) else {
        return Route::Default.as_str();
    };
    let action = object.get("action").and_then(Value::as_str);
    message_routes()
        .find(|r| Some(*r) == action)
        .unwrap_or(Route::Default.as_str())
}

/// The `requestContext` every WebSocket event carries.
fn request_context(
    conn: &Connection,
    stage: &str,
    route_key: &str,
    event_type: &str,
    now: i64,
) -> Map<String, Value> {
    let request_id = short_id();
    let mut identity = Map::new();
    identity.insert("sourceIp".into(), conn.source_ip.clone().into());
    if let Some(agent) = &conn.user_agent {
        identity.insert("userAgent".into(), agent.clone().into());
    }
    let mut context = Map::new();
    context.insert("routeKey".into(), route_key.into());
    context.insert("eventType".into(), event_type.into());
    context.insert("extendedRequestId".into(), request_id.clone().into());
    context.insert("requestTime".into(), request_time(now).into());
    context.insert("messageDirection".into(), "IN".into());
    context.insert("stage".into(), stage.into());
    context.insert("connectedAt".into(), conn.connected_at.into());
    context.insert("requestTimeEpoch".into(), now.into());
    context.insert("identity".into(), identity.into());
    context.insert("requestId".into(), request_id.into());
    context.insert("domainName".into(), conn.domain_name.clone().into());
    context.insert("connectionId".into(), conn.id.clone().into());
    context.insert("apiId".into(), API_ID.into());
    context
}

/// The `$connect` event: the handshake's headers (names as the client wrote them), and its
/// query string when it has one.
pub fn connect(
    conn: &Connection,
    stage: &str,
    headers: &[(String, String)],
    query: &[(String, String)],
    now: i64,
) -> Value {
    let mut event = Map::new();
    let (single, multi) = header_maps(headers);
    event.insert("headers".into(), single.into());
    event.insert("multiValueHeaders".into(), multi.into());
    if !query.is_empty() {
        let (single, multi) = header_maps(query);
        event.insert("queryStringParameters".into(), single.into());
        event.insert("multiValueQueryStringParameters".into(), multi.into());
    }
    event.insert(
        "requestContext".into(),
        request_context(conn, stage, "$connect", "CONNECT", now).into(),
    );
    event.insert("isBase64Encoded".into(), false.into());
    event.into()
}

/// A message event: the text frame's `body` as received (binary frames never reach the
/// function).
pub fn message(conn: &Connection, stage: &str, route_key: &str, body: &str, now: i64) -> Value {
    let mut context = request_context(conn, stage, route_key, "MESSAGE", now);
    context.insert("messageId".into(), short_id().into());
    json!({
        "requestContext": context,
        "body": body,
        "isBase64Encoded": false,
    })
}

/// The `$disconnect` event, with the close status and reason.
pub fn disconnect(conn: &Connection, stage: &str, code: u16, reason: &str, now: i64) -> Value {
    let mut context = request_context(conn, stage, "$disconnect", "DISCONNECT", now);
    context.insert("disconnectStatusCode".into(), code.into());
    context.insert("disconnectReason".into(), reason.into());
    json!({
        "requestContext": context,
        "isBase64Encoded": false,
    })
}

/// The EventBridge scheduled event of the sweep rule.
pub fn scheduled(now: i64) -> Value {
    json!({
        "version": "0",
        "id": uuid(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": iso8601_seconds(now),
        "region": REGION,
        "resources": [format!("arn:aws:events:{REGION}:{ACCOUNT}:rule/meshcall-sweep")],
        "detail": {},
    })
}

/// `headers` (the last value of each name) and `multiValueHeaders` (every value, in
/// order). Names that differ only in case are one name, spelled as first seen.
fn header_maps(pairs: &[(String, String)]) -> (Map<String, Value>, Map<String, Value>) {
    let mut single = Map::new();
    let mut multi: Map<String, Value> = Map::new();
    for (name, value) in pairs {
        let key = single
            .keys()
            .find(|k| k.eq_ignore_ascii_case(name))
            .cloned()
            .unwrap_or_else(|| name.clone());
        single.insert(key.clone(), value.clone().into());
        match multi.get_mut(&key) {
            Some(Value::Array(values)) => values.push(value.clone().into()),
            _ => {
                multi.insert(key, json!([value]));
            }
        }
    }
    (single, multi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_selected_by_action() {
        assert_eq!(
            select_route(r#"{"action":"joinRoom","roomId":"1"}"#),
            "joinRoom"
        );
        for route in message_routes() {
            assert_eq!(select_route(&format!(r#"{{"action":"{route}"}}"#)), route);
        }
        for body in [
            r#"{"action":"nope"}"#,
            r#"{"action":"$connect"}"#,
            r#"{"action":"JOINROOM"}"#,
            r#"{"action":5}"#,
            r#"{"roomId":"1"}"#,
            r#"["joinRoom"]"#,
            r#""joinRoom""#,
            "not json",
            "",
        ] {
            assert_eq!(select_route(body), "$default", "{body}");
        }
    }

    #[test]
    fn events_deserialise_as_api_gateway_websocket_events() {
        use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
        let conn = Connection::new(
            "AAAAAAAAAAAAAAAA".into(),
            "127.0.0.1".into(),
            Some("agent".into()),
            "localhost:8080".into(),
        );
        let parse = |event: Value| -> ApiGatewayWebsocketProxyRequest {
            serde_json::from_value(event).expect("an ApiGatewayWebsocketProxyRequest")
        };
        let now = conn.connected_at + 5;
        let connect = parse(connect(
            &conn,
            "local",
            &[("Origin".into(), "http://o".into())],
            &[("token".into(), "t".into())],
            now,
        ));
        let ctx = &connect.request_context;
        assert_eq!(ctx.route_key.as_deref(), Some("$connect"));
        assert_eq!(ctx.event_type.as_deref(), Some("CONNECT"));
        assert_eq!(ctx.connection_id.as_deref(), Some("AAAAAAAAAAAAAAAA"));
        assert_eq!(ctx.domain_name.as_deref(), Some("localhost:8080"));
        assert_eq!(ctx.apiid.as_deref(), Some(API_ID));
        assert_eq!(ctx.identity.source_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(ctx.identity.user_agent.as_deref(), Some("agent"));
        assert_eq!(ctx.connected_at, conn.connected_at);
        assert_eq!(ctx.request_time_epoch, now);
        assert_eq!(connect.headers["origin"], "http://o");
        assert_eq!(connect.multi_value_headers["origin"], "http://o");
        assert_eq!(connect.query_string_parameters.first("token"), Some("t"));

        let message = parse(message(&conn, "local", "ping", "{}", now));
        assert_eq!(message.request_context.route_key.as_deref(), Some("ping"));
        assert_eq!(
            message.request_context.message_id.as_ref().map(String::len),
            Some(16)
        );
        assert_eq!(message.body.as_deref(), Some("{}"));
        assert!(!message.is_base64_encoded);
        assert!(message.headers.is_empty());

        let gone = parse(disconnect(&conn, "local", 1006, "dropped", now));
        assert_eq!(gone.request_context.disconnect_status_code, Some(1006));
        assert_eq!(
            gone.request_context.disconnect_reason.as_deref(),
            Some("dropped")
        );
        assert_eq!(
            gone.request_context.event_type.as_deref(),
            Some("DISCONNECT")
        );
        assert_eq!(gone.request_context.message_id, None);
    }

    #[test]
    fn repeated_headers_keep_every_value() {
        let pairs = [
            ("Host".to_owned(), "h".to_owned()),
            ("X-A".to_owned(), "1".to_owned()),
            ("x-a".to_owned(), "2".to_owned()),
        ];
        let (single, multi) = header_maps(&pairs);
        assert_eq!(Value::from(single), json!({"Host": "h", "X-A": "2"}));
        assert_eq!(
            Value::from(multi),
            json!({"Host": ["h"], "X-A": ["1", "2"]})
        );
    }
}
