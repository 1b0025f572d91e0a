//! meshcall on AWS: the core's two ports on AWS services, for the Lambda deployment behind
//! API Gateway WebSocket. The routes themselves are `meshcall-core`'s, unchanged.
//!
//! # Layout
//!
//! - [`store`]: [`DynamoStore`], the [`ConnectionStore`](meshcall_core::ConnectionStore) on
//!   one DynamoDB table.
//! - [`table`]: the table's layout, decoding items, and [`create_table`] for emulators.
//! - `transaction`: conditional `TransactWriteItems` and their retries (crate-private).
//! - [`calls`]: [`Calls`], DynamoDB requests counted by operation at the wire.
//! - [`pusher`]: [`ApiGatewayPusher`], the [`Pusher`](meshcall_core::Pusher) on the API
//!   Gateway Management API (`PostToConnection`; 410 Gone is an outcome, not an error).
//!
//! Left to others: the Lambda bootstrap and the mapping from API Gateway's WebSocket event
//! to the core's calls (`crates/lambda`), the deployment template (`deploy/aws`, which
//! defines the table below), and the clients' configuration (`aws_config` in `main`).
//!
//! # The table
//!
//! One table, on-demand, partition key `pk` (string), TTL on `expiresAt` (epoch seconds).
//! Three kinds of item, told apart by the key's prefix:
//!
//! | item | key | attributes |
//! |---|---|---|
//! | participant | `p#<id>` | `roomId`, `joinedAt` (epoch ms; both only while in a room), `socketId` (absent while suspended), `suspendedUntil` (epoch ms) and `sweep` (always `due`; both only while suspended), `expiresAt` |
//! | socket | `s#<socketId>` | `participantId`, `roomId` (a copy of the participant's), `expiresAt` |
//! | room | `r#<roomId>` | `members` (string set of participant ids, absent when empty), `expiresAt` |
//!
//! The global secondary index `byRoom` has partition key `roomId` and sort key `joinedAt`
//! and projects `socketId` and `expiresAt` (and the keys, so the participant's `pk`). Only
//! participant items in a room have a `roomId`, so the index is sparse: it holds exactly
//! the room members.
//!
//! - **Who is in a room** (`members`, for every fan-out): a Query on `byRoom`, following
//!   `LastEvaluatedKey` until the last page, so no member is lost past 1 MB. Never a Scan.
//! - **A signal's target** (`participant`): one `GetItem` of `p#<id>`.
//! - **The sender** (`lookup`): one `GetItem` of `s#<socketId>`, which carries its
//!   participant's room, so a resumed participant costs no second read.
//! - **The room cap**: the room item's `members` set. A join is one `TransactWriteItems`:
//!   add the id to the new room's set on condition `size(members) < cap`, move the
//!   participant (on condition that it is still where the store read it) and its socket's
//!   copy, and take the id out of the old room's set. DynamoDB serialises transactions on
//!   the same item, so however many Lambda instances race for the last seat, one condition
//!   holds and the others are cancelled whole (nothing partly written; the refused stay
//!   where they were). A transaction rather than a lone conditional update because the seat
//!   and the participant's room must change together, or a failure between two calls would
//!   leave a seat taken by no one or a member without a seat. A set rather than a counter
//!   because adding and removing an id are idempotent, and because a set says *which* seats
//!   are taken: a participant that vanished without leaving (a `$disconnect` that never ran,
//!   then TTL) is found and its seat freed, checked in the same transaction, when its room
//!   looks full.
//! - **Who a joiner meets** (`joined.participants`, and who is told `newParticipant`): read
//!   strongly consistently after the transaction (`GetItem` of the room item, `BatchGetItem` of
//!   its members), not from the index, whose reads are eventually consistent: two people
//!   joining a room at once must each find the other. Both may then list each other, which
//!   clients take as they take any `newParticipant` for a peer they know.
//! - **Every other write** (leave, `$disconnect`, suspend, resume, expire) is one
//!   transaction whose conditions pin what was read just before; a cancelled one reads
//!   again and retries (a pause first after a conflict), up to 10 times.
//! - **Expiry**: every item gets `expiresAt` = last refresh + 3 hours (past API Gateway's
//!   2-hour connection limit), refreshed by `$connect`, joins and resumes. DynamoDB deletes
//!   expired items late (emulators never), so every read treats an item past its
//!   `expiresAt` as absent. A suspended participant past its grace cannot resume, but stays
//!   in its room until `expire` removes it and its room is told.
//!
//! A second sparse index, `bySuspension` (partition key `sweep`, sort key
//! `suspendedUntil`, keys only), holds exactly the suspended participants. A scheduled
//! sweep ([`DynamoStore::due`]) Queries it for graces that ended and hands each id to
//! `Signalling::expire`, which tells the room. On AWS an EventBridge rule invokes the
//! function once a minute for it, so a dropped participant who never resumes is announced
//! between its grace and one minute after; the local gateway sweeps every second.
//!
//! # Calls
//!
//! [`DynamoStore::calls`] counts requests by operation at the wire. Per message kind, as
//! measured by `tests/routes.rs`, for rooms under 1 MB of index entries and no contention:
//!
//! | route | DynamoDB requests |
//! |---|---|
//! | `$connect` | `TransactWriteItems` 1 |
//! | `joinRoom` | `BatchGetItem` 2 + `GetItem` 1 + `TransactWriteItems` 1; + `Query` 1 when it leaves another room (whose members are told); `BatchGetItem` 1 into an empty room |
//! | `joinRoom` of the room it is in | `BatchGetItem` 2 + `GetItem` 1 |
//! | `sendMsgToRoom` | `GetItem` 1 + `Query` 1 |
//! | `signal` | `GetItem` 2 |
//! | `leaveRoom` | `BatchGetItem` 1 + `TransactWriteItems` 1 + `Query` 1 |
//! | `$disconnect` | `BatchGetItem` 1 + `TransactWriteItems` 1; + `Query` 1 from a room |
//! | a drop kept for resume (`suspend`) | `BatchGetItem` 1 + `TransactWriteItems` 1 |
//! | `resume` | `BatchGetItem` 2 + `GetItem` 1 + `TransactWriteItems` 1 |
//! | `expire` (grace over) | `GetItem` 1 + `TransactWriteItems` 1 + `Query` 1 |
//! | `ping` | none |
//! | the sweep | `Query` 1 (a page of due participants); + each one's `expire` |
//! | each push answered 410 | `BatchGetItem` 1 + `TransactWriteItems` 1 + `Query` 1 |
//!
//! A socket that resumed someone (its participant has another id) costs one `GetItem` more
//! on `joinRoom`, `leaveRoom` and `$disconnect`. A cancelled transaction costs its read and
//! its write again.
//!
//! Scans: none, anywhere (the tests assert it).

pub mod calls;
pub mod pusher;
pub mod store;
pub mod table;
mod transaction;

pub use calls::Calls;
pub use pusher::{ApiGatewayPusher, Posts};
pub use store::DynamoStore;
pub use table::create_table;
