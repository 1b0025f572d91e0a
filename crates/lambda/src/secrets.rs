//! The function's secrets, read once at init from SSM Parameter Store `SecureString`
//! parameters (`GetParameter` with decryption), never from the environment.

use aws_sdk_ssm::Client;

use crate::settings::{Secrets, Settings};

/// A secret parameter could not be read.
#[derive(Debug, thiserror::Error)]
#[error("reading the SSM parameter {name}: {source}")]
pub struct SecretError {
    name: String,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

/// Reads the parameters `settings` names (one `GetParameter` each).
///
/// # Errors
/// [`SecretError`] if a named parameter cannot be read or has no value.
pub async fn read(ssm: &Client, settings: &Settings) -> Result<Secrets, SecretError> {
    Ok(Secrets {
        resume: parameter(ssm, settings.resume_secret_parameter.as_deref()).await?,
        turn: parameter(ssm, settings.turn_secret_parameter.as_deref()).await?,
    })
}

async fn parameter(ssm: &Client, name: Option<&str>) -> Result<Option<String>, SecretError> {
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    let failed = |source: Box<dyn std::error::Error + Send + Sync>| SecretError {
        name: name.to_owned(),
        source,
    };
    let output = ssm
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .map_err(|e| failed(Box::new(e)))?;
    let value = output
        .parameter
        .and_then(|p| p.value)
        .ok_or_else(|| failed("the parameter has no value".into()))?;
    Ok(Some(value))
}
