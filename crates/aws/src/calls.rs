//! Counting DynamoDB requests by operation, at the wire: an SDK interceptor reads each
//! request's `X-Amz-Target` header (`DynamoDB_20120810.Query`) just before it is sent, so
//! every attempt counts, SDK retries included, whichever code made it. That is what lets the
//! docs state the calls per message kind and the tests prove that nothing ever Scans.

use std::{
    collections::BTreeMap,
    fmt,
    sync::{Arc, Mutex, PoisonError},
};

use aws_sdk_dynamodb::{
    config::{
        ConfigBag, Intercept, RuntimeComponents, interceptors::BeforeTransmitInterceptorContextRef,
    },
    error::BoxError,
};

/// Requests sent, by operation name (`GetItem`, `Query`, `TransactWriteItems`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Calls(BTreeMap<String, u64>);

impl Calls {
    /// Requests of one operation.
    pub fn get(&self, operation: &str) -> u64 {
        self.0.get(operation).copied().unwrap_or(0)
    }

    /// Requests of every operation.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// The requests made since `earlier` (a snapshot from the same store).
    #[must_use]
    pub fn since(&self, earlier: &Calls) -> Calls {
        Calls(
            self.0
                .iter()
                .map(|(op, n)| (op.clone(), n - earlier.get(op).min(*n)))
                .filter(|(_, n)| *n > 0)
                .collect(),
        )
    }

    /// Every operation made at least once, with its count, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.0.iter().map(|(op, n)| (op.as_str(), *n))
    }
}

impl fmt::Display for Calls {
    /// `GetItem 1 + TransactWriteItems 1`, or `none`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        for (i, (op, n)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(" + ")?;
            }
            write!(f, "{op} {n}")?;
        }
        Ok(())
    }
}

/// The interceptor; clones share one count.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallCounter(Arc<Mutex<Calls>>);

impl CallCounter {
    pub(crate) fn snapshot(&self) -> Calls {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn record(&self, operation: &str) {
        let mut calls = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *calls.0.entry(operation.to_owned()).or_default() += 1;
    }
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "meshcall-call-counter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let target = context
            .request()
            .headers()
            .get("x-amz-target")
            .unwrap_or("unknown");
        // `DynamoDB_20120810.GetItem` → `GetItem`.
        let operation = target.rsplit_once('.').map_or(target, |(_, op)| op);
        self.record(operation);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_subtracts_and_display_lists_operations() {
        let counter = CallCounter::default();
        counter.record("GetItem");
        let before = counter.snapshot();
        counter.record("GetItem");
        counter.record("Query");
        counter.record("Query");
        let delta = counter.snapshot().since(&before);
        assert_eq!(
            (delta.get("GetItem"), delta.get("Query"), delta.get("Scan")),
            (1, 2, 0)
        );
        assert_eq!(delta.total(), 3);
        assert_eq!(delta.to_string(), "GetItem 1 + Query 2");
        assert_eq!(Calls::default().to_string(), "none");
    }
}
