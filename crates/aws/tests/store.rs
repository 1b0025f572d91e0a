//! `DynamoStore` through the `ConnectionStore` port, against moto's DynamoDB: the behaviours
//! the `MemoryStore` tests check, plus what only a shared table has to get right (racing
//! Lambda instances, paging, rows left behind past their TTL).

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

mod support;

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use aws_sdk_dynamodb::types::AttributeValue;
use meshcall_aws::DynamoStore;
use meshcall_core::{
    ConnectionStore, Departure, Due, JoinError, Member, Presence, ResumeError, Suspension,
    protocol::{ConnectionId, RoomId},
};
use support::{assert_no_scans, id, room, store};

fn ids(members: &[Member]) -> Vec<&str> {
    members.iter().map(|m| m.id.as_str()).collect()
}

/// The ids of `r`'s members, sorted (members who joined at the same instant have no order).
async fn member_ids(st: &DynamoStore, r: &str) -> Vec<String> {
    let mut v = support::member_ids(st, r).await;
    v.sort();
    v
}

async fn connect(st: &DynamoStore, names: &[&str], now: SystemTime) {
    for n in names {
        st.add_connection(&id(n), now).await.unwrap();
    }
}

/// Sets an item's `expiresAt` in the past, as if its `$disconnect` never ran and TTL has
/// not deleted it yet.
async fn age(st: &DynamoStore, key: &str) {
    let past = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 60;
    st.client()
        .update_item()
        .table_name(st.table())
        .key("pk", AttributeValue::S(key.to_owned()))
        .update_expression("SET expiresAt = :past")
        .expression_attribute_values(":past", AttributeValue::N(past.to_string()))
        .send()
        .await
        .unwrap();
}

fn millis(t: SystemTime) -> u128 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// An item as stored, read consistently.
async fn raw(
    st: &DynamoStore,
    key: &str,
) -> Option<std::collections::HashMap<String, AttributeValue>> {
    st.client()
        .get_item()
        .table_name(st.table())
        .key("pk", AttributeValue::S(key.to_owned()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
}

async fn exists(st: &DynamoStore, key: &str) -> bool {
    raw(st, key).await.is_some()
}

/// A string attribute of an item.
async fn attribute(st: &DynamoStore, key: &str, name: &str) -> Option<String> {
    raw(st, key)
        .await?
        .get(name)
        .and_then(|v| v.as_s().ok())
        .cloned()
}

/// The ids in a room item's seat set.
async fn seats(st: &DynamoStore, r: &str) -> Vec<String> {
    let out = st
        .client()
        .get_item()
        .table_name(st.table())
        .key("pk", AttributeValue::S(format!("r#{r}")))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    let mut seats = out
        .item
        .and_then(|i| i.get("members").and_then(|m| m.as_ss().ok()).cloned())
        .unwrap_or_default();
    seats.sort();
    seats
}

#[tokio::test]
async fn join_switch_leave_and_remove_keep_membership_consistent() {
    let Some(st) = store("membership").await else {
        return;
    };
    let t0 = SystemTime::now();
    let now = t0;
    connect(&st, &["a", "b", "c"], t0).await;

    let j = st.join(&id("a"), &room("r"), 2, t0).await.unwrap();
    assert_eq!(
        (j.id.as_str(), j.left, j.already_member, j.others),
        ("a", None, false, vec![])
    );
    let j = st
        .join(&id("b"), &room("r"), 2, t0 + Duration::from_millis(5))
        .await
        .unwrap();
    assert_eq!(ids(&j.others), ["a"]);
    assert_eq!(j.others[0].socket, Some(id("a")));

    let full = st.join(&id("c"), &room("r"), 2, t0).await;
    assert!(matches!(full, Err(JoinError::RoomFull)), "{full:?}");
    assert_eq!(
        st.lookup(&id("c"), now).await.unwrap().unwrap().room,
        None,
        "c stays where it was"
    );

    // Re-joining your own full room is not refused, and changes nothing.
    let j = st.join(&id("b"), &room("r"), 2, t0).await.unwrap();
    assert!(j.already_member);
    assert_eq!(ids(&j.others), ["a"]);

    let j = st.join(&id("b"), &room("s"), 2, t0).await.unwrap();
    assert_eq!(j.left, Some(room("r")));
    assert_eq!(member_ids(&st, "r").await, ["a"]);
    assert_eq!(member_ids(&st, "s").await, ["b"]);
    assert_eq!(seats(&st, "r").await, ["a"]);
    assert_eq!(seats(&st, "s").await, ["b"]);

    assert_eq!(
        st.leave(&id("a"), now).await.unwrap(),
        Some((id("a"), room("r")))
    );
    assert_eq!(st.leave(&id("a"), now).await.unwrap(), None);
    assert_eq!(
        st.lookup(&id("a"), now).await.unwrap(),
        Some(Presence {
            id: id("a"),
            room: None
        })
    );

    let gone = st.remove_connection(&id("b"), now).await.unwrap();
    assert_eq!(
        gone,
        Some(Departure {
            id: id("b"),
            room: Some(room("s"))
        })
    );
    assert_eq!(
        st.remove_connection(&id("b"), now).await.unwrap(),
        None,
        "cleanup may run twice"
    );
    assert_eq!(st.lookup(&id("b"), now).await.unwrap(), None);
    assert_eq!(st.participant(&id("b"), now).await.unwrap(), None);
    assert!(member_ids(&st, "r").await.is_empty());
    assert!(member_ids(&st, "s").await.is_empty());
    assert!(seats(&st, "s").await.is_empty());

    // Unknown sockets and participants are not errors.
    assert_eq!(st.lookup(&id("nobody"), now).await.unwrap(), None);
    assert_eq!(st.participant(&id("nobody"), now).await.unwrap(), None);
    assert_eq!(st.leave(&id("nobody"), now).await.unwrap(), None);
    assert!(matches!(
        st.join(&id("nobody"), &room("r"), 2, t0).await,
        Err(JoinError::NotConnected)
    ));
    assert_no_scans(&st);
}

#[tokio::test]
async fn members_and_joined_list_the_room_in_join_order() {
    let Some(st) = store("order").await else {
        return;
    };
    let t0 = SystemTime::now();
    let now = t0;
    connect(&st, &["c", "a", "b"], t0).await;
    for (i, n) in ["c", "a", "b"].iter().enumerate() {
        let at = t0 + Duration::from_millis(10 * u64::try_from(i).unwrap());
        st.join(&id(n), &room("r"), 8, at).await.unwrap();
    }
    let members = st.members(&room("r"), now).await.unwrap();
    assert_eq!(ids(&members), ["c", "a", "b"]);
    assert_eq!(members[1].socket, Some(id("a")));
    let again = st.join(&id("b"), &room("r"), 8, t0).await.unwrap();
    assert_eq!(ids(&again.others), ["c", "a"]);
    assert_eq!(
        st.participant(&id("a"), now).await.unwrap(),
        Some((
            Some(room("r")),
            Member {
                id: id("a"),
                socket: Some(id("a"))
            }
        ))
    );
    assert_no_scans(&st);
}

#[tokio::test]
async fn ten_joiners_racing_for_the_last_seat_get_one_seat() {
    let Some(st) = store("race-last-seat").await else {
        return;
    };
    let st = Arc::new(st);
    let now = SystemTime::now();
    let seated: Vec<String> = (0..4).map(|i| format!("m{i}")).collect();
    let racers: Vec<String> = (0..10).map(|i| format!("x{i}")).collect();
    for n in seated.iter().chain(&racers) {
        st.add_connection(&id(n), now).await.unwrap();
    }
    for n in &seated {
        st.join(&id(n), &room("r"), 5, now).await.unwrap();
    }
    let tasks: Vec<_> = racers
        .iter()
        .map(|n| {
            let (st, n) = (Arc::clone(&st), id(n));
            tokio::spawn(async move { st.join(&n, &room("r"), 5, now).await })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(j) => {
                won += 1;
                assert_eq!(j.others.len(), 4, "the winner meets the four already there");
            }
            Err(JoinError::RoomFull) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(member_ids(&st, "r").await.len(), 5);
    assert_eq!(seats(&st, "r").await.len(), 5);
    assert_no_scans(&st);
}

/// A crowd at the door: 64 joiners at the same moment into one room of `cap` seats. Each
/// gets a seat or `RoomFull` (never a store error from running out of retries), exactly
/// `cap` get in, and all are answered within 3 s, although every join before the room is
/// full transacts on the same room item and moto (`tests/moto_server.py`) cancels
/// transactions on an item another one holds, as DynamoDB does.
async fn crowd(test: &str, cap: usize) {
    let Some(st) = store(test).await else {
        return;
    };
    let st = Arc::new(st);
    let now = SystemTime::now();
    let crowd: Vec<ConnectionId> = (0..64).map(|i| id(&format!("c{i:02}"))).collect();
    for c in &crowd {
        st.add_connection(c, now).await.unwrap();
    }
    let before = st.calls();
    let started = Instant::now();
    let gate = Arc::new(tokio::sync::Barrier::new(crowd.len()));
    let tasks: Vec<_> = crowd
        .iter()
        .map(|c| {
            let (st, c, gate) = (Arc::clone(&st), c.clone(), Arc::clone(&gate));
            tokio::spawn(async move {
                gate.wait().await;
                let result = st.join(&c, &room("door"), cap, now).await;
                (c, result, started.elapsed())
            })
        })
        .collect();
    let (mut seated, mut refused, mut slowest) = (Vec::new(), 0, Duration::ZERO);
    for t in tasks {
        let (c, result, took) = t.await.unwrap();
        slowest = slowest.max(took);
        match result {
            Ok(_) => seated.push(c.to_string()),
            Err(JoinError::RoomFull) => refused += 1,
            Err(e) => panic!(
                "{c}: {e:?} ({})",
                std::error::Error::source(&e)
                    .map(ToString::to_string)
                    .unwrap_or_default()
            ),
        }
    }
    let calls = st.calls().since(&before);
    eprintln!("crowd of 64 into a room of {cap}: slowest answer {slowest:?}; {calls}");
    seated.sort();
    assert_eq!((seated.len(), refused), (cap, 64 - cap));
    assert_eq!(member_ids(&st, "door").await, seated);
    assert_eq!(seats(&st, "door").await, seated);
    assert!(
        slowest < Duration::from_secs(3),
        "slowest answer {slowest:?}"
    );
}

/// Held by the tests that load moto most (a few hundred requests each), so they do not
/// run at the same time: moto answers one request at a time, and the crowd's 3 s are for
/// the store's retries, not for moto's queue.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crowd_of_64_at_the_door_gets_the_seats_and_refusals_fast() {
    let _alone = HEAVY.lock().await;
    crowd("crowd-8", 8).await;
    crowd("crowd-2", 2).await;
}

#[tokio::test]
async fn ten_joiners_racing_into_an_empty_room_fill_it_to_the_cap() {
    let Some(st) = store("race-empty").await else {
        return;
    };
    let st = Arc::new(st);
    let now = SystemTime::now();
    let racers: Vec<ConnectionId> = (0..10).map(|i| id(&format!("x{i}"))).collect();
    for n in &racers {
        st.add_connection(n, now).await.unwrap();
        // Each starts in a room of its own, so every join also leaves one.
        st.join(n, &room(&format!("home{}", n.as_str())), 5, now)
            .await
            .unwrap();
    }
    let tasks: Vec<_> = racers
        .iter()
        .map(|n| {
            let (st, n) = (Arc::clone(&st), n.clone());
            tokio::spawn(async move { st.join(&n, &room("r"), 5, now).await.map(|_| n) })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(n) => winners.push(n.to_string()),
            Err(JoinError::RoomFull) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    winners.sort();
    assert_eq!(winners.len(), 5);
    assert_eq!(member_ids(&st, "r").await, winners);
    assert_eq!(seats(&st, "r").await, winners);
    // The losers stayed home; the winners left theirs.
    for n in &racers {
        let home = format!("home{}", n.as_str());
        let at_home = member_ids(&st, &home).await == [n.to_string()];
        assert_eq!(at_home, !winners.contains(&n.to_string()), "{n}");
    }
}

#[tokio::test]
async fn members_reads_a_big_room_consistently_in_batches_of_a_hundred() {
    let _alone = HEAVY.lock().await;
    let Some(st) = store("big-room").await else {
        return;
    };
    let now = SystemTime::now();
    let names: Vec<String> = (0..105).map(|i| format!("p{i:03}")).collect();
    for (i, n) in names.iter().enumerate() {
        let at = now + Duration::from_millis(u64::try_from(i).unwrap());
        st.add_connection(&id(n), at).await.unwrap();
        st.join(&id(n), &room("big"), 200, at).await.unwrap();
    }
    let before = st.calls();
    let members = st.members(&room("big"), now).await.unwrap();
    let calls = st.calls().since(&before);
    let got: Vec<String> = members.iter().map(|m| m.id.to_string()).collect();
    assert_eq!(got, names, "every member, in join order");
    assert_eq!(calls.get("GetItem"), 1, "{calls}");
    assert_eq!(
        calls.get("BatchGetItem"),
        2,
        "105 members, 100 a batch: {calls}"
    );
    assert_eq!(calls.total(), 3, "{calls}");
    assert_eq!(
        (calls.index_reads(), calls.eventual_reads()),
        (0, 0),
        "the room item and its members, strongly consistent"
    );
    assert_no_scans(&st);
}

#[tokio::test]
async fn rows_past_their_expiry_are_ignored_and_their_seats_freed() {
    let Some(st) = store("expiry").await else {
        return;
    };
    let now = SystemTime::now();
    connect(&st, &["a", "b", "c", "d"], now).await;
    for n in ["a", "b"] {
        st.join(&id(n), &room("r"), 2, now).await.unwrap();
    }
    // a's $disconnect never ran; TTL has not deleted its rows yet.
    age(&st, "p#a").await;
    age(&st, "s#a").await;
    assert_eq!(member_ids(&st, "r").await, ["b"]);
    assert_eq!(st.lookup(&id("a"), now).await.unwrap(), None);
    assert_eq!(st.participant(&id("a"), now).await.unwrap(), None);
    assert!(matches!(
        st.join(&id("a"), &room("q"), 2, now).await,
        Err(JoinError::NotConnected)
    ));
    assert_eq!(st.remove_connection(&id("a"), now).await.unwrap(), None);

    // The room's set still counts a; a join finds it full, clears the stale seat, gets in.
    let j = st.join(&id("c"), &room("r"), 2, now).await.unwrap();
    assert_eq!(ids(&j.others), ["b"]);
    assert_eq!(seats(&st, "r").await, ["b", "c"]);
    let full = st.join(&id("d"), &room("r"), 2, now).await;
    assert!(matches!(full, Err(JoinError::RoomFull)), "{full:?}");

    // A socket past its expiry reads as gone even if its participant does not.
    age(&st, "s#b").await;
    assert_eq!(st.lookup(&id("b"), now).await.unwrap(), None);
    assert_no_scans(&st);
}

/// A full room's holders are read once to refuse a join, and not again while the room's
/// set is the same and none of them can have expired: a crowd at the door costs one read
/// each. `members_to_probe` at the refusal's `now` answers from that read. A seat that
/// changed hands, or a holder past its expiry, is read (and freed) as before.
#[tokio::test]
async fn a_full_rooms_live_holders_are_read_once_until_one_could_have_expired() {
    let Some(st) = store("full-known").await else {
        return;
    };
    let now = SystemTime::now();
    let soon = now + Duration::from_secs(2);
    connect(&st, &["a", "b", "c"], now).await;
    connect(&st, &["d"], soon).await;
    for n in ["a", "b"] {
        st.join(&id(n), &room("r"), 2, now).await.unwrap();
    }
    let full = |n: &'static str, at: SystemTime| {
        let st = &st;
        async move {
            let before = st.calls();
            let refused = st.join(&id(n), &room("r"), 2, at).await;
            assert!(matches!(refused, Err(JoinError::RoomFull)), "{refused:?}");
            st.calls().since(&before)
        }
    };
    let calls = full("c", now).await;
    assert_eq!(
        (calls.get("BatchGetItem"), calls.total()),
        (2, 2),
        "{calls}"
    );
    let before = st.calls();
    let probe = st.members_to_probe(&room("r"), now).await.unwrap();
    assert_eq!(ids(&probe), ["a", "b"]);
    assert_eq!(
        st.calls().since(&before).total(),
        0,
        "from the refusal's read"
    );

    let calls = full("c", now + Duration::from_secs(1)).await;
    assert_eq!(
        (calls.get("BatchGetItem"), calls.total()),
        (1, 1),
        "{calls}"
    );
    let before = st.calls();
    let probe = st
        .members_to_probe(&room("r"), now + Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(ids(&probe), ["a", "b"]);
    assert_eq!(st.calls().since(&before).total(), 2, "read: {probe:?}");

    // b's seat goes to c: another set, read again.
    st.leave(&id("b"), soon).await.unwrap();
    st.join(&id("c"), &room("r"), 2, soon).await.unwrap();
    let calls = full("d", soon).await;
    assert_eq!(calls.get("BatchGetItem"), 2, "{calls}");
    let calls = full("d", soon).await;
    assert_eq!(calls.get("BatchGetItem"), 1, "{calls}");

    // Past a's expiry (its $disconnect never ran): its seat is found and freed.
    let later = now + DynamoStore::DEFAULT_TTL + Duration::from_secs(1);
    let j = st.join(&id("d"), &room("r"), 2, later).await.unwrap();
    assert_eq!(ids(&j.others), ["c"]);
    assert_eq!(seats(&st, "r").await, ["c", "d"]);
    assert_no_scans(&st);
}

#[tokio::test]
async fn a_suspended_participant_keeps_its_seat_and_resumes_on_a_new_socket() {
    let Some(st) = store("suspend").await else {
        return;
    };
    let t0 = SystemTime::now();
    let now = t0;
    let grace = t0 + Duration::from_secs(30);
    connect(&st, &["a", "b", "n"], t0).await;
    st.join(&id("a"), &room("r"), 8, t0).await.unwrap();
    st.join(&id("b"), &room("r"), 8, t0 + Duration::from_millis(1))
        .await
        .unwrap();

    let suspended = st.suspend(&id("a"), grace, now).await.unwrap();
    assert_eq!(
        suspended,
        Some(Suspension {
            id: id("a"),
            until: grace
        })
    );
    // Reported twice (a push found it gone, then $disconnect): unchanged, the first
    // grace kept.
    let again = st
        .suspend(&id("a"), grace + Duration::from_secs(10), now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (again.id.as_str(), millis(again.until)),
        ("a", millis(grace))
    );
    let members = st.members(&room("r"), now).await.unwrap();
    assert_eq!(
        members[0],
        Member {
            id: id("a"),
            socket: None
        }
    );
    assert_eq!(
        st.participant(&id("a"), now).await.unwrap(),
        Some((
            Some(room("r")),
            Member {
                id: id("a"),
                socket: None
            }
        ))
    );
    // The socket it dropped from is remembered, but speaks for no one.
    assert_eq!(
        attribute(&st, "p#a", "socketId").await.as_deref(),
        Some("a")
    );
    assert_eq!(st.lookup(&id("a"), now).await.unwrap(), None);
    assert!(matches!(
        st.join(&id("a"), &room("q"), 8, now).await,
        Err(JoinError::NotConnected)
    ));
    assert_eq!(st.leave(&id("a"), now).await.unwrap(), None);
    assert_eq!(st.expire(&id("a"), t0).await.unwrap(), None, "not yet due");

    let resumed = st
        .resume(&id("a"), &id("n"), grace - Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(resumed.room, room("r"));
    assert_eq!(ids(&resumed.others), ["b"]);
    assert_eq!(resumed.replaced, None, "the old socket was not attached");
    assert_eq!(
        st.lookup(&id("n"), now).await.unwrap(),
        Some(Presence {
            id: id("a"),
            room: Some(room("r"))
        })
    );
    assert_eq!(
        st.participant(&id("n"), now).await.unwrap(),
        None,
        "the placeholder is gone"
    );
    assert!(
        !exists(&st, "s#a").await,
        "the dropped-from socket is forgotten"
    );
    assert_eq!(
        st.remove_connection(&id("a"), now).await.unwrap(),
        None,
        "the old socket's late $disconnect changes nothing"
    );
    let members = st.members(&room("r"), now).await.unwrap();
    assert_eq!(
        members[0],
        Member {
            id: id("a"),
            socket: Some(id("n"))
        }
    );
    // The timer set for the drop finds nothing to do.
    assert_eq!(st.expire(&id("a"), grace).await.unwrap(), None);
    // The new socket speaks as a: leaving through it takes a out.
    assert_eq!(
        st.leave(&id("n"), now).await.unwrap(),
        Some((id("a"), room("r")))
    );
    assert_eq!(seats(&st, "r").await, ["b"]);
    assert_no_scans(&st);
}

#[tokio::test]
async fn a_clean_close_of_the_socket_a_participant_was_suspended_from_ends_it() {
    let Some(st) = store("suspend-close").await else {
        return;
    };
    let now = SystemTime::now();
    let grace = now + Duration::from_secs(30);
    connect(&st, &["a", "b", "n"], now).await;
    st.join(&id("a"), &room("r"), 8, now).await.unwrap();
    st.join(&id("b"), &room("r"), 8, now).await.unwrap();
    // a resumes on n, so its socket and its id differ; then n drops.
    st.resume(&id("a"), &id("n"), now).await.unwrap();
    assert!(st.suspend(&id("n"), grace, now).await.unwrap().is_some());
    assert_eq!(st.lookup(&id("n"), now).await.unwrap(), None);
    assert_eq!(
        st.remove_connection(&id("n"), now).await.unwrap(),
        Some(Departure {
            id: id("a"),
            room: Some(room("r"))
        })
    );
    assert_eq!(st.participant(&id("a"), now).await.unwrap(), None);
    assert!(!exists(&st, "s#n").await);
    assert_eq!(seats(&st, "r").await, ["b"]);
    assert_eq!(
        st.due(grace).await.unwrap(),
        Due::default(),
        "b is not due yet"
    );
    assert_eq!(st.remove_connection(&id("n"), now).await.unwrap(), None);
}

#[tokio::test]
async fn resume_is_refused_after_the_grace_or_into_a_used_socket_and_expire_removes() {
    let Some(st) = store("resume-refused").await else {
        return;
    };
    let t0 = SystemTime::now();
    let now = t0;
    let grace = t0 + Duration::from_secs(30);
    connect(&st, &["a", "b", "n", "m"], t0).await;
    st.join(&id("a"), &room("r"), 8, t0).await.unwrap();
    st.join(&id("b"), &room("r"), 8, t0).await.unwrap();
    st.join(&id("m"), &room("q"), 8, t0).await.unwrap();
    st.suspend(&id("a"), grace, now).await.unwrap();

    for (who, on, at) in [
        ("a", "m", t0),    // a socket already in a room
        ("a", "n", grace), // too late
        ("a", "a", t0),    // its own dead socket
        ("nobody", "n", t0),
    ] {
        let r = st.resume(&id(who), &id(on), at).await;
        assert!(
            matches!(r, Err(ResumeError::NotResumable)),
            "{who} on {on}: {r:?}"
        );
    }
    assert_eq!(
        st.lookup(&id("m"), now).await.unwrap().unwrap().room,
        Some(room("q"))
    );

    assert_eq!(
        st.expire(&id("a"), grace - Duration::from_millis(1))
            .await
            .unwrap(),
        None
    );
    let gone = st.expire(&id("a"), grace).await.unwrap();
    assert_eq!(
        gone,
        Some(Departure {
            id: id("a"),
            room: Some(room("r"))
        })
    );
    assert_eq!(st.expire(&id("a"), grace).await.unwrap(), None);
    assert_eq!(member_ids(&st, "r").await, ["b"]);
    assert_eq!(seats(&st, "r").await, ["b"]);
    assert_no_scans(&st);
}

#[tokio::test]
async fn due_lists_ended_graces_and_members_due_for_a_check_page_by_page() {
    let Some(st) = store("due").await else {
        return;
    };
    let check = Duration::from_mins(5);
    let st = st.with_page_size(2).with_check_every(check);
    let t0 = SystemTime::now();
    let now = t0;
    let names = ["d0", "d1", "d2", "d3", "d4", "kept"];
    connect(&st, &names, t0).await;
    connect(&st, &["idle"], t0).await;
    for n in names {
        st.join(&id(n), &room("r"), 8, t0).await.unwrap();
    }
    let grace = |i: u64| t0 + Duration::from_secs(30 + i);
    for (i, n) in (0..).zip(&names[..5]) {
        st.suspend(&id(n), grace(i), now).await.unwrap();
    }
    assert_eq!(st.due(t0).await.unwrap(), Due::default(), "nothing due yet");
    let sorted = |mut v: Vec<ConnectionId>| {
        v.sort();
        v.into_iter().map(|c| c.to_string()).collect::<Vec<_>>()
    };
    let due = st.due(grace(2)).await.unwrap();
    assert_eq!(sorted(due.expired), ["d0", "d1", "d2"]);
    assert_eq!(due.unchecked, [], "kept is not due for a check yet");
    // A resumed participant leaves the grace partition for the check one; an expired one
    // leaves the index.
    st.add_connection(&id("n3"), t0).await.unwrap();
    st.resume(&id("d3"), &id("n3"), t0).await.unwrap();
    st.expire(&id("d0"), grace(0)).await.unwrap();
    let before = st.calls();
    let due = st.due(grace(10)).await.unwrap();
    let calls = st.calls().since(&before);
    assert_eq!(sorted(due.expired), ["d1", "d2", "d4"]);
    assert!(
        calls.get("Query") >= 3,
        "3 due, 2 a page, 2 partitions: {calls}"
    );
    assert_eq!(calls.total(), calls.get("Query"), "{calls}");
    let read: Vec<String> = calls.reads().map(|(r, _)| r.to_string()).collect();
    assert_eq!(read, ["Query bySweep eventual"]);

    // Past the check interval: the attached members, with their sockets; never the
    // suspended, nor a socket in no room.
    let later = t0 + check;
    let mut unchecked = st.due(later).await.unwrap().unchecked;
    unchecked.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(
        unchecked,
        [
            Member {
                id: id("d3"),
                socket: Some(id("n3"))
            },
            Member {
                id: id("kept"),
                socket: Some(id("kept"))
            },
        ]
    );
    // Found alive: next check later. A check recorded for the wrong socket changes nothing.
    st.checked(&id("kept"), &id("kept"), later + check, later)
        .await
        .unwrap();
    st.checked(&id("d3"), &id("d3"), later + check, later)
        .await
        .unwrap();
    st.checked(&id("nobody"), &id("nobody"), later + check, later)
        .await
        .unwrap();
    let unchecked = st.due(later).await.unwrap().unchecked;
    assert_eq!(ids(&unchecked), ["d3"]);
    // Leaving takes a member out of the index.
    st.leave(&id("n3"), later).await.unwrap();
    let due = st.due(later + check * 2).await.unwrap();
    assert_eq!(ids(&due.unchecked), ["kept"]);
    assert_no_scans(&st);
}

#[tokio::test]
async fn resuming_over_a_half_open_socket_takes_the_participant_over() {
    let Some(st) = store("takeover").await else {
        return;
    };
    let now = SystemTime::now();
    connect(&st, &["a", "b", "n"], now).await;
    st.join(&id("a"), &room("r"), 8, now).await.unwrap();
    st.join(&id("b"), &room("r"), 8, now).await.unwrap();
    let resumed = st.resume(&id("a"), &id("n"), now).await.unwrap();
    assert_eq!(
        resumed.replaced,
        Some(id("a")),
        "the old socket was still attached"
    );
    assert!(
        !exists(&st, "s#a").await,
        "the replaced socket is forgotten"
    );
    // The old socket closing later does not take the participant with it.
    assert_eq!(st.remove_connection(&id("a"), now).await.unwrap(), None);
    assert_eq!(member_ids(&st, "r").await, ["a", "b"]);
    assert_eq!(
        st.lookup(&id("n"), now).await.unwrap(),
        Some(Presence {
            id: id("a"),
            room: Some(room("r"))
        })
    );
    assert_eq!(
        st.remove_connection(&id("n"), now).await.unwrap(),
        Some(Departure {
            id: id("a"),
            room: Some(room("r"))
        })
    );
    assert_eq!(seats(&st, "r").await, ["b"]);
}

#[tokio::test]
async fn suspending_a_participant_in_no_room_removes_it() {
    let Some(st) = store("suspend-roomless").await else {
        return;
    };
    let now = SystemTime::now();
    connect(&st, &["a"], now).await;
    assert_eq!(st.suspend(&id("a"), now, now).await.unwrap(), None);
    assert_eq!(st.lookup(&id("a"), now).await.unwrap(), None);
    assert_eq!(st.participant(&id("a"), now).await.unwrap(), None);
}

#[tokio::test]
async fn damaged_items_and_missing_tables_are_store_errors_not_panics() {
    let now = SystemTime::now();
    let Some(st) = store("damaged").await else {
        return;
    };
    st.client()
        .put_item()
        .table_name(st.table())
        .item("pk", AttributeValue::S("s#x".into()))
        .item("participantId", AttributeValue::N("5".into()))
        .send()
        .await
        .unwrap();
    assert!(st.lookup(&id("x"), now).await.is_err());
    assert!(
        st.join(&id("x"), &room("r"), 8, SystemTime::now())
            .await
            .is_err()
    );

    let config = support::moto().await.unwrap();
    let missing = DynamoStore::new(&config, support::table_name("never-created"));
    assert!(
        missing
            .add_connection(&id("a"), SystemTime::now())
            .await
            .is_err()
    );
    assert!(missing.members(&room("r"), now).await.is_err());
    assert!(missing.lookup(&id("a"), now).await.is_err());
    let r: RoomId = room("r");
    assert!(matches!(
        missing.join(&id("a"), &r, 8, SystemTime::now()).await,
        Err(JoinError::Store(_))
    ));
}
