//! The `meshcall-gateway` binary: parse settings, install logging, bind, print
//! `listening on http://<addr>` on stdout, then serve (creating the table, queue and
//! parameters first with `--create-table`) until Ctrl-C or SIGTERM, which also stops the
//! bootstrap processes.

use std::io::Write as _;

use anyhow::Context as _;
use meshcall_gateway::Settings;
use meshcall_web::process::{init_tracing, stop_on_signal};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env();
    init_tracing(settings.log.log_format);
    if settings.instances > 0 {
        // Fail before binding anything.
        meshcall_gateway::bootstrap_path(&settings)?;
    }
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    let runtime = tokio::net::TcpListener::bind(settings.runtime_listen)
        .await
        .with_context(|| format!("binding {}", settings.runtime_listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on http://{addr}").context("writing to stdout")?;
        stdout.flush().context("writing to stdout")?;
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    meshcall_gateway::run(listener, runtime, &settings, shutdown).await
}
