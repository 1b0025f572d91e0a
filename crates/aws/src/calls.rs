//! Counting DynamoDB requests by operation, at the wire: an SDK interceptor reads each
//! request's `X-Amz-Target` header (`DynamoDB_20120810.Query`) just before it is sent, so
//! every attempt counts, SDK retries included, whichever code made it. For reads it also
//! records, from the request body, the kind of read: whether it read an index
//! (`IndexName`) and whether it was strongly consistent (`"ConsistentRead":true`; a
//! `TransactGetItems` always is). That is what lets the docs state the calls per message
//! kind and the tests prove that nothing ever Scans, and that fan-outs never read an index
//! or anything eventually consistent (which a local emulator, always consistent, would not
//! show).

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

/// The kind of one read request.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Read {
    /// `GetItem`, `BatchGetItem`, `Query`, `Scan` or `TransactGetItems`.
    pub operation: String,
    /// The index it read, if any (index reads are always eventually consistent).
    pub index: Option<String>,
    /// Whether it was strongly consistent.
    pub consistent: bool,
}

impl fmt::Display for Read {
    /// `Query bySweep eventual`, `GetItem consistent`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.operation)?;
        if let Some(index) = &self.index {
            write!(f, " {index}")?;
        }
        f.write_str(if self.consistent {
            " consistent"
        } else {
            " eventual"
        })
    }
}

/// Requests sent, by operation name (`GetItem`, `Query`, `TransactWriteItems`, ...), and
/// reads by [kind](Read).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Calls {
    operations: BTreeMap<String, u64>,
    reads: BTreeMap<Read, u64>,
}

/// `now - earlier` for each key, leaving out zeros.
fn subtract<K: Ord + Clone>(
    now: &BTreeMap<K, u64>,
    earlier: &BTreeMap<K, u64>,
) -> BTreeMap<K, u64> {
    now.iter()
        .map(|(k, n)| (k.clone(), n - earlier.get(k).copied().unwrap_or(0).min(*n)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

impl Calls {
    /// Requests of one operation.
    pub fn get(&self, operation: &str) -> u64 {
        self.operations.get(operation).copied().unwrap_or(0)
    }

    /// Requests of every operation.
    pub fn total(&self) -> u64 {
        self.operations.values().sum()
    }

    /// The requests made since `earlier` (a snapshot from the same store).
    #[must_use]
    pub fn since(&self, earlier: &Calls) -> Calls {
        Calls {
            operations: subtract(&self.operations, &earlier.operations),
            reads: subtract(&self.reads, &earlier.reads),
        }
    }

    /// Every operation made at least once, with its count, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.operations.iter().map(|(op, n)| (op.as_str(), *n))
    }

    /// Every kind of read made at least once, with its count.
    pub fn reads(&self) -> impl Iterator<Item = (&Read, u64)> {
        self.reads.iter().map(|(read, n)| (read, *n))
    }

    /// Reads of any index.
    pub fn index_reads(&self) -> u64 {
        self.reads()
            .filter(|(r, _)| r.index.is_some())
            .map(|(_, n)| n)
            .sum()
    }

    /// Reads that were not strongly consistent.
    pub fn eventual_reads(&self) -> u64 {
        self.reads()
            .filter(|(r, _)| !r.consistent)
            .map(|(_, n)| n)
            .sum()
    }
}

impl fmt::Display for Calls {
    /// `GetItem 1 + TransactWriteItems 1`, or `none`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operations.is_empty() {
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

/// The read a request body describes, for read operations; `None` for writes.
fn read_kind(operation: &str, body: &[u8]) -> Option<Read> {
    let consistent = match operation {
        "TransactGetItems" => true,
        "GetItem" | "BatchGetItem" | "Query" | "Scan" => {
            contains(body, br#""ConsistentRead":true"#)
        }
        _ => return None,
    };
    let index = find(body, br#""IndexName":""#).map(|at| {
        let rest = &body[at..];
        let end = rest.iter().position(|b| *b == b'"').unwrap_or(rest.len());
        String::from_utf8_lossy(&rest[..end]).into_owned()
    });
    Some(Read {
        operation: operation.to_owned(),
        index,
        consistent,
    })
}

/// Where the bytes after the first `needle` start.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|at| at + needle.len())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle).is_some()
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

    fn record(&self, operation: &str, read: Option<Read>) {
        let mut calls = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *calls.operations.entry(operation.to_owned()).or_default() += 1;
        if let Some(read) = read {
            *calls.reads.entry(read).or_default() += 1;
        }
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
        let request = context.request();
        let target = request.headers().get("x-amz-target").unwrap_or("unknown");
        // `DynamoDB_20120810.GetItem` → `GetItem`.
        let operation = target.rsplit_once('.').map_or(target, |(_, op)| op);
        // The SDK's DynamoDB requests are JSON held in memory; a streamed body (none is)
        // would count as an eventually consistent read, never as a consistent one.
        let read = read_kind(operation, request.body().bytes().unwrap_or_default());
        self.record(operation, read);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_subtracts_and_display_lists_operations() {
        let counter = CallCounter::default();
        counter.record("GetItem", None);
        let before = counter.snapshot();
        counter.record("GetItem", None);
        counter.record("Query", None);
        counter.record("Query", None);
        let delta = counter.snapshot().since(&before);
        assert_eq!(
            (delta.get("GetItem"), delta.get("Query"), delta.get("Scan")),
            (1, 2, 0)
        );
        assert_eq!(delta.total(), 3);
        assert_eq!(delta.to_string(), "GetItem 1 + Query 2");
        assert_eq!(Calls::default().to_string(), "none");
    }

    #[test]
    fn reads_are_told_apart_by_index_and_consistency() {
        let get = read_kind("GetItem", br#"{"ConsistentRead":true,"Key":{}}"#).unwrap();
        assert_eq!((get.index.as_deref(), get.consistent), (None, true));
        let query = br#"{"IndexName":"bySweep","KeyConditionExpression":"x"}"#;
        let query = read_kind("Query", query).unwrap();
        assert_eq!(
            (query.index.as_deref(), query.consistent),
            (Some("bySweep"), false)
        );
        assert_eq!(query.to_string(), "Query bySweep eventual");
        let batch = br#"{"RequestItems":{"t":{"Keys":[],"ConsistentRead":false}}}"#;
        assert!(!read_kind("BatchGetItem", batch).unwrap().consistent);
        assert_eq!(read_kind("TransactWriteItems", b"{}"), None);

        let counter = CallCounter::default();
        counter.record("GetItem", Some(get));
        counter.record("Query", Some(query.clone()));
        counter.record("Query", Some(query));
        let calls = counter.snapshot();
        assert_eq!((calls.index_reads(), calls.eventual_reads()), (2, 2));
        let since = calls.since(&calls);
        assert_eq!(
            (since.index_reads(), since.eventual_reads(), since.total()),
            (0, 0, 0)
        );
    }
}
