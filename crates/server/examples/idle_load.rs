//! Opens N WebSocket connections to a meshcall server, joins them to rooms of 4, holds them
//! for a while, then closes them. Used to measure the server's memory per idle connection:
//!
//! ```sh
//! cargo run --release -p meshcall -- --listen 127.0.0.1:8099 &
//! cargo run --release -p meshcall --example idle_load -- ws://127.0.0.1:8099/ws 10000 20
//! grep VmRSS /proc/$(pgrep -f 'meshcall --listen 127.0.0.1:8099')/status   # while held
//! ```
//!
//! Only for loopback addresses; the count and the hold time are bounded by the arguments.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::{connect_async, tungstenite::Message};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "ws://127.0.0.1:8080/ws".into());
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let hold: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(10);
    assert!(
        url.starts_with("ws://127.") || url.starts_with("ws://localhost"),
        "loopback only"
    );
    let mut sockets = Vec::with_capacity(n);
    for i in 0..n {
        let (mut ws, _) = connect_async(&url).await.expect("connect");
        let join = format!(r#"{{"action":"joinRoom","roomId":"load{}"}}"#, i / 4);
        ws.send(Message::text(join)).await.expect("send");
        // Wait for our own `joined`, skipping the others' `newParticipant`.
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) if t.contains("\"joined\"") => break,
                Some(Ok(_)) => {}
                other => panic!("connection {i}: {other:?}"),
            }
        }
        sockets.push(ws);
    }
    eprintln!("{n} connections joined; holding {hold} s");
    tokio::time::sleep(Duration::from_secs(hold)).await;
    for mut ws in sockets {
        let _ = ws.close(None).await;
    }
}
