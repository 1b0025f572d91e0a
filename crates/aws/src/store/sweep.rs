//! What the scheduled sweep needs: `due` (the store's only Query, on the sparse `bySweep`
//! index, never a Scan) and `checked`.

use std::{collections::HashMap, time::SystemTime};

use aws_sdk_dynamodb::{operation::update_item::UpdateItemError, types::AttributeValue};
use meshcall_core::{Due, Member, StoreError, protocol::ConnectionId};

use super::DynamoStore;
use crate::{
    table::{
        BY_SWEEP, CHECK, GRACE, Item, PK, SOCKET_ID, epoch_millis, n, names_in, participant_id,
        participant_key, s,
    },
    transaction::{Outcome, Reason, Step, retry},
};

impl DynamoStore {
    /// `due`: two Queries of `bySweep` (more if a partition spans pages): `sweep = grace
    /// AND sweepAt <= now` (suspended participants whose grace ended), and `sweep = check
    /// AND sweepAt <= now` (attached members due for a liveness check, with the socket the
    /// index projects). Index reads are eventually consistent: `expire` and `checked` check
    /// each one again.
    pub(super) async fn due(&self, now: SystemTime) -> Result<Due, StoreError> {
        let mut due = Due::default();
        for item in self.due_in(GRACE, now).await? {
            if let Some(id) = self.indexed_participant(&item) {
                due.expired.push(id);
            }
        }
        for item in self.due_in(CHECK, now).await? {
            let Some(id) = self.indexed_participant(&item) else {
                continue;
            };
            let socket = item
                .get(SOCKET_ID)
                .and_then(|v| v.as_s().ok())
                .and_then(|v| ConnectionId::parse(v).ok());
            if let Some(socket) = socket {
                due.unchecked.push(Member {
                    id,
                    socket: Some(socket),
                });
            } else {
                tracing::warn!(conn_id = %id, "bySweep holds a member with no socket");
            }
        }
        Ok(due)
    }

    /// The participant an index item names, or `None` (logged) for any other item.
    fn indexed_participant(&self, item: &Item) -> Option<ConnectionId> {
        let id = participant_id(item);
        if id.is_none() {
            tracing::warn!(table = %self.table, key = ?item.get(PK), "bySweep holds a non-participant");
        }
        id
    }

    /// Every item of partition `sweep` of `bySweep` with `sweepAt <= now`, following
    /// `LastEvaluatedKey` to the last page.
    async fn due_in(&self, sweep: &str, now: SystemTime) -> Result<Vec<Item>, StoreError> {
        let condition = "#sweep = :sweep AND #sweepAt <= :now";
        let values = HashMap::from([
            (":sweep".to_owned(), s(sweep)),
            (":now".to_owned(), n(epoch_millis(now))),
        ]);
        let mut items = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(BY_SWEEP)
                .key_condition_expression(condition)
                .set_expression_attribute_names(Some(names_in(&[condition])))
                .set_expression_attribute_values(Some(values.clone()))
                .set_limit(self.page_size)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(StoreError::new)?;
            items.extend(out.items.unwrap_or_default());
            start = out.last_evaluated_key.filter(|k| !k.is_empty());
            if start.is_none() {
                return Ok(items);
            }
        }
    }

    /// `checked`: one conditional `UpdateItem` of `sweepAt`, if the participant is still
    /// attached to `socket` in a room; nothing otherwise.
    pub(super) async fn checked(
        &self,
        participant: &ConnectionId,
        socket: &ConnectionId,
        next: SystemTime,
        _now: SystemTime,
    ) -> Result<(), StoreError> {
        let condition = "#socket = :socket AND #sweep = :check AND attribute_not_exists(#until)";
        let update = "SET #sweepAt = :next";
        retry(|_| async {
            let sent = self
                .client
                .update_item()
                .table_name(&self.table)
                .key(PK, participant_key(participant))
                .update_expression(update)
                .condition_expression(condition)
                .set_expression_attribute_names(Some(names_in(&[update, condition])))
                .expression_attribute_values(":socket", s(socket.as_str()))
                .expression_attribute_values(":check", s(CHECK))
                .expression_attribute_values(":next", n(epoch_millis(next)))
                .send()
                .await;
            match sent {
                Ok(_) => Ok(Step::Done(())),
                Err(e) => match e.as_service_error() {
                    // Moved on, suspended, left or gone: nothing to record.
                    Some(UpdateItemError::ConditionalCheckFailedException(_)) => Ok(Step::Done(())),
                    // A transaction on the item is in flight.
                    Some(UpdateItemError::TransactionConflictException(_)) => {
                        Ok(Step::Again(Outcome::Cancelled(vec![Reason::Busy])))
                    }
                    _ => Err(StoreError::new(e)),
                },
            }
        })
        .await
    }
}
