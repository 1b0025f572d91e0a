//! The Lambda bootstrap: settings, clients built once per instance, then every event to
//! [`Function::handle`]. Wiring only; the behaviour is in the library and `meshcall-core`.

#![recursion_limit = "256"]

use std::{sync::Arc, time::SystemTime};

use lambda_runtime::{Error, LambdaEvent, service_fn};
use meshcall_aws::{ApiGatewayPusher, DynamoStore};
use meshcall_core::Signalling;
use meshcall_lambda::{ExpiryQueue, Function, LogFormat, Settings, secrets};
use serde_json::Value;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let settings = Settings::from_env()?;
    init_tracing(settings.log.log_format);
    let sdk = aws_config::load_from_env().await;
    let secrets = secrets::read(&aws_sdk_ssm::Client::new(&sdk), &settings).await?;
    let config = settings.core_config(&secrets)?;
    let store =
        DynamoStore::new(&sdk, settings.table.clone()).with_check_every(settings.check_every);
    let pusher = ApiGatewayPusher::new(&sdk, &settings.callback_url);
    let mut function = Function::new(Signalling::new(store, pusher, config), settings.origins());
    if let Some(url) = settings
        .expiry_queue_url
        .as_deref()
        .filter(|u| !u.is_empty())
    {
        function =
            function.with_expiry_queue(ExpiryQueue::new(aws_sdk_sqs::Client::new(&sdk), url));
    }
    let function = Arc::new(function);
    tracing::info!(table = %settings.table, "ready");
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let function = function.clone();
        async move { Ok::<Value, Error>(function.handle(event.payload, SystemTime::now()).await?) }
    }))
    .await
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // CloudWatch stamps every line itself.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}
