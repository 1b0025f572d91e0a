//! Resume: a participant whose socket dropped keeps its identity and seat for the grace
//! window, unseen by the others, and takes them back on a new socket with its token.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, SystemTime};

use meshcall_core::{Config, Resume, ResumeKey, Route, protocol::ErrorCode};
use serde_json::{Value, json};
use support::{World, id, now, ready};

const GRACE: Duration = Duration::from_secs(30);

fn world() -> World {
    World::with_config(Config {
        resume: Some(Resume {
            key: ResumeKey::new([42; 32]),
            grace: GRACE,
        }),
        ..Config::default()
    })
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
    assert_eq!(suspended, Some((a.clone(), now() + GRACE)));
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
