//! Properties of the routes under any sequence of connects, joins, leaves, room messages,
//! signals, pings, garbage, drops and connections gone stale, checked step by step against a
//! reference model of who is in which room:
//!
//! - nothing is delivered outside its room, and signals reach exactly their addressee with
//!   the true sender in `from`;
//! - the store's membership is the model's, and no room grows past its cap;
//! - every member's view of its room, rebuilt only from the frames it received, is the room.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use meshcall_core::{
    ConnectionStore, Kind, Outcome, Route,
    protocol::{ConnectionId, ErrorCode, RoomId},
};
use proptest::{prelude::*, test_runner::TestCaseError};
use serde_json::Value;
use support::{Fate, Push, World, parse_json, ready, room};

const SLOTS: usize = 6;
const ROOMS: [&str; 3] = ["r0", "r1", "r2"];
const CAP: usize = 3;

/// Frames no route takes, and the code each is refused with.
const GARBAGE: [(&str, ErrorCode); 8] = [
    ("hello", ErrorCode::BadJson),
    ("[1]", ErrorCode::BadJson),
    (r#"{"action":"ping""#, ErrorCode::BadJson),
    ("{}", ErrorCode::UnknownAction),
    (r#"{"action":"fly"}"#, ErrorCode::UnknownAction),
    (r#"{"action":"joinRoom"}"#, ErrorCode::InvalidRoomId),
    (
        r#"{"action":"sendMsgToRoom","roomId":"r0"}"#,
        ErrorCode::InvalidField,
    ),
    (
        r#"{"action":"signal","to":"s0-1"}"#,
        ErrorCode::InvalidField,
    ),
];

/// One step. Six slots play the clients; a slot's connection id changes on each connect.
/// Each `usize` picks, modulo their number, among the slots the step can apply to (open ones
/// unless said otherwise), so few steps are wasted.
#[derive(Debug, Clone)]
enum Op {
    /// `$connect` on a closed slot.
    Connect(usize),
    /// `joinRoom` one of [`ROOMS`].
    Join(usize, usize),
    /// `leaveRoom`.
    Leave(usize),
    /// `sendMsgToRoom` naming the sender's own room (`r0` if it has none). Sent by a member
    /// if there is one, as is `Signal`.
    SendToOwnRoom(usize),
    /// `sendMsgToRoom` naming one of [`ROOMS`].
    SendToRoom(usize, usize),
    /// `signal`.
    Signal(usize, Target),
    /// `ping`.
    Ping(usize),
    /// One of [`GARBAGE`].
    Garbage(usize, usize),
    /// `$disconnect` of a gone slot if there is one (the gateway notices dead sockets),
    /// else of any slot: for a closed one, cleanup running twice.
    Disconnect(usize),
    /// The socket dies unnoticed: from now on every push to it answers `Gone`. The gateway
    /// has not seen it yet, so frames it already read may still arrive from it.
    Gone(usize),
}

/// Whom a `signal` names.
#[derive(Debug, Clone)]
enum Target {
    /// Another member of the sender's room (any slot if it has none).
    RoomMate(usize),
    /// Any slot's current or last id, the sender's own included.
    Slot(usize),
    /// An id never connected.
    Stranger,
}

fn op() -> impl Strategy<Value = Op> {
    let pick = || 0..SLOTS;
    // Uneven, so that rooms fill up.
    let room = || prop_oneof![5 => Just(0), 3 => Just(1), 2 => Just(2)];
    let target = prop_oneof![
        6 => pick().prop_map(Target::RoomMate),
        3 => pick().prop_map(Target::Slot),
        1 => Just(Target::Stranger),
    ];
    prop_oneof![
        1 => pick().prop_map(Op::Connect),
        5 => (pick(), room()).prop_map(|(s, r)| Op::Join(s, r)),
        1 => pick().prop_map(Op::Leave),
        2 => pick().prop_map(Op::SendToOwnRoom),
        1 => (pick(), room()).prop_map(|(s, r)| Op::SendToRoom(s, r)),
        4 => (pick(), target).prop_map(|(s, t)| Op::Signal(s, t)),
        1 => pick().prop_map(Op::Ping),
        1 => (pick(), 0..GARBAGE.len()).prop_map(|(s, g)| Op::Garbage(s, g)),
        2 => pick().prop_map(Op::Disconnect),
        1 => pick().prop_map(Op::Gone),
    ]
}

/// Who is in which room, as the store should have it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Membership {
    /// Every connection the store knows, and its room.
    room_of: BTreeMap<ConnectionId, Option<RoomId>>,
}

impl Membership {
    fn room(&self, conn: &ConnectionId) -> Option<RoomId> {
        self.room_of.get(conn).cloned().flatten()
    }

    fn members(&self, room: &RoomId) -> BTreeSet<ConnectionId> {
        self.room_of
            .iter()
            .filter(|(_, r)| r.as_ref() == Some(room))
            .map(|(c, _)| c.clone())
            .collect()
    }

    fn others(&self, room: &RoomId, conn: &ConnectionId) -> BTreeSet<ConnectionId> {
        let mut m = self.members(room);
        m.remove(conn);
        m
    }
}

/// What the model expects of one step.
#[derive(Debug, Clone)]
enum Expect {
    /// No call into the core.
    Nothing,
    Connect,
    Disconnect {
        left: Option<RoomId>,
    },
    Join {
        room: RoomId,
        /// `Ok(already_member)` or the refusal.
        result: Result<bool, ErrorCode>,
        left: Option<RoomId>,
    },
    Leave {
        left: Option<RoomId>,
    },
    Send {
        room: RoomId,
        text: String,
        ok: bool,
    },
    Signal {
        to: ConnectionId,
        data: String,
        result: Option<ErrorCode>,
    },
    Ping,
    Garbage(ErrorCode),
    /// A join from a connection the store already removed: ignored, nothing pushed.
    JoinWhileRemoved,
}

impl Expect {
    /// The route and error `Signalling::message` should report.
    fn outcome(&self) -> Option<(Route, Option<ErrorCode>)> {
        Some(match self {
            Self::Nothing | Self::Connect | Self::Disconnect { .. } => return None,
            Self::Join { result, .. } => (Route::JoinRoom, result.err()),
            Self::Leave { left } => (
                Route::LeaveRoom,
                left.is_none().then_some(ErrorCode::NotInRoom),
            ),
            Self::Send { ok, .. } => (Route::SendMsgToRoom, (!ok).then_some(ErrorCode::NotInRoom)),
            Self::Signal { result, .. } => (Route::Signal, *result),
            Self::Ping => (Route::Ping, None),
            Self::JoinWhileRemoved => (Route::JoinRoom, None),
            Self::Garbage(code) => (Route::Default, Some(*code)),
        })
    }

    /// The error the sender should get back, if any.
    fn error(&self) -> Option<ErrorCode> {
        self.outcome().and_then(|(_, e)| e)
    }

    /// The room the actor left in this step, if it left one.
    fn left(&self) -> Option<&RoomId> {
        match self {
            Self::Disconnect { left }
            | Self::Leave { left }
            | Self::Join {
                result: Ok(_),
                left,
                ..
            } => left.as_ref(),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
struct Slot {
    /// The current connection's id, or the last one's once closed.
    id: ConnectionId,
    generation: u32,
    /// The gateway holds the socket open (no `$disconnect` yet).
    open: bool,
    /// The socket is dead: pushes to it answer `Gone`.
    gone: bool,
}

struct Run {
    world: World,
    slots: Vec<Slot>,
    model: Membership,
    /// Each connection's idea of the other members of its room, from its frames alone.
    views: HashMap<ConnectionId, BTreeSet<ConnectionId>>,
    step: usize,
    /// What each step did, for the failure message.
    trace: Vec<String>,
}

fn conn_id(slot: usize, generation: u32) -> ConnectionId {
    ConnectionId::parse(&format!("s{slot}-{generation}")).unwrap()
}

fn str_field<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} missing in {v}"))
}

impl Run {
    fn new() -> Self {
        Self {
            world: World::with_room_cap(CAP),
            slots: (0..SLOTS)
                .map(|s| Slot {
                    id: conn_id(s, 0),
                    generation: 0,
                    open: false,
                    gone: false,
                })
                .collect(),
            model: Membership::default(),
            views: HashMap::new(),
            step: 0,
            trace: Vec::new(),
        }
    }

    /// Runs one step and checks everything after it; a failure lists the steps so far.
    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        self.apply_step(op)
            .map_err(|e| context(e, &format!("steps:\n  {}", self.trace.join("\n  "))))
    }

    fn apply_step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        self.step += 1;
        let before = self.model.clone();
        let (actor, expect, outcome) = self.drive(op);
        if let Some(expected) = expect.outcome() {
            let got = outcome.expect("a message step reports an outcome");
            prop_assert_eq!((got.route, got.error), expected, "outcome of {:?}", op);
        }
        let after_op = self.model.clone();
        let pushes = self.world.pusher().take();
        let gone: BTreeSet<ConnectionId> = pushes
            .iter()
            .filter(|p| p.fate == Fate::Gone)
            .map(|p| p.to.clone())
            .collect();
        for conn in &gone {
            self.model.room_of.remove(conn);
        }
        let step = Step {
            actor: &actor,
            expect: &expect,
            before: &before,
            after_op: &after_op,
            after: &self.model,
            gone: &gone,
            pushes: &pushes,
        };
        for push in &pushes {
            step.check_push(push)
                .map_err(|e| context(e, &format!("push {push:?}")))?;
        }
        step.check_complete()
            .map_err(|e| context(e, &format!("pushes {pushes:#?}")))?;
        self.update_views(&pushes);
        self.check_store()?;
        self.check_views()
    }

    /// The slot `op` applies to, if any can take it.
    fn choose_slot(&self, op: &Op) -> Option<usize> {
        let pick = match *op {
            Op::Connect(p)
            | Op::Join(p, _)
            | Op::Leave(p)
            | Op::SendToOwnRoom(p)
            | Op::SendToRoom(p, _)
            | Op::Signal(p, _)
            | Op::Ping(p)
            | Op::Garbage(p, _)
            | Op::Disconnect(p)
            | Op::Gone(p) => p,
        };
        let any_gone = self.slots.iter().any(|s| s.open && s.gone);
        let in_room = |s: &Slot| s.open && self.model.room(&s.id).is_some();
        let any_member = self.slots.iter().any(in_room);
        let candidates: Vec<usize> = (0..SLOTS)
            .filter(|&s| {
                let slot = &self.slots[s];
                match op {
                    Op::Connect(_) => !slot.open,
                    Op::Disconnect(_) => !any_gone || (slot.open && slot.gone),
                    // Mostly from members, so most of them get through.
                    Op::Signal(..) | Op::SendToOwnRoom(_) => {
                        slot.open && (!any_member || in_room(slot))
                    }
                    _ => slot.open,
                }
            })
            .collect();
        candidates.get(pick % candidates.len().max(1)).copied()
    }

    /// Calls the core for `op`, updating the model's membership as the op itself should
    /// (not yet the removal of connections found gone). Returns the actor, what the model
    /// expects, and the core's outcome for frames.
    fn drive(&mut self, op: &Op) -> (ConnectionId, Expect, Option<Outcome>) {
        let Some(s) = self.choose_slot(op) else {
            return (self.slots[0].id.clone(), Expect::Nothing, None);
        };
        let slot = &mut self.slots[s];
        match op {
            Op::Connect(_) => {
                slot.generation += 1;
                slot.id = conn_id(s, slot.generation);
                slot.open = true;
                slot.gone = false;
                let actor = slot.id.clone();
                self.trace.push(format!("{actor} connects"));
                self.world.connect(actor.as_str());
                self.model.room_of.insert(actor.clone(), None);
                (actor, Expect::Connect, None)
            }
            Op::Disconnect(_) => {
                slot.open = false;
                let actor = slot.id.clone();
                self.trace.push(format!("{actor} disconnects"));
                let left = self.model.room(&actor);
                self.model.room_of.remove(&actor);
                self.world.disconnect(&actor);
                (actor, Expect::Disconnect { left }, None)
            }
            Op::Gone(_) => {
                slot.gone = true;
                let actor = slot.id.clone();
                self.trace.push(format!("{actor} is gone"));
                self.world.pusher().mark_gone(&actor);
                (actor, Expect::Nothing, None)
            }
            _ => {
                let actor = slot.id.clone();
                let (text, expect) = self.frame(op, &actor);
                let outcome = self.world.send(&actor, &text);
                self.trace.push(format!(
                    "{actor} sends {text} -> {:?}",
                    (outcome.route, outcome.error)
                ));
                (actor, expect, Some(outcome))
            }
        }
    }

    /// The frame `actor` sends for `op`, and what the model expects of it; the model's
    /// membership is updated as the frame should change it.
    fn frame(&mut self, op: &Op, actor: &ConnectionId) -> (String, Expect) {
        let m = &mut self.model;
        let step = self.step;
        match *op {
            Op::Join(_, r) => {
                let target = room(ROOMS[r]);
                if !m.room_of.contains_key(actor) {
                    return (
                        format!(r#"{{"action":"joinRoom","roomId":"{target}"}}"#),
                        Expect::JoinWhileRemoved,
                    );
                }
                let current = m.room(actor);
                let result = if current.as_ref() == Some(&target) {
                    Ok(true)
                } else if m.members(&target).len() >= CAP {
                    Err(ErrorCode::RoomFull)
                } else {
                    m.room_of.insert(actor.clone(), Some(target.clone()));
                    Ok(false)
                };
                let left = current.filter(|_| result == Ok(false));
                (
                    format!(r#"{{"action":"joinRoom","roomId":"{target}"}}"#),
                    Expect::Join {
                        room: target,
                        result,
                        left,
                    },
                )
            }
            Op::Leave(_) => {
                let left = m.room(actor);
                if left.is_some() {
                    m.room_of.insert(actor.clone(), None);
                }
                (
                    r#"{"action":"leaveRoom"}"#.to_owned(),
                    Expect::Leave { left },
                )
            }
            Op::SendToOwnRoom(_) | Op::SendToRoom(..) => {
                let target = match *op {
                    Op::SendToRoom(_, r) => room(ROOMS[r]),
                    _ => m.room(actor).unwrap_or_else(|| room(ROOMS[0])),
                };
                let message = format!("message {step} \"quoted\"");
                let ok = m.room(actor).as_ref() == Some(&target);
                let text = serde_json::json!({
                    "action": "sendMsgToRoom",
                    "roomId": target.as_str(),
                    "message": message,
                })
                .to_string();
                let expect = Expect::Send {
                    room: target,
                    text: message,
                    ok,
                };
                (text, expect)
            }
            Op::Signal(_, ref target) => self.signal(actor, target),
            Op::Ping(_) => (r#"{"action":"ping"}"#.to_owned(), Expect::Ping),
            Op::Garbage(_, g) => (GARBAGE[g].0.to_owned(), Expect::Garbage(GARBAGE[g].1)),
            Op::Connect(_) | Op::Disconnect(_) | Op::Gone(_) => unreachable!("not a frame"),
        }
    }

    /// A `signal` frame from `actor`, and what the model expects of it.
    fn signal(&self, actor: &ConnectionId, target: &Target) -> (String, Expect) {
        let m = &self.model;
        let mates: Vec<ConnectionId> = m
            .room(actor)
            .map(|r| m.others(&r, actor).into_iter().collect())
            .unwrap_or_default();
        let to = match *target {
            Target::RoomMate(k) if !mates.is_empty() => mates[k % mates.len()].clone(),
            Target::RoomMate(k) | Target::Slot(k) => self.slots[k].id.clone(),
            Target::Stranger => ConnectionId::parse("stranger").unwrap(),
        };
        let data = format!(r#"{{"step": {}, "sdp": "v=0\r\n"}}"#, self.step);
        let result = if &to == actor {
            Some(ErrorCode::SignalToSelf)
        } else {
            match m.room(actor) {
                None => Some(ErrorCode::NotInRoom),
                Some(r) if m.room(&to).as_ref() != Some(&r) => Some(ErrorCode::PeerNotFound),
                Some(_) => None,
            }
        };
        (
            format!(r#"{{"action":"signal","to":"{to}","data":{data}}}"#),
            Expect::Signal { to, data, result },
        )
    }

    /// Replays the delivered frames into each receiver's view of its room.
    fn update_views(&mut self, pushes: &[Push]) {
        for push in pushes.iter().filter(|p| p.fate == Fate::Delivered) {
            let view = self.views.entry(push.to.clone()).or_default();
            match push.frame.kind {
                Kind::Joined => {
                    let v = parse_json(&push.frame.text);
                    *view = v["participants"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|p| ConnectionId::parse(p.as_str().unwrap()).unwrap())
                        .collect();
                }
                Kind::NewParticipant => {
                    let v = parse_json(&push.frame.text);
                    view.insert(id_field(&v));
                }
                Kind::ParticipantLeft => {
                    let v = parse_json(&push.frame.text);
                    view.remove(&id_field(&v));
                }
                _ => {}
            }
        }
    }

    /// The store holds exactly the model's membership, within the cap.
    fn check_store(&self) -> Result<(), TestCaseError> {
        let store = self.world.store();
        let stats = store.stats();
        let rooms: BTreeSet<RoomId> = self.model.room_of.values().flatten().cloned().collect();
        prop_assert_eq!(stats.connections, self.model.room_of.len(), "connections");
        prop_assert_eq!(stats.rooms, rooms.len(), "rooms");
        prop_assert_eq!(
            stats.members,
            self.model.room_of.values().flatten().count(),
            "members"
        );
        for name in ROOMS {
            let r = room(name);
            let listed = ready(store.members(&r)).unwrap();
            let set: BTreeSet<ConnectionId> = listed.iter().map(|m| m.id.clone()).collect();
            prop_assert_eq!(set.len(), listed.len(), "duplicate member in {}", name);
            prop_assert!(listed.len() <= CAP, "{} over the cap: {:?}", name, listed);
            prop_assert_eq!(set, self.model.members(&r), "members of {}", name);
        }
        for slot in &self.slots {
            let r = store.room_of(&slot.id);
            prop_assert_eq!(r, self.model.room(&slot.id), "room of {}", slot.id);
        }
        Ok(())
    }

    /// Every member's view, from its own frames, is the room's other members.
    fn check_views(&self) -> Result<(), TestCaseError> {
        for (conn, r) in &self.model.room_of {
            let Some(r) = r else { continue };
            let view = self.views.get(conn).cloned().unwrap_or_default();
            prop_assert_eq!(
                view,
                self.model.others(r, conn),
                "{} in {} sees the wrong room",
                conn,
                r
            );
        }
        Ok(())
    }
}

fn id_field(v: &Value) -> ConnectionId {
    ConnectionId::parse(str_field(v, "participantConnectionId")).unwrap()
}

fn fail(msg: &str) -> TestCaseError {
    TestCaseError::fail(msg.to_owned())
}

/// Adds `extra` to a failure's message.
fn context(e: TestCaseError, extra: &str) -> TestCaseError {
    match e {
        TestCaseError::Fail(reason) => fail(&format!("{}\n{extra}", reason.message())),
        reject @ TestCaseError::Reject(_) => reject,
    }
}

/// Everything known about one step, to judge its pushes.
struct Step<'a> {
    actor: &'a ConnectionId,
    expect: &'a Expect,
    /// Membership before the step.
    before: &'a Membership,
    /// After the step's own change, before connections found gone were dropped.
    after_op: &'a Membership,
    /// After the step.
    after: &'a Membership,
    /// Connections that answered `Gone` in this step.
    gone: &'a BTreeSet<ConnectionId>,
    pushes: &'a [Push],
}

impl Step<'_> {
    /// A push is allowed only if the step explains it.
    fn check_push(&self, p: &Push) -> Result<(), TestCaseError> {
        let s = self.actor;
        let x = &p.to;
        let text = &*p.frame.text;
        match p.frame.kind {
            Kind::Joined => self.check_joined(x, text)?,
            Kind::NewParticipant => {
                let Expect::Join {
                    room,
                    result: Ok(false),
                    ..
                } = self.expect
                else {
                    return Err(fail("newParticipant without a fresh join"));
                };
                prop_assert_eq!(
                    &id_field(&parse_json(text)),
                    s,
                    "newParticipant names the joiner"
                );
                prop_assert!(
                    self.after_op.others(room, s).contains(x),
                    "newParticipant to {} outside {}",
                    x,
                    room
                );
            }
            Kind::RoomMessage => {
                let Expect::Send {
                    room,
                    text: sent,
                    ok: true,
                } = self.expect
                else {
                    return Err(fail("room message without a successful send"));
                };
                prop_assert_eq!(text, sent.as_str(), "relayed verbatim");
                prop_assert!(
                    self.before.room(s).as_ref() == Some(room),
                    "sender outside the room"
                );
                prop_assert!(
                    self.after_op.others(room, s).contains(x),
                    "room message to {} outside {}",
                    x,
                    room
                );
            }
            Kind::Signal => {
                let Expect::Signal {
                    to,
                    data,
                    result: None,
                } = self.expect
                else {
                    return Err(fail("signal without a successful signal"));
                };
                prop_assert_eq!(x, to, "signal to someone else");
                let expected = format!(r#"{{"type":"signal","from":"{s}","data":{data}}}"#);
                prop_assert_eq!(text, expected.as_str(), "signal frame");
                prop_assert!(self.after_op.room(s).is_some());
                prop_assert_eq!(
                    self.after_op.room(s),
                    self.after_op.room(x),
                    "signal across rooms"
                );
            }
            Kind::ParticipantLeft => {
                let leaver = id_field(&parse_json(text));
                let by_actor = &leaver == s
                    && self
                        .expect
                        .left()
                        .is_some_and(|l| self.after_op.members(l).contains(x));
                let by_gone = self.gone.contains(&leaver)
                    && self
                        .after_op
                        .room(&leaver)
                        .is_some_and(|q| self.after_op.others(&q, &leaver).contains(x));
                prop_assert!(
                    by_actor || by_gone,
                    "participantLeft({}) to {}, who was not in its room",
                    leaver,
                    x
                );
            }
            Kind::Pong => {
                prop_assert!(matches!(self.expect, Expect::Ping), "unasked pong");
                prop_assert_eq!(x, s, "pong to someone else");
            }
            Kind::Error => {
                let code = self.expect.error();
                prop_assert!(code.is_some(), "error frame for an accepted step");
                prop_assert_eq!(x, s, "error to someone else");
                let v = parse_json(text);
                prop_assert_eq!(str_field(&v, "code"), code.unwrap().as_str());
            }
        }
        Ok(())
    }

    /// `joined` goes to the joiner alone and lists the room's other members.
    fn check_joined(&self, to: &ConnectionId, text: &str) -> Result<(), TestCaseError> {
        let s = self.actor;
        let Expect::Join {
            room,
            result: Ok(_),
            ..
        } = self.expect
        else {
            return Err(fail("joined without a successful join"));
        };
        prop_assert_eq!(to, s, "joined to someone else");
        let v = parse_json(text);
        prop_assert_eq!(str_field(&v, "roomId"), room.as_str());
        prop_assert_eq!(str_field(&v, "connectionId"), s.as_str());
        let listed: Vec<&str> = v["participants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        let set: BTreeSet<&str> = listed.iter().copied().collect();
        prop_assert_eq!(set.len(), listed.len(), "duplicate participants");
        let expected = self.after_op.others(room, s);
        let expected: BTreeSet<&str> = expected.iter().map(ConnectionId::as_str).collect();
        prop_assert_eq!(set, expected, "participants");
        Ok(())
    }

    fn pushed(&self, to: &ConnectionId, kind: Kind, about: Option<&ConnectionId>) -> bool {
        self.pushes.iter().any(|p| {
            &p.to == to
                && p.frame.kind == kind
                && about.is_none_or(|a| id_field(&parse_json(&p.frame.text)) == *a)
        })
    }

    fn count(&self, kind: Kind) -> usize {
        self.pushes.iter().filter(|p| p.frame.kind == kind).count()
    }

    /// Everyone who should have heard of the step did (those still connected, at least).
    fn check_complete(&self) -> Result<(), TestCaseError> {
        let s = self.actor;
        let survivors = |r: &RoomId| self.after.members(r);
        if let Some(l) = self.expect.left() {
            for x in survivors(l) {
                prop_assert!(
                    self.pushed(&x, Kind::ParticipantLeft, Some(s)),
                    "{} not told that {} left {}",
                    x,
                    s,
                    l
                );
            }
        }
        for g in self.gone {
            if let Some(q) = self.after_op.room(g) {
                for x in survivors(&q) {
                    prop_assert!(
                        self.pushed(&x, Kind::ParticipantLeft, Some(g)),
                        "{} not told that gone {} left {}",
                        x,
                        g,
                        q
                    );
                }
            }
        }
        if let Some(code) = self.expect.error() {
            let errors: Vec<&Push> = self
                .pushes
                .iter()
                .filter(|p| p.frame.kind == Kind::Error)
                .collect();
            prop_assert_eq!(errors.len(), 1, "one error frame for {:?}", code);
            prop_assert_eq!(&errors[0].to, s);
        }
        match self.expect {
            Expect::Join {
                room,
                result: Ok(already),
                ..
            } => {
                prop_assert_eq!(self.count(Kind::Joined), 1, "one joined");
                // A joiner found gone need not be announced (it is gone again).
                if !already && self.after.room(s).is_some() {
                    for x in survivors(room) {
                        if &x != s {
                            prop_assert!(
                                self.pushed(&x, Kind::NewParticipant, Some(s)),
                                "{} not told that {} joined",
                                x,
                                s
                            );
                        }
                    }
                }
            }
            Expect::Send {
                room,
                text,
                ok: true,
            } => {
                for x in survivors(room) {
                    if &x != s {
                        prop_assert!(
                            self.pushes.iter().any(|p| p.to == x
                                && p.frame.kind == Kind::RoomMessage
                                && &*p.frame.text == text),
                            "{} missed the room message",
                            x
                        );
                    }
                }
            }
            Expect::Signal {
                to, result: None, ..
            } => {
                prop_assert_eq!(self.count(Kind::Signal), 1, "one signal");
                prop_assert!(self.pushed(to, Kind::Signal, None));
            }
            Expect::Ping => prop_assert_eq!(self.count(Kind::Pong), 1, "one pong"),
            _ => {}
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn rooms_stay_consistent_under_any_sequence(ops in prop::collection::vec(op(), 0..60)) {
        let mut run = Run::new();
        // Everyone starts connected; later steps close and reopen slots.
        for _ in 0..SLOTS {
            run.apply(&Op::Connect(0))?;
        }
        for op in &ops {
            run.apply(op)?;
        }
    }
}
