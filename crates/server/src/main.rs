//! The `meshcall` binary: parse settings, install logging, bind, serve until Ctrl-C or
//! SIGTERM.

use anyhow::Context as _;
use clap::Parser as _;
use meshcall::{
    Settings,
    process::{init_tracing, stop_on_signal},
};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::parse();
    init_tracing(settings.log_format);
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    meshcall::run(listener, &settings, shutdown).await
}
