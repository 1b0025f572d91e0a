//! Resume: a participant whose socket dropped keeps its identity and seat for the grace
//! window, unseen by the others, and takes them back on a new socket with its token.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, SystemTime};

use meshcall_core::{
    Config, ConnectionStore, Member, Resume, ResumeKey, Route, Suspension, Swept,
    protocol::ErrorCode,
};
use serde_json::{Value, json};
use support::{Fate, World, id, now, ready, room};

const GRACE: Duration = Duration::from_secs(30);

fn world() -> World {
    World::with_config(config())
}

fn config() -> Config {
    Config {
        resume: Some(Resume {
            key: ResumeKey::new([42; 32]),
            grace: GRACE,
        }),
        ..Config::default()
    }
}

fn suspension(who: &str, until: SystemTime) -> Suspension {
    Suspension { id: id(who), until }
}

fn participant_left(who: &str) -> Value {
    json!({"type": "participantLeft", "participantConnectionId": who})
}

/// a and b in room 123; returns a's resume token.
fn pair(world: &World) -> String {
    let [a, b] = ["A=", "B="].map(|n| world.connect(n));
    world.join(&a, "123");
    world.join(&b, "123");
    let joined = world.drain_json(&a).remove(0);
    world.forget_frames();
    joined["resumeToken"].as_str().expect("a token").to_owned()
}

fn resume(world: &World, socket: &str, token: &str, at: SystemTime) -> Vec<Value> {
    let socket = id(socket);
    let outcome = ready(world.sig.message(
        &socket,
        &json!({"action": "resume", "token": token}).to_string(),
        at,
    ));
    assert_eq!(outcome.route, Route::Resume);
    world.drain_json(&socket)
}

#[test]
fn joined_carries_a_token_only_when_resume_is_on() {
    let on = world();
    assert!(pair(&on).starts_with("A=."));
    let off = World::new();
    let a = off.connect("A=");
    off.join(&a, "r");
    assert!(off.drain_json(&a)[0].get("resumeToken").is_none());
}

#[test]
fn a_dropped_participant_resumes_with_its_id_and_room_and_nobody_sees_it_leave() {
    let world = world();
    let token = pair(&world);
    let (a, b) = (id("A="), id("B="));

    let suspended = ready(world.sig.suspend(&a, now())).unwrap();
    assert_eq!(
        suspended,
        Some(Suspension {
            id: a.clone(),
            until: now() + GRACE
        })
    );
    world.assert_nothing_pushed();
    assert_eq!(world.members("123"), [a.clone(), b.clone()]);

    world.connect("N=");
    let frames = resume(&world, "N=", &token, now() + GRACE - Duration::from_secs(1));
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0]["type"], "joined");
    assert_eq!(frames[0]["connectionId"], "A=");
    assert_eq!(frames[0]["roomId"], "123");
    assert_eq!(frames[0]["participants"], json!(["B="]));
    assert_eq!(frames[0]["resumed"], true);
    assert_eq!(frames[0]["resumeToken"], token.as_str());
    assert!(
        world.drain_json(&b).is_empty(),
        "b never saw a leave or a join"
    );

    // Frames to A now reach the new socket, and the new socket speaks as A.
    world.send(&b, r#"{"action":"signal","to":"A=","data":{"n":1}}"#);
    assert_eq!(
        world.drain_json(&id("N=")),
        [json!({"type": "signal", "from": "B=", "data": {"n": 1}})]
    );
    world.send(&id("N="), r#"{"action":"signal","to":"B=","data":2}"#);
    assert_eq!(
        world.drain_json(&b),
        [json!({"type": "signal", "from": "A=", "data": 2})]
    );
    // The expiry timer that was set for the drop finds nothing to do.
    ready(world.sig.expire(&a, now() + GRACE)).unwrap();
    assert_eq!(world.members("123"), [a, b]);
}

#[test]
fn the_grace_ending_tells_the_room() {
    let world = world();
    pair(&world);
    let (a, b) = (id("A="), id("B="));
    ready(world.sig.suspend(&a, now())).unwrap();
    ready(
        world
            .sig
            .expire(&a, now() + GRACE - Duration::from_millis(1)),
    )
    .unwrap();
    assert_eq!(world.members("123").len(), 2, "not before the grace ends");

    ready(world.sig.expire(&a, now() + GRACE)).unwrap();
    assert_eq!(
        world.drain_json(&b),
        [json!({"type": "participantLeft", "participantConnectionId": "A="})]
    );
    assert_eq!(world.members("123"), [b]);
}

#[test]
fn late_wrong_or_forged_tokens_fail_and_the_socket_can_join_afresh() {
    let world = world();
    let token = pair(&world);
    ready(world.sig.suspend(&id("A="), now())).unwrap();
    world.connect("N=");
    let forged = token.replace("A=.", "B=.");
    for bad in [forged.as_str(), "A=.AAAAAAAAAAAAAAAAAAAAAA", "nonsense"] {
        let frames = resume(&world, "N=", bad, now());
        assert_eq!(frames[0]["code"], "resumeFailed", "{bad}");
    }
    let frames = resume(&world, "N=", &token, now() + GRACE);
    assert_eq!(frames[0]["code"], "resumeFailed", "too late");

    let outcome = world.join(&id("N="), "123");
    assert_eq!(outcome.error, None);
    assert_eq!(world.drain_json(&id("N="))[0]["connectionId"], "N=");
}

#[test]
fn a_socket_already_in_a_room_cannot_resume_someone() {
    let world = world();
    let token = pair(&world);
    ready(world.sig.suspend(&id("A="), now())).unwrap();
    let c = world.connect("C=");
    world.join(&c, "other");
    world.forget_frames();
    let frames = resume(&world, "C=", &token, now());
    assert_eq!(frames[0]["code"], "resumeFailed");
    assert_eq!(world.room_of(&c).unwrap().as_str(), "other");
}

#[test]
fn resuming_over_a_half_open_socket_takes_the_participant_over() {
    let world = world();
    let token = pair(&world);
    // The server has not noticed A's socket is dead; the client reconnects anyway.
    world.connect("N=");
    let outcome = ready(world.sig.message(
        &id("N="),
        &json!({"action": "resume", "token": token}).to_string(),
        now(),
    ));
    assert_eq!(outcome.error, None);
    assert_eq!(outcome.replaced, Some(id("A=")));
    // The old socket closing later does not take the participant with it.
    world.disconnect(&id("A="));
    assert_eq!(world.members("123"), [id("A="), id("B=")]);
    world.assert_nothing_pushed_to(&id("B="));
}

#[test]
fn frames_to_a_suspended_participant_are_dropped_without_error() {
    let world = world();
    pair(&world);
    let b = id("B=");
    ready(world.sig.suspend(&id("A="), now())).unwrap();
    let outcome = world.send(&b, r#"{"action":"signal","to":"A=","data":{}}"#);
    assert_eq!(outcome.error, None);
    let outcome = world.send(
        &b,
        r#"{"action":"sendMsgToRoom","roomId":"123","message":"hi"}"#,
    );
    assert_eq!(outcome.error, None);
    world.assert_nothing_pushed();
}

#[test]
fn with_resume_off_a_drop_is_a_departure() {
    let world = World::new();
    let [a, b] = ["A=", "B="].map(|n| world.connect(n));
    world.join(&a, "123");
    world.join(&b, "123");
    world.forget_frames();
    assert_eq!(ready(world.sig.suspend(&a, now())).unwrap(), None);
    assert_eq!(
        world.drain_json(&b),
        [json!({"type": "participantLeft", "participantConnectionId": "A="})]
    );
    let n = world.connect("N=");
    let outcome = world.send(&n, r#"{"action":"resume","token":"A=.x"}"#);
    assert_eq!(outcome.error, Some(ErrorCode::ResumeFailed));
}

#[test]
fn a_member_found_gone_is_suspended_and_no_one_is_told() {
    let world = world();
    let token = pair(&world);
    let (a, b) = (id("A="), id("B="));
    world.pusher().mark_gone(&a);

    // b signals a, whose socket vanished without a close: the push is answered 410.
    let outcome = world.send(&b, r#"{"action":"signal","to":"A=","data":1}"#);
    assert_eq!(outcome.error, None);
    let pushes = world.pusher().take();
    assert_eq!(
        pushes.len(),
        1,
        "only the push that found a gone: {pushes:#?}"
    );
    assert_eq!((&pushes[0].to, pushes[0].fate), (&a, Fate::Gone));
    // Gone is not left: a keeps its seat, unseen, for the grace.
    assert_eq!(world.members("123"), [a.clone(), b.clone()]);
    assert_eq!(world.store().stats().suspended, 1);
    let (_, member) = ready(world.store().participant(&a, now()))
        .unwrap()
        .unwrap();
    assert_eq!(member.socket, None);
    assert_eq!(world.take_suspensions(), [suspension("A=", now() + GRACE)]);

    // The gateway reports the same drop later (`$disconnect` without a close frame): the
    // grace is not extended and still no one is told.
    let later = now() + Duration::from_secs(10);
    let again = ready(world.sig.suspend(&a, later)).unwrap();
    assert_eq!(again, Some(suspension("A=", now() + GRACE)));
    world.assert_nothing_pushed();
    let due = ready(world.store().due(now() + GRACE)).unwrap();
    assert_eq!(
        due.expired,
        std::slice::from_ref(&a),
        "due when the first grace ends"
    );

    // The client comes back within the grace: same id, same room, nobody saw a thing.
    world.connect("N=");
    let at = now() + GRACE - Duration::from_secs(1);
    let outcome = ready(world.sig.message(
        &id("N="),
        &json!({"action": "resume", "token": token}).to_string(),
        at,
    ));
    assert_eq!(outcome.error, None);
    // The socket it dropped from was not attached any more: nothing to close.
    assert_eq!(outcome.replaced, None);
    let frames = world.drain_json(&id("N="));
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0]["connectionId"], "A=");
    assert_eq!(frames[0]["roomId"], "123");
    assert_eq!(frames[0]["resumed"], true);
    world.assert_nothing_pushed();
    assert_eq!(world.members("123"), [a.clone(), b.clone()]);
    assert_eq!(world.store().stats().suspended, 0);

    // The old socket is forgotten: its late `$disconnect` takes no one.
    world.disconnect(&a);
    world.assert_nothing_pushed();
    assert_eq!(world.members("123"), [a, b]);
}

#[test]
fn a_clean_close_of_the_socket_a_participant_was_suspended_from_ends_it() {
    let world = world();
    let token = pair(&world);
    let (a, b) = (id("A="), id("B="));
    world.pusher().mark_gone(&a);
    let outcome = world.send(
        &b,
        r#"{"action":"sendMsgToRoom","roomId":"123","message":"hi"}"#,
    );
    assert_eq!(outcome.error, None);
    world.forget_frames();
    assert_eq!(world.store().stats().suspended, 1, "found gone, suspended");
    // While suspended, that socket speaks for no one.
    assert_eq!(ready(world.store().lookup(&a, now())).unwrap(), None);

    // The close comes, and it was clean (1000, 1001, 1005): the client left.
    world.disconnect(&a);
    assert_eq!(world.drain_json(&b), [participant_left("A=")]);
    world.assert_nothing_pushed();
    assert_eq!(world.members("123"), [b]);
    assert_eq!(world.store().stats().suspended, 0);
    assert_eq!(world.store().stats().connections, 1);

    // Its token is no use any more.
    world.connect("N=");
    let frames = resume(&world, "N=", &token, now());
    assert_eq!(frames[0]["code"], "resumeFailed");
}

#[test]
fn the_suspension_hook_sees_drops_and_members_found_gone_alike() {
    let world = world();
    let [a, b, c] = ["A=", "B=", "C="].map(|n| world.connect(n));
    for x in [&a, &b, &c] {
        world.join(x, "123");
    }
    world.forget_frames();

    // A drop the gateway saw.
    ready(world.sig.suspend(&a, now())).unwrap();
    // A socket a push found gone, later.
    let later = now() + Duration::from_secs(7);
    world.pusher().mark_gone(&b);
    ready(
        world
            .sig
            .message(&c, r#"{"action":"signal","to":"B=","data":1}"#, later),
    );
    assert_eq!(
        world.take_suspensions(),
        [
            suspension("A=", now() + GRACE),
            suspension("B=", later + GRACE)
        ]
    );
    world.assert_nothing_pushed_to(&c);

    // A drop of a socket in no room is a removal, not a suspension.
    let d = world.connect("D=");
    assert_eq!(ready(world.sig.suspend(&d, now())).unwrap(), None);
    assert_eq!(world.take_suspensions(), []);

    // With resume off there are no suspensions at all: a drop, or a gone member, leaves.
    let off = World::new();
    let [a, b, c] = ["A=", "B=", "C="].map(|n| off.connect(n));
    for x in [&a, &b, &c] {
        off.join(x, "123");
    }
    ready(off.sig.suspend(&a, now())).unwrap();
    off.pusher().mark_gone(&b);
    off.send(&c, r#"{"action":"signal","to":"B=","data":1}"#);
    assert_eq!(off.take_suspensions(), []);
    assert_eq!(off.members("123"), [c]);
}

#[test]
fn the_sweep_expires_participants_whose_grace_ended_and_tells_their_rooms() {
    let world = world();
    let [a, b, c, d] = ["A=", "B=", "C=", "D="].map(|n| world.connect(n));
    world.join(&a, "123");
    world.join(&b, "123");
    world.join(&c, "456");
    world.join(&d, "456");
    world.forget_frames();
    let ten = Duration::from_secs(10);
    ready(world.sig.suspend(&a, now())).unwrap();
    ready(world.sig.suspend(&c, now() + ten)).unwrap();
    let every = Duration::from_mins(5);
    let sweep = |at| ready(world.sig.sweep(at, every)).unwrap();

    // Not a millisecond early.
    assert_eq!(
        sweep(now() + GRACE - Duration::from_millis(1)),
        Swept::default()
    );
    world.assert_nothing_pushed();
    assert_eq!(world.members("123"), [a.clone(), b.clone()]);

    // a's grace is over, c's is not.
    let swept = sweep(now() + GRACE);
    assert_eq!(swept.expired, 1);
    assert_eq!(world.drain_json(&b), [participant_left("A=")]);
    world.assert_nothing_pushed();
    assert_eq!(world.members("123"), std::slice::from_ref(&b));
    assert_eq!(world.members("456"), [c.clone(), d.clone()]);

    // Once is enough.
    assert_eq!(sweep(now() + GRACE), Swept::default());
    world.assert_nothing_pushed();

    let swept = sweep(now() + ten + GRACE);
    assert_eq!(swept.expired, 1);
    assert_eq!(world.drain_json(&d), [participant_left("C=")]);
    world.assert_nothing_pushed();
    assert_eq!(world.members("456"), [d]);
    // The self-hosted store never asks for liveness checks: nothing was probed.
    assert_eq!(world.pusher().probes(), []);
    assert_eq!(world.store().stats().suspended, 0);
}

#[test]
fn ghosts_of_a_full_room_are_suspended_and_the_joiner_still_finds_it_full() {
    let world = World::with_config(Config {
        max_room_size: 2,
        ..config()
    });
    let [a, b] = ["A=", "B="].map(|n| world.connect(n));
    world.join(&a, "123");
    world.join(&b, "123");
    let d = world.connect("D=");
    world.forget_frames();
    // b vanished and its `$disconnect` never came; nothing has been pushed to it since.
    world.pusher().mark_gone(&b);

    let outcome = world.join(&d, "123");

    let mut probed = world.pusher().probes();
    probed.sort();
    assert_eq!(probed, [a.clone(), b.clone()]);
    // Gone is not left: b may be reconnecting now, so its seat is kept.
    assert_eq!(outcome.error, Some(ErrorCode::RoomFull));
    assert_eq!(world.drain_json(&d)[0]["code"], "roomFull");
    world.assert_nothing_pushed();
    assert_eq!(world.members("123"), [a, b.clone()]);
    let members = ready(world.store().members(&room("123"), now())).unwrap();
    assert_eq!(
        members[1],
        Member {
            id: b,
            socket: None
        }
    );
    assert_eq!(world.take_suspensions(), [suspension("B=", now() + GRACE)]);
}

#[test]
fn a_joiner_found_gone_keeps_its_new_seat_and_the_room_is_told_it_is_there() {
    let world = world();
    pair(&world);
    let (a, b) = (id("A="), id("B="));
    let d = world.connect("D=");
    // d's joinRoom was in flight when its socket vanished: its `joined` is answered 410.
    world.pusher().mark_gone(&d);

    let outcome = world.join(&d, "123");

    assert_eq!(outcome.error, None);
    // Gone is not left: d is suspended in the room it joined, and may resume there.
    assert_eq!(world.members("123"), [a.clone(), b.clone(), d.clone()]);
    assert_eq!(world.take_suspensions(), [suspension("D=", now() + GRACE)]);
    // So whatever a and b were told must add up to "d is here" (else a resumed d would
    // signal peers that never heard of it, and its expiry would announce a stranger).
    for member in [&a, &b] {
        let mut present = false;
        for frame in world.drain_json(member) {
            if frame == json!({"type": "newParticipant", "participantConnectionId": "D="}) {
                present = true;
            } else if frame == participant_left("D=") {
                present = false;
            }
        }
        assert!(present, "{member} was never told that D= is in the room");
    }
}
