//! The `meshcall` binary: parse settings, install logging, bind, serve until Ctrl-C or
//! SIGTERM; or, with `app-config`, print the app's settings as JSON.

use std::io::Write as _;

use anyhow::Context as _;
use meshcall::{
    Settings,
    process::{init_tracing, stop_on_signal},
    settings::Command,
};
use tokio_util::sync::CancellationToken;

/// jemalloc instead of glibc's malloc. glibc keeps the memory of closed connections in its
/// per-thread arenas: a release server back to empty after 10 000 idle connections stayed
/// at 112 MB of RSS (6 MB before them). jemalloc gives freed pages back to the kernel after
/// its decay time (10 s), from a background thread (turned on in `main`) so that an idle
/// server returns them too: 18.6 MB 25 s after the last close (docs/operations.md).
/// mimalloc, also tried, kept 91 MB.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env();
    if let Some(Command::AppConfig(args)) = &settings.command {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{}", args.config().to_json()).context("writing to stdout")?;
        return stdout.flush().context("writing to stdout");
    }
    init_tracing(settings.log.log_format);
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        tracing::warn!(error = %e, "jemalloc's background purging is off: freed memory returns later");
    }
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    meshcall::run(listener, &settings, shutdown).await
}
