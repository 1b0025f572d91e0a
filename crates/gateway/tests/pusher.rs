//! `meshcall-aws`'s `ApiGatewayPusher`, the function's real Management API client, against
//! this gateway's `@connections`: a post reaches the socket, a post to a closed or unknown
//! connection is `Gone` (410), and `close` (`DeleteConnection`) closes the socket and runs
//! `$disconnect`. (crates/aws tests the same pusher against a bare 410 stub.)

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

mod support;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::{Credentials, SharedCredentialsProvider};
use meshcall_aws::ApiGatewayPusher;
use meshcall_core::protocol::ConnectionId;
use meshcall_core::{Delivery, Kind, Outbound, Pusher as _};
use support::{Function, Gateway, connected, disconnected, read_close, read_text};

fn sdk() -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "test", "test", None, None, "tests",
        )))
        .build()
}

#[tokio::test]
async fn the_functions_pusher_delivers_closes_and_sees_gone_connections() {
    let gw = Gateway::start(&[]).await;
    let mut f = Function::ok(gw.runtime());
    // The endpoint as the function builds it on AWS, stage included.
    let pusher = ApiGatewayPusher::at(&sdk(), &format!("http://{}/local", gw.addr));

    let (mut a, a_id) = connected(&gw, &mut f).await;
    let a_conn = ConnectionId::parse(&a_id).unwrap();
    let frame = Outbound::new(Kind::Pong, r#"{"type":"pong"}"#);
    assert_eq!(
        pusher.push(&a_conn, &frame).await.unwrap(),
        Delivery::Delivered
    );
    assert_eq!(read_text(&mut a).await, r#"{"type":"pong"}"#);

    // DeleteConnection closes the socket and runs $disconnect; the id is gone after.
    assert_eq!(pusher.close(&a_conn).await.unwrap(), Delivery::Delivered);
    assert_eq!(read_close(&mut a).await.0, 1000);
    disconnected(&mut f, &a_id, 1000).await;
    assert_eq!(pusher.push(&a_conn, &frame).await.unwrap(), Delivery::Gone);
    assert_eq!(pusher.close(&a_conn).await.unwrap(), Delivery::Gone);

    // Never connected at all: Gone too, not an error.
    let stranger = ConnectionId::parse("NoSuchConnection=").unwrap();
    assert_eq!(
        pusher.push(&stranger, &frame).await.unwrap(),
        Delivery::Gone
    );
    let posts = pusher.posts();
    assert_eq!((posts.delivered, posts.gone, posts.failed), (1, 2, 0));
    gw.stop().await;
}
