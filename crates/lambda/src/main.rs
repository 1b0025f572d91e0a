//! The Lambda bootstrap: settings, clients built once per instance, then every event to
//! [`Function::handle`]. Wiring only; the behaviour is in the library and `meshcall-core`.

#![recursion_limit = "256"]

use std::{sync::Arc, time::SystemTime};

use lambda_runtime::{Error, LambdaEvent, service_fn};
use meshcall_aws::{ApiGatewayPusher, DynamoStore};
use meshcall_core::Signalling;
use meshcall_lambda::{Function, LogFormat, Settings};
use serde_json::Value;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let settings = Settings::from_env()?;
    init_tracing(settings.log_format);
    let config = settings.core_config()?;
    let sdk = aws_config::load_from_env().await;
    let store = DynamoStore::new(&sdk, settings.table.clone());
    let pusher = ApiGatewayPusher::new(&sdk, &settings.callback_url);
    let function = Arc::new(Function::new(
        Signalling::new(store, pusher, config),
        settings.origins(),
    ));
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
