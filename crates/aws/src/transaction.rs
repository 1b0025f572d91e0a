//! Conditional writes, all-or-nothing: [`Write`] builds one action of a `TransactWriteItems`
//! call, [`transact`] sends them and sorts a cancellation into what the caller can act on
//! (a condition that no longer holds, a conflict worth retrying), and [`retry`] is the one
//! loop every write runs in.
//!
//! Every change to membership is one transaction whose conditions pin what the store read
//! just before (optimistic concurrency): if another Lambda instance changed those items in
//! between, the transaction is cancelled, nothing is written, and the operation reads again.

use std::{
    collections::{HashMap, hash_map::RandomState},
    future::Future,
    hash::{BuildHasher, Hasher},
    time::Duration,
};

use aws_sdk_dynamodb::{
    Client,
    operation::transact_write_items::TransactWriteItemsError,
    types::{AttributeValue, ConditionCheck, Delete, Put, TransactWriteItem, Update},
};
use meshcall_core::StoreError;

use crate::table::{Item, PK, names_in};

/// An operation gives up once it has paused this long in total between attempts (for
/// conflicts: transactions on the same item at the same moment). Time spent on requests
/// comes on top, so a crowd at one room's door is answered within about 3 s.
pub(crate) const PAUSE_BUDGET: Duration = Duration::from_secs(2);

/// ... or once it has made this many attempts (reads again straight after a failed
/// condition do not pause, so the budget alone would not bound them).
pub(crate) const MAX_ATTEMPTS: u32 = 40;

#[derive(Debug, Clone)]
enum Action {
    Put(Item),
    Update(String),
    Delete,
    Check,
}

/// One action of a transaction: an item key, what to do to it, and the condition that must
/// hold.
#[derive(Debug, Clone)]
pub(crate) struct Write {
    key: AttributeValue,
    action: Action,
    condition: Option<String>,
    values: HashMap<&'static str, AttributeValue>,
}

impl Write {
    fn new(key: AttributeValue, action: Action) -> Self {
        Self {
            key,
            action,
            condition: None,
            values: HashMap::new(),
        }
    }

    /// Writes `item` (which carries its own key) whole.
    pub(crate) fn put(key: AttributeValue, mut item: Item) -> Self {
        item.insert(PK.to_owned(), key.clone());
        Self::new(key, Action::Put(item))
    }

    /// Applies an update expression.
    pub(crate) fn update(key: AttributeValue, expression: &str) -> Self {
        Self::new(key, Action::Update(expression.to_owned()))
    }

    /// Deletes the item.
    pub(crate) fn delete(key: AttributeValue) -> Self {
        Self::new(key, Action::Delete)
    }

    /// Only checks `condition` on the item.
    pub(crate) fn check(key: AttributeValue, condition: &str) -> Self {
        Self::new(key, Action::Check).when(condition)
    }

    /// The condition the item must meet.
    pub(crate) fn when(mut self, condition: &str) -> Self {
        self.condition = Some(condition.to_owned());
        self
    }

    /// Values the expressions may use; those they do not use are left out of the request
    /// (DynamoDB refuses unused ones).
    pub(crate) fn values(
        mut self,
        values: impl IntoIterator<Item = (&'static str, AttributeValue)>,
    ) -> Self {
        self.values.extend(values);
        self
    }

    fn build(self, table: &str) -> Result<TransactWriteItem, StoreError> {
        let expressions: Vec<&str> = match &self.action {
            Action::Update(e) => vec![e.as_str()],
            _ => vec![],
        }
        .into_iter()
        .chain(self.condition.as_deref())
        .collect();
        let names = names_in(&expressions);
        let names = (!names.is_empty()).then_some(names);
        let values: HashMap<String, AttributeValue> = self
            .values
            .into_iter()
            .filter(|(token, _)| expressions.iter().any(|e| uses_value(e, token)))
            .map(|(token, v)| (token.to_owned(), v))
            .collect();
        let values = (!values.is_empty()).then_some(values);
        let item = TransactWriteItem::builder();
        let item = match self.action {
            Action::Put(attrs) => item.put(
                Put::builder()
                    .table_name(table)
                    .set_item(Some(attrs))
                    .set_condition_expression(self.condition)
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values)
                    .build()
                    .map_err(StoreError::new)?,
            ),
            Action::Update(expression) => item.update(
                Update::builder()
                    .table_name(table)
                    .key(PK, self.key)
                    .update_expression(expression)
                    .set_condition_expression(self.condition)
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values)
                    .build()
                    .map_err(StoreError::new)?,
            ),
            Action::Delete => item.delete(
                Delete::builder()
                    .table_name(table)
                    .key(PK, self.key)
                    .set_condition_expression(self.condition)
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values)
                    .build()
                    .map_err(StoreError::new)?,
            ),
            Action::Check => item.condition_check(
                ConditionCheck::builder()
                    .table_name(table)
                    .key(PK, self.key)
                    .set_condition_expression(self.condition)
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values)
                    .build()
                    .map_err(StoreError::new)?,
            ),
        };
        Ok(item.build())
    }
}

/// Whether `expression` uses the value `token` (`:room`, and not just `:roomOld`).
fn uses_value(expression: &str, token: &str) -> bool {
    expression.match_indices(token).any(|(at, _)| {
        expression[at + token.len()..]
            .chars()
            .next()
            .is_none_or(|c| !c.is_ascii_alphanumeric() && c != '_')
    })
}

/// Why one action of a cancelled transaction did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reason {
    /// This action was fine; another one cancelled the transaction.
    None,
    /// Its condition did not hold: the item changed since it was read.
    ConditionFailed,
    /// A conflicting transaction or throttling: try again after a pause.
    Busy,
}

/// What became of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Everything was written.
    Committed,
    /// Nothing was written; one reason per action, in order.
    Cancelled(Vec<Reason>),
}

impl Outcome {
    /// Whether the transaction should be retried after a pause (rather than straight after
    /// a fresh read).
    pub(crate) fn busy(&self) -> bool {
        matches!(self, Self::Cancelled(r) if !r.contains(&Reason::ConditionFailed))
    }
}

/// A transaction was cancelled for a reason retrying cannot help with.
#[derive(Debug, thiserror::Error)]
#[error("transaction cancelled: {0}")]
struct Refused(String);

/// The items kept changing under an operation.
#[derive(Debug, thiserror::Error)]
#[error("gave up after {attempts} attempts and {paused:?} of pauses: the items kept changing")]
pub(crate) struct Contended {
    attempts: u32,
    paused: Duration,
}

/// What one attempt of an operation came to.
#[derive(Debug)]
pub(crate) enum Step<T> {
    /// Finished, with this result.
    Done(T),
    /// Not yet: read again and try again, after a pause if the outcome says the items were
    /// busy ([`Outcome::busy`]), straight away otherwise (a condition failed: the items
    /// changed; or something committed that changes what the next read finds).
    Again(Outcome),
}

impl<T> Step<T> {
    /// `Done(value())` if the transaction committed, `Again` otherwise.
    pub(crate) fn after(outcome: Outcome, value: impl FnOnce() -> T) -> Self {
        match outcome {
            Outcome::Committed => Self::Done(value()),
            cancelled @ Outcome::Cancelled(_) => Self::Again(cancelled),
        }
    }
}

/// Runs `attempt` (a read, a decision, usually one transaction) until it is
/// [`Step::Done`] or fails, pausing with a growing, jittered backoff after each conflict.
/// Gives up with [`Contended`] after [`PAUSE_BUDGET`] of pauses or [`MAX_ATTEMPTS`].
///
/// # Errors
/// What `attempt` returns, or [`Contended`] (as a [`StoreError`]).
pub(crate) async fn retry<T, E, F, Fut>(mut attempt: F) -> Result<T, E>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<Step<T>, E>>,
    E: From<StoreError>,
{
    let mut paused = Duration::ZERO;
    let mut attempts = 0;
    loop {
        let outcome = match attempt(attempts).await? {
            Step::Done(value) => return Ok(value),
            Step::Again(outcome) => outcome,
        };
        attempts += 1;
        let busy = outcome.busy();
        tracing::debug!(attempts, busy, "transaction cancelled; trying again");
        if attempts >= MAX_ATTEMPTS || (busy && paused >= PAUSE_BUDGET) {
            tracing::warn!(attempts, ?paused, "gave up: the items kept changing");
            return Err(StoreError::new(Contended { attempts, paused }).into());
        }
        if busy {
            let pause = backoff(attempts - 1);
            tokio::time::sleep(pause).await;
            paused += pause;
        }
    }
}

/// Sends `writes` as one `TransactWriteItems`.
///
/// # Errors
/// [`StoreError`] if the call fails, or is cancelled for a reason other than a condition or
/// a conflict.
pub(crate) async fn transact(
    client: &Client,
    table: &str,
    writes: Vec<Write>,
) -> Result<Outcome, StoreError> {
    let items = writes
        .into_iter()
        .map(|w| w.build(table))
        .collect::<Result<Vec<_>, _>>()?;
    let Err(err) = client
        .transact_write_items()
        .set_transact_items(Some(items))
        .send()
        .await
    else {
        return Ok(Outcome::Committed);
    };
    match err.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => {
            let mut reasons = Vec::new();
            for reason in cancelled.cancellation_reasons() {
                reasons.push(match reason.code() {
                    None | Some("None") => Reason::None,
                    Some("ConditionalCheckFailed") => Reason::ConditionFailed,
                    Some(
                        "TransactionConflict"
                        | "ThrottlingError"
                        | "ProvisionedThroughputExceeded"
                        | "RequestLimitExceeded",
                    ) => Reason::Busy,
                    Some(other) => return Err(StoreError::new(Refused(other.to_owned()))),
                });
            }
            if reasons.iter().all(|r| *r == Reason::None) {
                return Err(StoreError::new(err));
            }
            Ok(Outcome::Cancelled(reasons))
        }
        Some(TransactWriteItemsError::TransactionInProgressException(_)) => {
            Ok(Outcome::Cancelled(vec![Reason::Busy]))
        }
        _ => Err(StoreError::new(err)),
    }
}

/// The pause before retry `attempt + 1` after a conflict: 8 ms doubling per attempt up to
/// 128 ms, half of it fixed and half jittered, so a crowd spreads out instead of colliding
/// again in step.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let ceiling = Duration::from_millis(8) * 2u32.pow(attempt.min(4));
    ceiling / 2 + (ceiling / 2).mul_f64(jitter())
}

/// A number in [0, 1) that differs from call to call. No clock: `RandomState` is seeded
/// randomly per thread and moves on with each use.
fn jitter() -> f64 {
    let bits = RandomState::new().build_hasher().finish();
    f64::from(u32::try_from(bits >> 32).unwrap_or(0)) / (f64::from(u32::MAX) + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::s;

    #[test]
    fn only_used_values_and_names_are_sent() {
        let write = Write::update(s("p#A="), "SET #room = :room")
            .when("#socket = :socket")
            .values([
                (":room", s("r")),
                (":socket", s("A=")),
                (":roomOld", s("q")),
            ]);
        let built = write.build("t").unwrap();
        let update = built.update().unwrap();
        let mut values: Vec<&String> = update
            .expression_attribute_values()
            .unwrap()
            .keys()
            .collect();
        values.sort();
        assert_eq!(values, [":room", ":socket"]);
        assert_eq!(update.expression_attribute_names().unwrap().len(), 2);
        let delete = Write::delete(s("s#A=")).build("t").unwrap();
        let delete = delete.delete().unwrap();
        assert!(delete.expression_attribute_names().is_none());
        assert!(delete.expression_attribute_values().is_none());
    }

    #[test]
    fn value_tokens_match_whole_words() {
        assert!(uses_value("#a = :room", ":room"));
        assert!(uses_value(":room)", ":room"));
        assert!(!uses_value("#a = :roomOld", ":room"));
    }

    #[test]
    fn cancellations_sort_into_condition_failures_and_conflicts() {
        let changed = Outcome::Cancelled(vec![Reason::ConditionFailed, Reason::Busy]);
        assert!(!changed.busy(), "a changed item is read again at once");
        let conflict = Outcome::Cancelled(vec![Reason::None, Reason::Busy]);
        assert!(conflict.busy());
        assert!(!Outcome::Committed.busy());
    }

    #[test]
    fn backoff_grows_stays_bounded_and_jitters() {
        assert!(backoff(0) >= Duration::from_millis(4) && backoff(0) < Duration::from_millis(8));
        assert!(backoff(3) >= Duration::from_millis(32));
        assert!(backoff(50) < Duration::from_millis(128));
        let pauses: std::collections::HashSet<Duration> = (0..20).map(|_| backoff(5)).collect();
        assert!(pauses.len() > 1, "no jitter: {pauses:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn retry_pauses_only_after_conflicts_and_gives_up_on_its_budget() {
        let busy = || Outcome::Cancelled(vec![Reason::Busy]);
        let changed = || Outcome::Cancelled(vec![Reason::ConditionFailed]);
        // Two conflicts, one changed item, then done.
        let done: Result<u32, StoreError> = retry(|n| async move {
            Ok(match n {
                0 | 1 => Step::Again(busy()),
                2 => Step::Again(changed()),
                _ => Step::Done(n),
            })
        })
        .await;
        assert_eq!(done.unwrap(), 3);
        // Conflicts forever: gives up, after about the budget.
        let started = tokio::time::Instant::now();
        let gave_up: Result<(), StoreError> = retry(|_| async { Ok(Step::Again(busy())) }).await;
        let took = started.elapsed();
        assert!(gave_up.is_err());
        assert!(took >= PAUSE_BUDGET && took < PAUSE_BUDGET * 2, "{took:?}");
        // Changed items forever: gives up after MAX_ATTEMPTS, without pausing.
        let mut n = 0;
        let gave_up: Result<(), StoreError> = retry(|_| {
            n += 1;
            async { Ok(Step::Again(changed())) }
        })
        .await;
        assert!(gave_up.is_err());
        assert_eq!(n, MAX_ATTEMPTS);
    }
}
