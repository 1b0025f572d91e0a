//! The AWS resources the function uses besides `@connections`, in the emulator that
//! `AWS_ENDPOINT_URL` names (moto), as the template creates them on AWS:
//!
//! - the DynamoDB table (`--table`);
//! - the SQS expiry queue `<table>-expiry`, into which the function sends one delayed
//!   message per suspension (`MESHCALL_EXPIRY_QUEUE_URL`), and which [`poll`] drains like
//!   Lambda's SQS event source mapping with `ReportBatchItemFailures`: batches of up to 10
//!   messages as one SQS event, the messages the response does not list in
//!   `batchItemFailures` deleted, the others left to reappear after the queue's visibility
//!   timeout;
//! - the SSM `SecureString` parameters the function reads once at init:
//!   `/<table>/resume-secret` (`MESHCALL_RESUME_SECRET_PARAMETER`, random on every run) and,
//!   with `--turn-secret`, `/<table>/turn-secret` (`MESHCALL_TURN_SECRET_PARAMETER`).

use std::{collections::HashSet, time::Duration};

use anyhow::Context as _;
use aws_config::SdkConfig;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName, QueueAttributeName,
};
use aws_sdk_ssm::types::ParameterType;
use rand::RngExt as _;
use serde_json::{Map, Value, json};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{event::REGION, ids::hex, runtime::Invoker, settings::Settings};

/// The most messages in one SQS event (the event source mapping's `BatchSize`; also the
/// most one `ReceiveMessage` returns).
pub const BATCH_SIZE: i32 = 10;

/// The expiry queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    /// Its URL (`MESHCALL_EXPIRY_QUEUE_URL`).
    pub url: String,
    /// Its ARN (`eventSourceARN` in the events).
    pub arn: String,
}

/// What the function is told about the resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resources {
    /// The expiry queue, when the gateway created it.
    pub expiry_queue: Option<Queue>,
    /// The resume secret's parameter name.
    pub resume_parameter: String,
    /// The TURN secret's parameter name, with `--turn-secret`.
    pub turn_parameter: Option<String>,
}

/// The expiry queue's name for `table`: `<table>-expiry`, in the characters SQS allows
/// (at most 80 of `A-Z a-z 0-9 - _`).
pub fn queue_name(table: &str) -> String {
    let clean: String = table
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(80 - "-expiry".len())
        .collect();
    format!("{clean}-expiry")
}

impl Resources {
    /// The names for `settings`, without creating anything (and so without a queue).
    pub fn named(settings: &Settings) -> Self {
        Self {
            expiry_queue: None,
            resume_parameter: format!("/{}/resume-secret", settings.table),
            turn_parameter: settings
                .turn_secret()
                .map(|_| format!("/{}/turn-secret", settings.table)),
        }
    }

    /// Creates the table (unless it exists), the expiry queue and the parameters.
    ///
    /// # Errors
    /// If the emulator refuses a call.
    pub async fn create(sdk: &SdkConfig, settings: &Settings) -> anyhow::Result<Self> {
        create_table(sdk, &settings.table).await?;
        let mut resources = Self::named(settings);
        let secret: [u8; 32] = rand::rng().random();
        let ssm = aws_sdk_ssm::Client::new(sdk);
        put_secret(&ssm, &resources.resume_parameter, &hex(&secret)).await?;
        if let (Some(name), Some(value)) =
            (&resources.turn_parameter, &settings.turn_args.turn_secret)
        {
            put_secret(&ssm, name, value).await?;
        }
        let sqs = aws_sdk_sqs::Client::new(sdk);
        resources.expiry_queue = Some(
            create_queue(
                &sqs,
                &queue_name(&settings.table),
                settings.expiry_visibility_timeout,
            )
            .await?,
        );
        Ok(resources)
    }

    /// The function's environment variables for these resources.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![(
            "MESHCALL_RESUME_SECRET_PARAMETER",
            self.resume_parameter.clone(),
        )];
        if let Some(name) = &self.turn_parameter {
            env.push(("MESHCALL_TURN_SECRET_PARAMETER", name.clone()));
        }
        if let Some(queue) = &self.expiry_queue {
            env.push(("MESHCALL_EXPIRY_QUEUE_URL", queue.url.clone()));
        }
        env
    }
}

/// Creates `table` unless it exists.
async fn create_table(sdk: &SdkConfig, table: &str) -> anyhow::Result<()> {
    let client = aws_sdk_dynamodb::Client::new(sdk);
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

/// Writes the `SecureString` parameter `name` (AWS-managed key), replacing any value.
async fn put_secret(ssm: &aws_sdk_ssm::Client, name: &str, value: &str) -> anyhow::Result<()> {
    ssm.put_parameter()
        .name(name)
        .value(value)
        .r#type(ParameterType::SecureString)
        .overwrite(true)
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "writing parameter {name}: {}",
                aws_sdk_ssm::error::DisplayErrorContext(e)
            )
        })?;
    tracing::info!(parameter = name, "secret parameter written");
    Ok(())
}

/// Creates the queue `name` (or takes the existing one) with `visibility` as its
/// visibility timeout, and reads its ARN.
async fn create_queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    visibility: Duration,
) -> anyhow::Result<Queue> {
    let sdk_error = |what: &str, e: &dyn std::fmt::Display| anyhow::anyhow!("{what} {name}: {e}");
    let url = sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .map_err(|e| {
            sdk_error(
                "creating queue",
                &aws_sdk_sqs::error::DisplayErrorContext(e),
            )
        })?
        .queue_url
        .context("CreateQueue returned no QueueUrl")?;
    sqs.set_queue_attributes()
        .queue_url(&url)
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            visibility.as_secs().to_string(),
        )
        .send()
        .await
        .map_err(|e| {
            sdk_error(
                "configuring queue",
                &aws_sdk_sqs::error::DisplayErrorContext(e),
            )
        })?;
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| sdk_error("reading queue", &aws_sdk_sqs::error::DisplayErrorContext(e)))?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .context("GetQueueAttributes returned no QueueArn")?;
    tracing::info!(queue = name, %url, "expiry queue ready");
    Ok(Queue { url, arn })
}

/// The event source mapping: polls `queue` every `every` (at once again after a
/// non-empty receive) until `shutdown`, and hands each batch to the function as one SQS
/// event, in a task of its own (tracked by `tracker`).
pub async fn poll(
    sqs: aws_sdk_sqs::Client,
    queue: Queue,
    invoker: Invoker,
    every: Duration,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let mut failing = false;
    loop {
        let received = tokio::select! {
            received = sqs
                .receive_message()
                .queue_url(&queue.url)
                .max_number_of_messages(BATCH_SIZE)
                .wait_time_seconds(0)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .message_attribute_names("All")
                .send() => received,
            () = shutdown.cancelled() => return,
        };
        let messages = match received {
            Ok(out) => {
                failing = false;
                out.messages.unwrap_or_default()
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(e), "polling the expiry queue failed");
                }
                failing = true;
                Vec::new()
            }
        };
        if messages.is_empty() {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = shutdown.cancelled() => return,
            }
            continue;
        }
        tracker.spawn(deliver(
            sqs.clone(),
            queue.clone(),
            invoker.clone(),
            messages,
        ));
    }
}

/// Invokes the function with one batch and deletes what it processed.
async fn deliver(sqs: aws_sdk_sqs::Client, queue: Queue, invoker: Invoker, messages: Vec<Message>) {
    let event = sqs_event(&queue, &messages);
    let ids: Vec<&str> = messages
        .iter()
        .map(|m| m.message_id().unwrap_or_default())
        .collect();
    let failed = match invoker.invoke(&event).await {
        Ok(body) => batch_item_failures(&body, &ids).unwrap_or_else(|| {
            tracing::warn!(
                response = %String::from_utf8_lossy(&body),
                "an SQS response the event source mapping cannot read: the whole batch failed"
            );
            ids.iter().map(|id| (*id).to_owned()).collect()
        }),
        Err(e) => {
            tracing::warn!(error = %e, "the expiry batch failed");
            ids.iter().map(|id| (*id).to_owned()).collect()
        }
    };
    let entries: Vec<DeleteMessageBatchRequestEntry> = messages
        .iter()
        .enumerate()
        .filter(|(_, m)| !failed.contains(m.message_id().unwrap_or_default()))
        .filter_map(|(i, m)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .build()
                .ok()
        })
        .collect();
    let mut deleted = 0;
    if !entries.is_empty() {
        match sqs
            .delete_message_batch()
            .queue_url(&queue.url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(out) => {
                deleted = out.successful().len();
                for f in out.failed() {
                    tracing::warn!(
                        id = f.id(),
                        code = f.code(),
                        "deleting an expiry message failed"
                    );
                }
            }
            Err(e) => {
                tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(e), "deleting expiry messages failed");
            }
        }
    }
    tracing::debug!(
        received = messages.len(),
        deleted,
        failed = failed.len(),
        "expiry batch"
    );
    invoker.stats().sqs(messages.len(), deleted, failed.len());
}

/// Lambda's SQS event for `messages` from `queue`.
pub fn sqs_event(queue: &Queue, messages: &[Message]) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attributes: Map<String, Value> = m
                .attributes()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.as_str().to_owned(), v.clone().into()))
                .collect();
            let message_attributes: Map<String, Value> = m
                .message_attributes()
                .into_iter()
                .flatten()
                .map(|(k, v)| {
                    let mut a = Map::new();
                    if let Some(s) = v.string_value() {
                        a.insert("stringValue".into(), s.into());
                    }
                    a.insert("stringListValues".into(), json!([]));
                    a.insert("binaryListValues".into(), json!([]));
                    a.insert("dataType".into(), v.data_type().into());
                    (k.clone(), a.into())
                })
                .collect();
            json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body().unwrap_or_default(),
                "attributes": attributes,
                "messageAttributes": message_attributes,
                "md5OfBody": m.md5_of_body(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue.arn,
                "awsRegion": queue_region(&queue.arn),
            })
        })
        .collect();
    json!({ "Records": records })
}

/// The region in an ARN (`arn:aws:sqs:<region>:...`), or the gateway's.
fn queue_region(arn: &str) -> &str {
    arn.split(':')
        .nth(3)
        .filter(|r| !r.is_empty())
        .unwrap_or(REGION)
}

/// The message ids a function's response to an SQS event reports as failed, as the event
/// source mapping reads `{"batchItemFailures":[{"itemIdentifier":..}]}`: none for an empty
/// or null response or list; `None` (the whole batch failed) for a response that is not
/// JSON, or an item without a string `itemIdentifier` naming a message of the batch.
pub fn batch_item_failures(body: &[u8], ids: &[&str]) -> Option<HashSet<String>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Some(HashSet::new());
    }
    let response: Value = serde_json::from_slice(body).ok()?;
    let items = match response.get("batchItemFailures") {
        None | Some(Value::Null) => return Some(HashSet::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return None,
    };
    items
        .iter()
        .map(|item| {
            item.get("itemIdentifier")
                .and_then(Value::as_str)
                .filter(|id| ids.contains(id))
                .map(str::to_owned)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_item_failures_are_read_as_lambda_reads_them() {
        let ids = ["a", "b", "c"];
        let read = |body: &str| {
            batch_item_failures(body.as_bytes(), &ids).map(|s| {
                let mut v: Vec<String> = s.into_iter().collect();
                v.sort();
                v
            })
        };
        for ok in [
            "",
            "  ",
            "null",
            "{}",
            r#"{"batchItemFailures":[]}"#,
            r#"{"batchItemFailures":null}"#,
        ] {
            assert_eq!(read(ok), Some(vec![]), "{ok:?}");
        }
        assert_eq!(
            read(r#"{"batchItemFailures":[{"itemIdentifier":"b"},{"itemIdentifier":"a"}]}"#),
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
        for whole in [
            "not json",
            r#"{"batchItemFailures":[{"itemIdentifier":"zz"}]}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":""}]}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":null}]}"#,
            r#"{"batchItemFailures":[{"id":"a"}]}"#,
            r#"{"batchItemFailures":"a"}"#,
        ] {
            assert_eq!(read(whole), None, "{whole}");
        }
    }

    #[test]
    fn names_fit_sqs_and_ssm() {
        assert_eq!(queue_name("meshcall"), "meshcall-expiry");
        assert_eq!(queue_name("a.b"), "a-b-expiry");
        assert_eq!(queue_name(&"x".repeat(200)).len(), 80);
        let mut settings = Settings {
            table: "t1".into(),
            ..Settings::default()
        };
        let r = Resources::named(&settings);
        assert_eq!(r.resume_parameter, "/t1/resume-secret");
        assert_eq!(r.turn_parameter, None);
        assert_eq!(
            r.env(),
            [(
                "MESHCALL_RESUME_SECRET_PARAMETER",
                "/t1/resume-secret".to_owned()
            )]
        );
        settings.turn_args.turn_secret = Some("s".into());
        let mut r = Resources::named(&settings);
        r.expiry_queue = Some(Queue {
            url: "http://q".into(),
            arn: "arn:aws:sqs:eu-west-1:1:q".into(),
        });
        let env: std::collections::HashMap<_, _> = r.env().into_iter().collect();
        assert_eq!(env["MESHCALL_TURN_SECRET_PARAMETER"], "/t1/turn-secret");
        assert_eq!(env["MESHCALL_EXPIRY_QUEUE_URL"], "http://q");
        assert_eq!(queue_region("arn:aws:sqs:eu-west-1:1:q"), "eu-west-1");
        assert_eq!(queue_region("nope"), REGION);
    }
}
