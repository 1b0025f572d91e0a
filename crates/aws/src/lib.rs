//! meshcall on AWS: the core's two ports on AWS services, for the Lambda deployment behind
//! API Gateway WebSocket. The routes themselves are `meshcall-core`'s, unchanged.
//!
//! # Layout
//!
//! - [`store`]: [`DynamoStore`], the [`ConnectionStore`](meshcall_core::ConnectionStore) on
//!   one DynamoDB table.
//! - [`table`]: the table's layout, decoding items, and [`create_table`] for emulators.
//! - `transaction`: conditional `TransactWriteItems` and the one retry loop every write
//!   runs in (crate-private).
//! - [`calls`]: [`Calls`], DynamoDB requests counted by operation, and reads by kind, at the
//!   wire.
//! - [`pusher`]: [`ApiGatewayPusher`], the [`Pusher`](meshcall_core::Pusher) on the API
//!   Gateway Management API (`PostToConnection`, and `GetConnection` to probe; 410 Gone is
//!   an outcome, not an error).
//!
//! Left to others: the Lambda bootstrap and the mapping from API Gateway's WebSocket event
//! to the core's calls (`crates/lambda`), the deployment template (`deploy/aws`, which
//! defines the table below), and the clients' configuration (`aws_config` in `main`).
//!
//! # The table
//!
//! This is the one description of the DynamoDB layout; `docs/architecture.md` and the
//! deployment template point here.
//!
//! One table, on-demand, partition key `pk` (string), TTL on `expiresAt` (epoch seconds).
//! Three kinds of item, told apart by the key's prefix:
//!
//! | item | key | attributes |
//! |---|---|---|
//! | participant | `p#<id>` | `roomId`, `joinedAt` (epoch ms; both only while in a room); `socketId`: the socket it is attached to, or while suspended the one it dropped from; `suspendedUntil` (epoch ms, only while suspended); `sweep` + `sweepAt` (below; only while in a room); `expiresAt` |
//! | socket | `s#<socketId>` | `participantId`; `roomId` (a copy of the participant's); `suspendedUntil` (a copy, only while its participant is suspended from it); `expiresAt` |
//! | room | `r#<roomId>` | `members` (string set of participant ids, the seats; absent when empty), `expiresAt` |
//!
//! One global secondary index, `bySweep`: partition key `sweep` (S), sort key `sweepAt`
//! (N, epoch ms), projecting `socketId` (and the keys). It is sparse: only participants in
//! a room have a `sweep`, in one of two partitions:
//!
//! - `sweep = "grace"`, `sweepAt = suspendedUntil`: suspended participants, by the end of
//!   their grace ([`suspend`](meshcall_core::ConnectionStore::suspend) puts them there);
//! - `sweep = "check"`, `sweepAt` = their next liveness check: attached members
//!   ([`join`](meshcall_core::ConnectionStore::join) and
//!   [`resume`](meshcall_core::ConnectionStore::resume) set it to now +
//!   [`check_every`](DynamoStore::with_check_every), 5 minutes by default;
//!   [`checked`](meshcall_core::ConnectionStore::checked) moves it on; `leave` removes both
//!   attributes).
//!
//! [`due(now)`](meshcall_core::ConnectionStore::due) is two Queries of it (`sweepAt <= now`
//! in each partition), page after page: the only Queries, the only index reads and the only
//! eventually consistent reads the store makes. Index reads lag writes, so `expire` and
//! `checked` read or condition on the participant item again. Nothing ever Scans.
//!
//! - **Who is in a room** (`members`, for every fan-out: `sendMsgToRoom`,
//!   `participantLeft`, `newParticipant`, and a joiner's `joined.participants`): a strongly
//!   consistent `GetItem` of the room item, then a strongly consistent `BatchGetItem` of
//!   the participants its set names (100 keys a call, unprocessed keys retried after a
//!   backoff), keeping those live and still in that room, in join order (`joinedAt`). A
//!   member whose join has returned is always listed: the index would lag.
//! - **A signal's target** (`participant`): one `GetItem` of `p#<id>`.
//! - **The sender** (`lookup`): one `GetItem` of `s#<socketId>`, which carries its
//!   participant's room and whether it is suspended from that socket (then it is no one's).
//! - **The room cap**: the room item's `members` set. A join reads the socket, its
//!   participant and the room item in one `BatchGetItem`. If the set is already at the cap,
//!   it reads the holders (`BatchGetItem`) and refuses with `RoomFull` unless some vanished
//!   without leaving (gone, expired or elsewhere: their seats are cleared in one
//!   transaction that re-checks each, and the join reads again). So a refusal writes
//!   nothing and contends for nothing. A seat is freed only by a transaction that also
//!   changes the set, or by its holder's item expiring, so each store (each Lambda
//!   instance) remembers the holders of a full room it read and found live, with the
//!   earliest of their `expiresAt`: while the set is exactly those ids and none of them can
//!   have expired, a refusal skips the read of the holders (a crowd at a full room's door
//!   costs one read each), and `members_to_probe` at the refusing join's `now` (the core's
//!   probe for ghosts) answers from the holders that join read. Otherwise the join is one
//!   `TransactWriteItems`: add the id to the set on condition `size(members) < cap`, move
//!   the participant (on condition that it is still where the store read it) and its
//!   socket's copy, and take the id out of the old room's set. DynamoDB serialises
//!   transactions on one item, so of any number of racing joins for the last seat one
//!   commits and the rest are cancelled whole. A transaction rather than a lone
//!   conditional update because the seat and the participant's room must change together;
//!   a set rather than a counter because adding and removing an id are idempotent and a
//!   set says *which* seats are taken.
//! - **Suspension** (a socket dropped, resume on): the participant keeps its seat, its
//!   room and its `socketId`, gains `suspendedUntil` and `sweep = "grace"`; the socket item
//!   stays, marked with the same `suspendedUntil`. A second report of the same drop changes
//!   nothing. A clean close of that socket (`remove_connection`) ends the participant; a
//!   `resume` on a new socket deletes the old socket item (suspended-from or still
//!   attached; only the latter is reported as replaced, for the gateway to close).
//! - **Every write** but `checked` (one conditional `UpdateItem` of `sweepAt`, on
//!   condition that the participant is still attached to that socket) is one transaction
//!   whose conditions pin what was read just before it
//!   (optimistic concurrency), in one retry loop (`transaction::retry`): a cancellation
//!   for a failed condition reads again at once; one for a conflict (`TransactionConflict`:
//!   another transaction on the same item in flight, as in a crowd joining one room) reads
//!   again after a jittered backoff (4–8 ms, doubling up to 64–128 ms; a join then reads
//!   only the room item, as its conditions pin the participant and socket it read). It
//!   gives up only after 2 s of pauses or 40 attempts.
//! - **Expiry**: every item gets `expiresAt` = last refresh + 3 hours (past API Gateway's
//!   2-hour connection limit), refreshed by `$connect`, joins, resumes and suspensions.
//!   DynamoDB deletes expired items late (emulators never), so every read treats an item
//!   past its `expiresAt` as absent.
//!
//! # Time
//!
//! The store never reads a clock: every port method takes `now` from its caller, and
//! `joinedAt`, `suspendedUntil`, `sweepAt` and `expiresAt` derive from it. Nothing in the
//! crate reads the time of day: the retry jitter takes its randomness from `RandomState`,
//! and the retry budget adds up the pauses it slept rather than reading a clock.
//!
//! # Calls
//!
//! [`DynamoStore::calls`] counts requests by operation at the wire, and reads by kind
//! (index or not, consistent or not). Per message kind, as measured by `tests/routes.rs`,
//! with no contention (every one of these reads is strongly consistent and none reads an
//! index; the test asserts it):
//!
//! | route | DynamoDB requests |
//! |---|---|
//! | `$connect` | `TransactWriteItems` 1 |
//! | `joinRoom` into an empty room | `BatchGetItem` 1 + `TransactWriteItems` 1 + `GetItem` 1 |
//! | `joinRoom` (others there, told `newParticipant`) | `BatchGetItem` 2 + `TransactWriteItems` 1 + `GetItem` 1 |
//! | `joinRoom` from another room (its members told `participantLeft`) | `BatchGetItem` 3 + `TransactWriteItems` 1 + `GetItem` 2 (one `BatchGetItem` less for each room with no one else) |
//! | `joinRoom` of the room it is in | `BatchGetItem` 2 |
//! | `joinRoom` of a full room (`roomFull`) | `BatchGetItem` 2 (the core's probe of the members for ghosts, at most every 5 s per room and instance, reuses the second); `BatchGetItem` 1 while the same holders are known live, + `GetItem` 1 + `BatchGetItem` 1 when the core probes them then |
//! | `sendMsgToRoom` | `GetItem` 2 + `BatchGetItem` 1 |
//! | `signal` | `GetItem` 2 |
//! | `leaveRoom` | `BatchGetItem` 2 + `TransactWriteItems` 1 + `GetItem` 1 (`BatchGetItem` 1 if no one is left to tell) |
//! | `$disconnect` | `BatchGetItem` 1 + `TransactWriteItems` 1; + `GetItem` 1 + `BatchGetItem` 1 from a room with others in it |
//! | a drop kept for resume (`suspend`) | `BatchGetItem` 1 + `TransactWriteItems` 1; the same drop reported again: `BatchGetItem` 1 |
//! | `resume` | `BatchGetItem` 2 + `GetItem` 1 + `TransactWriteItems` 1 |
//! | `expire` (grace over) | `GetItem` 2 + `TransactWriteItems` 1 + `BatchGetItem` 1; `GetItem` 1 when there is nothing to do |
//! | each push answered 410 (suspends) | `BatchGetItem` 1 + `TransactWriteItems` 1 |
//! | `ping` | none |
//! | the sweep | `Query` 2 on `bySweep` (one per partition and page); + each ended grace's `expire`; + `UpdateItem` 1 per member found alive |
//!
//! A socket that resumed someone (its participant has another id) costs one `GetItem` more
//! on `joinRoom`, `leaveRoom`, `$disconnect` and a drop. A cancelled transaction costs its
//! read and its write again (a join's cancelled for a conflict: a `GetItem` of the room and
//! the write). Under a crowd (64 joins at once from one store into a room of 8, against
//! moto with transaction conflicts on: `tests/store.rs`), the whole crowd took
//! `BatchGetItem` ~80–90 + `GetItem` ~85–95 + `TransactWriteItems` ~90–100, and the
//! slowest answer came after 1.1–1.5 s (before the room-only re-read and the known-live
//! holders: `BatchGetItem` ~175–195 + `GetItem` 8 + `TransactWriteItems` ~90–120, 1.4–1.8 s,
//! on the same busy machine).
//!
//! Scans: none, anywhere (the tests assert it).

pub mod calls;
pub mod pusher;
pub mod store;
pub mod table;
mod transaction;

pub use calls::{Calls, Read};
pub use pusher::{ApiGatewayPusher, Posts};
pub use store::DynamoStore;
pub use table::create_table;
