//! Reads meshcall's `/metrics` (OpenMetrics text) over a plain HTTP/1.0 request.

use std::net::SocketAddr;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The body of `GET /metrics` from the server at `addr`.
///
/// # Errors
/// If the connection fails or the answer is not `200`.
pub async fn fetch(addr: SocketAddr) -> anyhow::Result<String> {
    let mut tcp = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    tcp.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await?;
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .context("no end of the HTTP head")?;
    anyhow::ensure!(
        head.lines().next().is_some_and(|l| l.contains(" 200 ")),
        "/metrics answered {:?}",
        head.lines().next()
    );
    Ok(body.to_owned())
}

/// The sum of every sample of `name` (all label sets), or `None` if it has none.
pub fn sum(text: &str, name: &str) -> Option<f64> {
    let mut total = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        // `name 3`, `name{kind="x"} 3`, but not `name_bucket…` or `name_more`.
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        let value = rest
            .rsplit_once(' ')
            .and_then(|(_, v)| v.parse::<f64>().ok());
        if let Some(v) = value {
            *total.get_or_insert(0.0) += v;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::sum;

    #[test]
    fn sums_label_sets() {
        let text = "# TYPE meshcall_connections gauge\nmeshcall_connections 3\n\
                    meshcall_messages_delivered_total{kind=\"signal\"} 5\n\
                    meshcall_messages_delivered_total{kind=\"pong\"} 2\n\
                    meshcall_connections_more 9\n";
        assert_eq!(sum(text, "meshcall_connections"), Some(3.0));
        assert_eq!(sum(text, "meshcall_messages_delivered_total"), Some(7.0));
        assert_eq!(sum(text, "meshcall_rooms"), None);
    }
}
