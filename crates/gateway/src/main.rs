//! The `meshcall-gateway` binary: parse settings, install logging, create the table if
//! asked, bind, print `listening on http://<addr>` on stdout, serve until Ctrl-C or
//! SIGTERM, which also stops the bootstrap processes.

use std::io::Write as _;

use anyhow::Context as _;
use clap::Parser as _;
use meshcall::process::{init_tracing, stop_on_signal};
use meshcall_gateway::Settings;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::parse();
    init_tracing(settings.log_format);
    if settings.instances > 0 {
        // Fail before binding anything.
        meshcall_gateway::bootstrap_path(&settings)?;
    }
    if settings.create_table {
        create_table(&settings.table).await?;
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

/// Creates `table` through the SDK's usual configuration (`AWS_ENDPOINT_URL` names the
/// emulator) unless it exists.
async fn create_table(table: &str) -> anyhow::Result<()> {
    let sdk = aws_config::load_from_env().await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    match client.describe_table().table_name(table).send().await {
        Ok(_) => {
            tracing::info!(table, "table exists");
            return Ok(());
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(aws_sdk_dynamodb::operation::describe_table::DescribeTableError::is_resource_not_found_exception) => {}
        Err(e) => {
            return Err(anyhow::anyhow!(
                "describing table {table}: {}",
                aws_sdk_dynamodb::error::DisplayErrorContext(e)
            ));
        }
    }
    meshcall_aws::create_table(&client, table)
        .await
        .map_err(|e| anyhow::anyhow!("creating table {table}: {e:?}"))?;
    tracing::info!(table, "table created");
    Ok(())
}
