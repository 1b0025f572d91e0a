//! Properties of the routes under any sequence of connects, joins, leaves, room messages,
//! signals, pings, garbage, clean closes, drops, resumes, expiries, sweeps, the clock moving
//! and sockets gone stale, checked step by step against a reference model of the
//! participants, the socket each is attached to or (while suspended) dropped from, and the
//! room each is in:
//!
//! - nothing is delivered outside its room, signals reach exactly their addressee with the
//!   true sender in `from`, and nothing at all is pushed for a suspended participant;
//! - a drop tells no one, and neither does a push found gone (gone is not left): both
//!   suspend the participant, and a second report of the same drop changes nothing (its
//!   grace is not extended); the room hears `participantLeft` only when `expire` or the sweep
//!   finds the grace over, or a clean close of the socket it dropped from ends it, and then
//!   exactly that room does;
//! - a resume within the grace answers `joined` with `resumed: true`, the same
//!   `connectionId`, the same room and its other members, to the new socket alone, and names
//!   the old socket as replaced only if it was still attached; a late, forged or used-up
//!   token, or a socket already in a room, is `resumeFailed`;
//! - a socket whose participant moved to another socket takes no one with it when it closes
//!   or drops, and speaks for no one if a late frame arrives from it; nor does a socket a
//!   participant is suspended from;
//! - a join refused as the room is full probes the room's members at most once per 5 s;
//!   ghosts found (sockets gone) are suspended, and nobody is told;
//! - the `on_suspend` hook sees every suspension, and only those;
//! - the store's participants, sockets and rooms are the model's, and no room grows past its
//!   cap;
//! - every attached member's view of its room, rebuilt only from the frames its socket
//!   received (a `joined`, resumed or not, starts it afresh), is the room.
//!
//! The same sequences also run with resume off, where a drop, and a push or probe found
//! gone, is a departure that the room is told of (a full room's ghosts are removed and the
//! join retried once), and every `resume` fails.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

mod support;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    time::{Duration, SystemTime},
};

use meshcall_core::{
    Config, ConnectionStore, Due, Kind, Member, Outcome, Presence, Resume, ResumeKey, Route,
    Suspension, Swept,
    protocol::{ConnectionId, ErrorCode, RoomId},
};
use proptest::{prelude::*, test_runner::TestCaseError};
use serde_json::Value;
use support::{Fate, Push, World, now, parse_json, ready, room};

const SLOTS: usize = 6;
const ROOMS: [&str; 3] = ["r0", "r1", "r2"];
const CAP: usize = 3;
const GRACE: Duration = Duration::from_secs(30);
/// How often the sweep is told to check members (`MemoryStore` never has any to check).
const CHECK_EVERY: Duration = Duration::from_mins(5);
/// A full room is probed for ghosts at most this often.
const PROBE_FULL_ROOM_EVERY: Duration = Duration::from_secs(5);
/// Signs the service's tokens.
const KEY: [u8; 32] = [42; 32];
/// Signs forged tokens.
const FORGER_KEY: [u8; 32] = [7; 32];

/// Frames no route takes, and the code each is refused with.
const GARBAGE: [(&str, ErrorCode); 9] = [
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
    (r#"{"action":"resume"}"#, ErrorCode::InvalidField),
];

/// One step. Six slots play the clients; a slot's socket id changes on each connect and on
/// each resume from a new socket. Each `usize` picks, modulo their number, among the slots
/// or sockets the step can apply to (open sockets unless said otherwise), so few steps are
/// wasted.
#[derive(Debug, Clone)]
enum Op {
    /// `$connect` on a closed slot: the client starts afresh (it keeps its last token).
    Connect(usize),
    /// `joinRoom` one of [`ROOMS`], or a full one ([`FULL`]).
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
    /// `$disconnect` (a clean close) of a gone socket if there is one, else of any socket:
    /// a replaced one, or a closed one (cleanup running twice, or a clean close reported
    /// after a drop).
    Disconnect(usize),
    /// The socket dies unnoticed: from now on every push or probe to it answers `Gone`. The
    /// gateway has not seen it yet, so frames it already read may still arrive from it. An
    /// odd pick prefers a member of a full room (to leave a ghost there).
    Gone(usize),
    /// The gateway finds a socket (a slot's, or a replaced one) dropped without a close:
    /// `Signalling::suspend`. An odd pick prefers a gone socket (whose participant a push
    /// may already have suspended: the drop reported twice).
    Suspend(usize),
    /// `Signalling::sweep`.
    Sweep,
    /// A slot that has had a `joined` sends `resume` with its last token.
    Resume(usize, Via),
    /// `Signalling::expire` for a suspended participant if there is one, else for a slot's
    /// participant (attached, gone or never suspended: nothing to do).
    Expire(usize),
    /// The clock moves.
    Tick(Advance),
    /// A frame the gateway had read from a socket it has since abandoned (replaced by a
    /// resume) arrives late.
    Late(usize, LateFrame),
}

/// Whom a `signal` names.
#[derive(Debug, Clone)]
enum Target {
    /// Another member of the sender's room (any slot's socket if it has none).
    RoomMate(usize),
    /// Below [`SLOTS`], that slot's current or last socket id; above, the participant the
    /// slot was last told it is (which differs from its socket after a resume).
    Slot(usize),
    /// An id never connected.
    Stranger,
}

/// How a `resume` is sent.
#[derive(Debug, Clone, Copy)]
enum Via {
    /// From a new socket, as a client does after its socket dropped: by a slot whose socket
    /// dropped if there is one (within the grace or after it), else by one whose socket
    /// closed (after a departure), else by any (a takeover).
    NewSocket,
    /// From a new socket, by a slot whose socket is still open: the server still holds it,
    /// so this is a takeover if its participant is the token's. The old socket is abandoned
    /// but stays open until a `Disconnect` or `Suspend` picks it.
    Takeover,
    /// From the slot's current socket (refused if it is in a room; a fresh one may resume).
    SameSocket,
    /// As `NewSocket`, with the right id signed by another key.
    Forged,
}

/// How far the clock moves.
#[derive(Debug, Clone, Copy)]
enum Advance {
    By(Duration),
    /// To a suspended participant's grace end, give or take a millisecond.
    ToDeadline(usize, i8),
}

/// What a late frame from an abandoned socket is.
#[derive(Debug, Clone)]
enum LateFrame {
    Join(usize),
    Leave,
    Send,
    Signal(Target),
    Ping,
    Resume,
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        6 => (0..SLOTS).prop_map(Target::RoomMate),
        3 => (0..2 * SLOTS).prop_map(Target::Slot),
        1 => Just(Target::Stranger),
    ]
}

/// Uneven, so that rooms fill up.
fn room_pick() -> impl Strategy<Value = usize> {
    prop_oneof![5 => Just(0), 3 => Just(1), 2 => Just(2)]
}

/// The room a join names: as [`room_pick`], or ([`FULL`]) a full room, so that joins
/// find ghosts.
fn join_pick() -> impl Strategy<Value = usize> {
    prop_oneof![5 => room_pick(), 1 => Just(FULL)]
}

/// A join's room pick meaning the first full room, if any (else `r0`).
const FULL: usize = ROOMS.len();

fn op() -> impl Strategy<Value = Op> {
    let pick = || 0..SLOTS;
    let via = prop_oneof![
        4 => Just(Via::NewSocket),
        1 => Just(Via::Takeover),
        1 => Just(Via::SameSocket),
        1 => Just(Via::Forged),
    ];
    let advance = prop_oneof![
        1 => prop_oneof![Just(1), Just(5), Just(15), Just(29)]
            .prop_map(|s| Advance::By(Duration::from_secs(s))),
        1 => (pick(), -1i8..=1).prop_map(|(k, d)| Advance::ToDeadline(k, d)),
    ];
    let late = prop_oneof![
        join_pick().prop_map(LateFrame::Join),
        Just(LateFrame::Leave),
        Just(LateFrame::Send),
        target().prop_map(LateFrame::Signal),
        Just(LateFrame::Ping),
        Just(LateFrame::Resume),
    ];
    prop_oneof![
        1 => pick().prop_map(Op::Connect),
        5 => (pick(), join_pick()).prop_map(|(s, r)| Op::Join(s, r)),
        1 => pick().prop_map(Op::Leave),
        2 => pick().prop_map(Op::SendToOwnRoom),
        1 => (pick(), room_pick()).prop_map(|(s, r)| Op::SendToRoom(s, r)),
        4 => (pick(), target()).prop_map(|(s, t)| Op::Signal(s, t)),
        1 => pick().prop_map(Op::Ping),
        1 => (pick(), 0..GARBAGE.len()).prop_map(|(s, g)| Op::Garbage(s, g)),
        2 => pick().prop_map(Op::Disconnect),
        1 => pick().prop_map(Op::Gone),
        3 => pick().prop_map(Op::Suspend),
        4 => (pick(), via).prop_map(|(s, v)| Op::Resume(s, v)),
        1 => pick().prop_map(Op::Expire),
        1 => Just(Op::Sweep),
        3 => advance.prop_map(Op::Tick),
        1 => (pick(), late).prop_map(|(s, f)| Op::Late(s, f)),
    ]
}

/// A sequence of steps. Mostly single ops; now and then a member of a full room vanishes
/// unnoticed and someone knocks on that room at once (before anything is pushed to the
/// ghost, which would suspend or remove it), so that joins find ghosts.
fn ops() -> impl Strategy<Value = Vec<Op>> {
    let group = prop_oneof![
        12 => op().prop_map(|o| vec![o]),
        1 => (0..SLOTS / 2, 0..SLOTS)
            .prop_map(|(g, s)| vec![Op::Gone(2 * g + 1), Op::Join(s, FULL)]),
    ];
    prop::collection::vec(group, 0..80).prop_map(|groups| groups.concat())
}

/// One participant, as the store should have it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Participant {
    room: Option<RoomId>,
    /// The socket it is attached to or, while suspended, dropped from.
    socket: ConnectionId,
    /// While suspended: when the grace ends.
    until: Option<SystemTime>,
}

/// Every participant the store should know, keyed by participant id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Model {
    participants: BTreeMap<ConnectionId, Participant>,
}

impl Model {
    fn room(&self, p: &ConnectionId) -> Option<RoomId> {
        self.participants.get(p).and_then(|q| q.room.clone())
    }

    fn members(&self, room: &RoomId) -> BTreeSet<ConnectionId> {
        self.participants
            .iter()
            .filter(|(_, q)| q.room.as_ref() == Some(room))
            .map(|(p, _)| p.clone())
            .collect()
    }

    fn others(&self, room: &RoomId, p: &ConnectionId) -> BTreeSet<ConnectionId> {
        let mut m = self.members(room);
        m.remove(p);
        m
    }

    /// The participant attached to `socket` or suspended from it.
    fn holder(&self, socket: &ConnectionId) -> Option<ConnectionId> {
        self.participants
            .iter()
            .find(|(_, q)| &q.socket == socket)
            .map(|(p, _)| p.clone())
    }

    /// The participant attached to `socket` (not one suspended from it).
    fn attached(&self, socket: &ConnectionId) -> Option<ConnectionId> {
        self.holder(socket)
            .filter(|p| self.participants[p].until.is_none())
    }

    /// The socket `p` is reached through: none while suspended.
    fn socket_of(&self, p: &ConnectionId) -> Option<ConnectionId> {
        self.participants
            .get(p)
            .filter(|q| q.until.is_none())
            .map(|q| q.socket.clone())
    }

    /// The sockets `participants` are reached through (suspended ones have none).
    fn sockets_of(&self, participants: &BTreeSet<ConnectionId>) -> BTreeSet<ConnectionId> {
        participants
            .iter()
            .filter_map(|p| self.socket_of(p))
            .collect()
    }

    /// Suspended participants and their grace ends.
    fn suspended(&self) -> Vec<(ConnectionId, SystemTime)> {
        self.participants
            .iter()
            .filter_map(|(p, q)| q.until.map(|u| (p.clone(), u)))
            .collect()
    }

    fn set_room(&mut self, p: &ConnectionId, room: Option<RoomId>) {
        self.participants.get_mut(p).unwrap().room = room;
    }

    /// Suspends `p` until `until`, as the store does for a socket found dropped: a
    /// participant already suspended keeps its grace, one in no room is removed. Returns the
    /// suspension the hook is called with.
    fn suspend(&mut self, p: &ConnectionId, until: SystemTime) -> Option<Suspension> {
        let q = self.participants.get_mut(p)?;
        if q.room.is_none() {
            self.participants.remove(p);
            return None;
        }
        let until = *q.until.get_or_insert(until);
        Some(Suspension {
            id: p.clone(),
            until,
        })
    }
}

/// What the model expects of one step.
#[derive(Debug, Clone)]
enum Expect {
    /// No call into the core, or a call that must push nothing.
    Nothing,
    Connect,
    /// A clean close (or, with resume off, a drop): the socket's participant is removed.
    Disconnect {
        left: Option<RoomId>,
    },
    /// A drop with resume on: the participant, if in a room, is suspended; nobody is told.
    Suspend,
    /// `expire`: the participant is removed if its grace is over.
    Expire {
        left: Option<RoomId>,
    },
    /// The sweep: the participants whose grace was over were removed from these rooms.
    Sweep {
        left: Vec<(ConnectionId, RoomId)>,
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
    /// A join from a socket with no participant (removed, suspended or moved on): ignored,
    /// nothing pushed.
    JoinWhileRemoved,
    /// `resume`: on success the participant's room and the socket it was taken from.
    Resume {
        result: Option<(RoomId, Option<ConnectionId>)>,
    },
}

impl Expect {
    /// The route and error `Signalling::message` should report.
    fn outcome(&self) -> Option<(Route, Option<ErrorCode>)> {
        Some(match self {
            Self::Nothing
            | Self::Connect
            | Self::Disconnect { .. }
            | Self::Suspend
            | Self::Expire { .. }
            | Self::Sweep { .. } => return None,
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
            Self::Resume { result } => (
                Route::Resume,
                result.is_none().then_some(ErrorCode::ResumeFailed),
            ),
        })
    }

    /// The socket `Outcome::replaced` should name.
    fn replaced(&self) -> Option<&ConnectionId> {
        match self {
            Self::Resume {
                result: Some((_, replaced)),
            } => replaced.as_ref(),
            _ => None,
        }
    }

    /// The error the sender should get back, if any.
    fn error(&self) -> Option<ErrorCode> {
        self.outcome().and_then(|(_, e)| e)
    }

    /// The room the step's participant left, if it left one.
    fn left(&self) -> Option<&RoomId> {
        match self {
            Self::Disconnect { left }
            | Self::Expire { left }
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
    /// The current socket's id, or the last one's once closed.
    socket: ConnectionId,
    generation: u32,
    /// The gateway holds the current socket open (no `$disconnect` or drop yet).
    open: bool,
    /// The current socket dropped (rather than closed cleanly).
    dropped: bool,
    /// Sockets the client abandoned for a new one that the gateway still holds open.
    stale: Vec<ConnectionId>,
    /// From the last `joined` on the current socket: the participant the client is, and
    /// its `resumeToken`.
    me: Option<(ConnectionId, Option<String>)>,
}

/// What driving one step did.
struct Driven {
    /// The socket that acted (for `Expire`, the participant).
    actor: ConnectionId,
    /// The participant the step is about: the actor's before the step, or the one resumed
    /// or expired.
    who: Option<ConnectionId>,
    expect: Expect,
    outcome: Option<Outcome>,
}

impl Driven {
    fn quiet(actor: ConnectionId, expect: Expect) -> Self {
        Self {
            actor,
            who: None,
            expect,
            outcome: None,
        }
    }
}

struct Run {
    world: World,
    /// Resume is on.
    resume: bool,
    clock: SystemTime,
    slots: Vec<Slot>,
    model: Model,
    /// Sockets whose pushes answer `Gone`.
    gone: BTreeSet<ConnectionId>,
    /// Every id ever connected (each was a socket, and a participant born with it).
    ids: BTreeSet<ConnectionId>,
    /// Each socket's idea of the other members of its participant's room, from its frames
    /// alone.
    views: HashMap<ConnectionId, BTreeSet<ConnectionId>>,
    /// When each room was last probed for ghosts, as a join found it full.
    probed: HashMap<RoomId, SystemTime>,
    /// In this step: the sockets the core should probe, the suspensions the hook should see,
    /// and the participants found gone by a probe (with resume off: removed, and their rooms
    /// told) with their rooms.
    probes: Vec<ConnectionId>,
    suspensions: Vec<Suspension>,
    ghosts: BTreeMap<ConnectionId, RoomId>,
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

fn resume_config(on: bool) -> Config {
    Config {
        max_room_size: CAP,
        resume: on.then(|| Resume {
            key: ResumeKey::new(KEY),
            grace: GRACE,
        }),
        ..Config::default()
    }
}

impl Run {
    fn new(resume: bool) -> Self {
        Self {
            world: World::with_config(resume_config(resume)),
            resume,
            clock: now(),
            slots: (0..SLOTS)
                .map(|s| Slot {
                    socket: conn_id(s, 0),
                    generation: 0,
                    open: false,
                    dropped: false,
                    stale: Vec::new(),
                    me: None,
                })
                .collect(),
            model: Model::default(),
            gone: BTreeSet::new(),
            ids: BTreeSet::new(),
            views: HashMap::new(),
            probed: HashMap::new(),
            probes: Vec::new(),
            suspensions: Vec::new(),
            ghosts: BTreeMap::new(),
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
        let Driven {
            actor,
            who,
            expect,
            outcome,
        } = self.drive(op)?;
        if let Some(expected) = expect.outcome() {
            let got = outcome.expect("a message step reports an outcome");
            prop_assert_eq!((got.route, got.error), expected, "outcome of {:?}", op);
            prop_assert_eq!(got.replaced.as_ref(), expect.replaced(), "replaced socket");
        }
        let after_op = self.model.clone();
        let pushes = self.world.pusher().take();
        let gone: BTreeSet<ConnectionId> = pushes
            .iter()
            .filter(|p| p.fate == Fate::Gone)
            .map(|p| p.to.clone())
            .collect();
        // A gone socket takes whoever is attached to it, and no one else: with resume on it
        // is suspended (removed if in no room), and nobody is told; with resume off it is
        // removed, and its room told. (A reply to a socket a participant is suspended from
        // reports the same drop again: nothing changes, but the hook hears of it again.)
        let mut gone_participants = BTreeSet::new();
        for socket in &gone {
            if let Some(p) = after_op.holder(socket) {
                if self.resume {
                    let suspension = self.model.suspend(&p, self.clock + GRACE);
                    self.suspensions.extend(suspension);
                } else {
                    self.model.participants.remove(&p);
                }
                gone_participants.insert(p);
            }
        }
        let mut probed = self.world.pusher().take_probes();
        probed.sort();
        let mut expected = std::mem::take(&mut self.probes);
        expected.sort();
        prop_assert_eq!(probed, expected, "sockets probed");
        let key = |s: &Suspension| (s.id.clone(), s.until);
        let mut seen = self.world.take_suspensions();
        seen.sort_by_key(key);
        let mut expected = std::mem::take(&mut self.suspensions);
        expected.sort_by_key(key);
        prop_assert_eq!(seen, expected, "suspensions the hook saw");
        let ghosts = std::mem::take(&mut self.ghosts);
        let step = Step {
            actor: &actor,
            who: who.as_ref(),
            resume: self.resume,
            expect: &expect,
            before: &before,
            after_op: &after_op,
            after: &self.model,
            gone: &gone_participants,
            ghosts: &ghosts,
            pushes: &pushes,
        };
        for push in &pushes {
            step.check_push(push)
                .map_err(|e| context(e, &format!("push {push:?}")))?;
        }
        step.check_complete()
            .map_err(|e| context(e, &format!("pushes {pushes:#?}")))?;
        self.update_clients(&pushes);
        self.check_store()?;
        self.check_due()?;
        self.check_views()
    }

    /// Every socket the gateway holds open: each open slot's current one, and the abandoned
    /// ones, with their slots.
    fn open_sockets(&self) -> Vec<(usize, ConnectionId)> {
        let mut sockets = Vec::new();
        for (s, slot) in self.slots.iter().enumerate() {
            if slot.open {
                sockets.push((s, slot.socket.clone()));
            }
            sockets.extend(slot.stale.iter().map(|c| (s, c.clone())));
        }
        sockets
    }

    /// The socket a closing or dropping step applies to, if any.
    fn choose_socket(&self, op: &Op) -> Option<(usize, ConnectionId)> {
        let open = self.open_sockets();
        let candidates: Vec<(usize, ConnectionId)> = match *op {
            Op::Disconnect(_) => {
                let gone: Vec<_> = open
                    .iter()
                    .filter(|(_, c)| self.gone.contains(c))
                    .cloned()
                    .collect();
                if gone.is_empty() {
                    let closed = self.slots.iter().enumerate().filter(|(_, s)| !s.open);
                    open.into_iter()
                        .chain(closed.map(|(s, slot)| (s, slot.socket.clone())))
                        .collect()
                } else {
                    gone
                }
            }
            Op::Suspend(pick) => {
                let gone: Vec<_> = open
                    .iter()
                    .filter(|(_, c)| self.gone.contains(c))
                    .cloned()
                    .collect();
                if pick % 2 == 1 && !gone.is_empty() {
                    gone
                } else {
                    open
                }
            }
            Op::Late(..) => open
                .into_iter()
                .filter(|(s, c)| c != &self.slots[*s].socket)
                .collect(),
            _ => unreachable!("not a socket step"),
        };
        let (Op::Disconnect(pick) | Op::Suspend(pick) | Op::Late(pick, _)) = *op else {
            unreachable!()
        };
        candidates.get(pick % candidates.len().max(1)).cloned()
    }

    /// The slot a connect, a frame or a resume applies to, if any can take it.
    fn choose_slot(&self, op: &Op) -> Option<usize> {
        let (Op::Connect(pick)
        | Op::Join(pick, _)
        | Op::Leave(pick)
        | Op::SendToOwnRoom(pick)
        | Op::SendToRoom(pick, _)
        | Op::Signal(pick, _)
        | Op::Ping(pick)
        | Op::Garbage(pick, _)
        | Op::Gone(pick)
        | Op::Resume(pick, _)) = *op
        else {
            unreachable!("not a slot step")
        };
        let in_room = |s: &Slot| {
            s.open
                && self
                    .model
                    .attached(&s.socket)
                    .is_some_and(|p| self.model.room(&p).is_some())
        };
        let any_member = self.slots.iter().any(in_room);
        // An attached member of a full room, whose socket is not gone yet.
        let in_full_room = |s: &Slot| {
            in_room(s)
                && !self.gone.contains(&s.socket)
                && self
                    .model
                    .attached(&s.socket)
                    .and_then(|p| self.model.room(&p))
                    .is_some_and(|r| self.model.members(&r).len() >= CAP)
        };
        let ghost_maker = pick % 2 == 1 && self.slots.iter().any(in_full_room);
        // Where a client would resume from a new socket: after a drop, else after a close.
        let comeback = |s: &Slot| {
            if self.slots.iter().any(|s| s.dropped && s.me.is_some()) {
                s.dropped
            } else if self.slots.iter().any(|s| !s.open && s.me.is_some()) {
                !s.open
            } else {
                true
            }
        };
        let candidates: Vec<usize> = (0..SLOTS)
            .filter(|&s| {
                let slot = &self.slots[s];
                match op {
                    Op::Connect(_) => !slot.open,
                    // Mostly from members, so most of them get through.
                    Op::Signal(..) | Op::SendToOwnRoom(_) => {
                        slot.open && (!any_member || in_room(slot))
                    }
                    Op::Resume(_, Via::SameSocket | Via::Takeover) => {
                        slot.open && slot.me.is_some()
                    }
                    Op::Resume(_, Via::NewSocket | Via::Forged) => {
                        slot.me.is_some() && comeback(slot)
                    }
                    Op::Gone(_) if ghost_maker => in_full_room(slot),
                    _ => slot.open,
                }
            })
            .collect();
        candidates.get(pick % candidates.len().max(1)).copied()
    }

    /// Calls the core for `op`, updating the model as the op itself should (not yet the
    /// removal of participants whose sockets are found gone).
    fn drive(&mut self, op: &Op) -> Result<Driven, TestCaseError> {
        let nobody = self.slots[0].socket.clone();
        Ok(match op {
            Op::Disconnect(_) | Op::Suspend(_) | Op::Late(..) => {
                let Some((s, socket)) = self.choose_socket(op) else {
                    return Ok(Driven::quiet(nobody, Expect::Nothing));
                };
                if let Op::Late(_, frame) = op {
                    self.late(s, socket, frame)
                } else {
                    let slot = &mut self.slots[s];
                    if slot.socket == socket {
                        // The client knows how its socket ended (a second cleanup aside).
                        if slot.open {
                            slot.dropped = matches!(op, Op::Suspend(_));
                        }
                        slot.open = false;
                    } else {
                        slot.stale.retain(|c| c != &socket);
                    }
                    if matches!(op, Op::Suspend(_)) {
                        self.suspend(socket)?
                    } else {
                        self.disconnect(socket)
                    }
                }
            }
            Op::Expire(k) => self.expire(*k),
            Op::Sweep => self.sweep()?,
            Op::Tick(advance) => {
                self.tick(*advance);
                Driven::quiet(nobody, Expect::Nothing)
            }
            _ => {
                let Some(s) = self.choose_slot(op) else {
                    return Ok(Driven::quiet(nobody, Expect::Nothing));
                };
                match op {
                    Op::Connect(_) => {
                        let socket = self.connect(s);
                        Driven::quiet(socket, Expect::Connect)
                    }
                    Op::Gone(_) => {
                        let socket = self.slots[s].socket.clone();
                        self.trace.push(format!("{socket} is gone"));
                        self.world.pusher().mark_gone(&socket);
                        self.gone.insert(socket.clone());
                        Driven::quiet(socket, Expect::Nothing)
                    }
                    Op::Resume(_, via) => self.resume(s, *via),
                    _ => {
                        let socket = self.slots[s].socket.clone();
                        self.send(socket, op)
                    }
                }
            }
        })
    }

    /// A new socket for slot `s`, connected; the slot's open socket, if any, is abandoned.
    fn connect(&mut self, s: usize) -> ConnectionId {
        let slot = &mut self.slots[s];
        if slot.open {
            slot.stale.push(slot.socket.clone());
        }
        slot.generation += 1;
        slot.socket = conn_id(s, slot.generation);
        slot.open = true;
        slot.dropped = false;
        let socket = slot.socket.clone();
        self.trace.push(format!("{socket} connects"));
        ready(self.world.sig.connect(&socket, self.clock)).unwrap();
        self.model.participants.insert(
            socket.clone(),
            Participant {
                room: None,
                socket: socket.clone(),
                until: None,
            },
        );
        self.ids.insert(socket.clone());
        socket
    }

    /// A clean close: takes the participant attached to the socket or suspended from it.
    fn disconnect(&mut self, socket: ConnectionId) -> Driven {
        self.trace
            .push(format!("{socket} disconnects at {}", self.time()));
        let who = self.model.holder(&socket);
        let left = who.as_ref().and_then(|p| self.model.room(p));
        if let Some(p) = &who {
            self.model.participants.remove(p);
        }
        ready(self.world.sig.disconnect(&socket, self.clock)).unwrap();
        Driven {
            actor: socket,
            who,
            expect: Expect::Disconnect { left },
            outcome: None,
        }
    }

    /// A drop: with resume on, the participant attached to the socket is suspended (one in
    /// no room is removed), and one already suspended from it is left as it is; with resume
    /// off, this is a clean close.
    fn suspend(&mut self, socket: ConnectionId) -> Result<Driven, TestCaseError> {
        self.trace
            .push(format!("{socket} drops at {}", self.time()));
        let who = self.model.holder(&socket);
        let left = who.as_ref().and_then(|p| self.model.room(p));
        let expected = match &who {
            Some(p) if self.resume => self.model.suspend(p, self.clock + GRACE),
            Some(p) => {
                self.model.participants.remove(p);
                None
            }
            None => None,
        };
        self.suspensions.extend(expected.clone());
        let got = ready(self.world.sig.suspend(&socket, self.clock)).unwrap();
        prop_assert_eq!(got, expected, "suspend({})", socket);
        let expect = if self.resume {
            Expect::Suspend
        } else {
            Expect::Disconnect { left }
        };
        Ok(Driven {
            actor: socket,
            who,
            expect,
            outcome: None,
        })
    }

    /// `expire` for the `k`th suspended participant, or for slot `k`'s if none is.
    fn expire(&mut self, k: usize) -> Driven {
        let suspended = self.model.suspended();
        let p = if suspended.is_empty() {
            let slot = &self.slots[k % SLOTS];
            slot.me
                .as_ref()
                .map_or_else(|| slot.socket.clone(), |(p, _)| p.clone())
        } else {
            suspended[k % suspended.len()].0.clone()
        };
        self.trace.push(format!("expire {p} at {}", self.time()));
        let due = self
            .model
            .participants
            .get(&p)
            .and_then(|q| q.until)
            .is_some_and(|until| until <= self.clock);
        let left = if due {
            self.model.participants.remove(&p).unwrap().room
        } else {
            None
        };
        ready(self.world.sig.expire(&p, self.clock)).unwrap();
        Driven {
            actor: p.clone(),
            who: Some(p),
            expect: Expect::Expire { left },
            outcome: None,
        }
    }

    /// The sweep: every suspended participant whose grace is over is removed, and its room
    /// told. (`MemoryStore` never lists members to check, so nothing is probed.)
    fn sweep(&mut self) -> Result<Driven, TestCaseError> {
        let clock = self.clock;
        let due: Vec<ConnectionId> = self
            .model
            .suspended()
            .into_iter()
            .filter(|(_, until)| *until <= clock)
            .map(|(p, _)| p)
            .collect();
        let left: Vec<(ConnectionId, RoomId)> = due
            .iter()
            .map(|p| {
                let q = self.model.participants.remove(p).unwrap();
                (p.clone(), q.room.unwrap())
            })
            .collect();
        let swept = ready(self.world.sig.sweep(clock, CHECK_EVERY)).unwrap();
        self.trace
            .push(format!("sweep at {} -> {swept:?}", self.time()));
        let expected = Swept {
            expired: left.len(),
            probed: 0,
            gone: 0,
        };
        prop_assert_eq!(swept, expected, "swept");
        Ok(Driven::quiet(
            self.slots[0].socket.clone(),
            Expect::Sweep { left },
        ))
    }

    fn tick(&mut self, advance: Advance) {
        match advance {
            Advance::By(d) => self.clock += d,
            Advance::ToDeadline(k, offset) => {
                let deadlines = self.model.suspended();
                if let Some((_, until)) = deadlines.get(k % deadlines.len().max(1)) {
                    let millis = Duration::from_millis(1);
                    let at = match offset {
                        ..0 => *until - millis,
                        0 => *until,
                        1.. => *until + millis,
                    };
                    self.clock = self.clock.max(at);
                }
            }
        }
        self.trace.push(format!("the clock reads {}", self.time()));
    }

    /// The model clock, relative to the start.
    fn time(&self) -> String {
        let t = self.clock.duration_since(now()).unwrap();
        format!("t+{}.{:03}s", t.as_secs(), t.subsec_millis())
    }

    /// Slot `s` sends `resume` with its last token.
    fn resume(&mut self, s: usize, via: Via) -> Driven {
        let (p, token) = self.slots[s]
            .me
            .clone()
            .expect("chosen among slots told who they are");
        let (token, genuine) = match (via, token) {
            (Via::Forged, _) => (ResumeKey::new(FORGER_KEY).token(&p), false),
            (_, Some(token)) => (token, true),
            // With resume off, joined carries no token; the client makes one up.
            (_, None) => (format!("{p}.AAAAAAAAAAAAAAAAAAAAAA"), false),
        };
        let socket = match via {
            Via::SameSocket => self.slots[s].socket.clone(),
            Via::NewSocket | Via::Takeover | Via::Forged => self.connect(s),
        };
        self.send_resume(socket, &token, genuine.then_some(p))
    }

    /// `resume` with `token` (naming `genuine` if it is one) from `socket`.
    fn send_resume(
        &mut self,
        socket: ConnectionId,
        token: &str,
        genuine: Option<ConnectionId>,
    ) -> Driven {
        let m = &mut self.model;
        let clock = self.clock;
        // The socket must be fresh: its participant in no room.
        let placeholder = m.attached(&socket).filter(|a| m.room(a).is_none());
        let target = genuine.filter(|p| {
            self.resume
                && p != &socket
                && m.participants
                    .get(p)
                    .is_some_and(|q| q.room.is_some() && q.until.is_none_or(|until| clock < until))
        });
        let (who, result) = match (placeholder, target) {
            (Some(a), Some(p)) => {
                m.participants.remove(&a);
                let q = m.participants.get_mut(&p).unwrap();
                let old = std::mem::replace(&mut q.socket, socket.clone());
                // Only a socket still attached is reported replaced; the one a suspended
                // participant dropped from is just forgotten.
                let replaced = q.until.take().is_none().then_some(old);
                let room = q.room.clone().unwrap();
                (Some(p), Some((room, replaced)))
            }
            _ => (m.attached(&socket), None),
        };
        let text = serde_json::json!({"action": "resume", "token": token}).to_string();
        let outcome = ready(self.world.sig.message(&socket, &text, self.clock));
        self.trace.push(format!(
            "{socket} resumes with {token} at {} -> {:?}",
            self.time(),
            (outcome.route, outcome.error, &outcome.replaced)
        ));
        Driven {
            actor: socket,
            who,
            expect: Expect::Resume { result },
            outcome: Some(outcome),
        }
    }

    /// A late frame from `socket`, which slot `s` abandoned.
    fn late(&mut self, s: usize, socket: ConnectionId, frame: &LateFrame) -> Driven {
        self.trace.push(format!("late from {socket}:"));
        let op = match frame {
            LateFrame::Join(r) => Op::Join(s, *r),
            LateFrame::Leave => Op::Leave(s),
            LateFrame::Send => Op::SendToOwnRoom(s),
            LateFrame::Signal(t) => Op::Signal(s, t.clone()),
            LateFrame::Ping => Op::Ping(s),
            LateFrame::Resume => {
                let (p, token) = self.slots[s].me.clone().unwrap_or_else(|| {
                    let p = self.slots[s].socket.clone();
                    (p, None)
                });
                return match token {
                    Some(token) => self.send_resume(socket, &token, Some(p)),
                    None => self.send_resume(socket, "nonsense", None),
                };
            }
        };
        self.send(socket, &op)
    }

    /// The frame for `op`, sent from `socket`.
    fn send(&mut self, socket: ConnectionId, op: &Op) -> Driven {
        let who = self.model.attached(&socket);
        let (text, expect) = self.frame(op, &socket, who.as_ref());
        let outcome = ready(self.world.sig.message(&socket, &text, self.clock));
        self.trace.push(format!(
            "{socket} sends {text} -> {:?}",
            (outcome.route, outcome.error)
        ));
        Driven {
            actor: socket,
            who,
            expect,
            outcome: Some(outcome),
        }
    }

    /// The frame `socket` (whose participant is `who`) sends for `op`, and what the model
    /// expects of it; the model is updated as the frame should change it.
    fn frame(
        &mut self,
        op: &Op,
        socket: &ConnectionId,
        who: Option<&ConnectionId>,
    ) -> (String, Expect) {
        let step = self.step;
        let own_room = who.and_then(|p| self.model.room(p));
        // The room a join names (decided before any ghost leaves it).
        let join_target = match *op {
            Op::Join(_, r) => self.join_target(r),
            _ => room(ROOMS[0]),
        };
        if matches!(op, Op::Join(..))
            && who.is_some()
            && own_room.as_ref() != Some(&join_target)
            && self.model.members(&join_target).len() >= CAP
        {
            self.clear_ghosts(&join_target);
        }
        let m = &mut self.model;
        match *op {
            Op::Join(..) => {
                let target = join_target;
                let text = format!(r#"{{"action":"joinRoom","roomId":"{target}"}}"#);
                let Some(who) = who else {
                    return (text, Expect::JoinWhileRemoved);
                };
                let result = if own_room.as_ref() == Some(&target) {
                    Ok(true)
                } else if m.members(&target).len() >= CAP {
                    Err(ErrorCode::RoomFull)
                } else {
                    m.set_room(who, Some(target.clone()));
                    Ok(false)
                };
                let left = own_room.filter(|_| result == Ok(false));
                let expect = Expect::Join {
                    room: target,
                    result,
                    left,
                };
                (text, expect)
            }
            Op::Leave(_) => {
                if let Some(who) = who
                    && own_room.is_some()
                {
                    m.set_room(who, None);
                }
                (
                    r#"{"action":"leaveRoom"}"#.to_owned(),
                    Expect::Leave { left: own_room },
                )
            }
            Op::SendToOwnRoom(_) | Op::SendToRoom(..) => {
                let target = match *op {
                    Op::SendToRoom(_, r) => room(ROOMS[r]),
                    _ => own_room.clone().unwrap_or_else(|| room(ROOMS[0])),
                };
                let message = format!("message {step} \"quoted\"");
                let ok = own_room.as_ref() == Some(&target);
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
            Op::Signal(_, ref target) => self.signal(socket, who, target),
            Op::Ping(_) => (r#"{"action":"ping"}"#.to_owned(), Expect::Ping),
            Op::Garbage(_, g) => (GARBAGE[g].0.to_owned(), Expect::Garbage(GARBAGE[g].1)),
            _ => unreachable!("not a frame"),
        }
    }

    /// The room join pick `r` names.
    fn join_target(&self, r: usize) -> RoomId {
        ROOMS
            .get(r)
            .or_else(|| {
                ROOMS
                    .iter()
                    .find(|name| self.model.members(&room(name)).len() >= CAP)
            })
            .map_or_else(|| room(ROOMS[0]), |name| room(name))
    }

    /// A join found `room` full: unless it was probed less than 5 s ago, every member's
    /// socket is probed, and those found gone are suspended (resume on) or removed, their
    /// room told and the seat freed for the join (resume off).
    fn clear_ghosts(&mut self, room: &RoomId) {
        let clock = self.clock;
        let recent = self.probed.get(room).is_some_and(|at| {
            clock
                .duration_since(*at)
                .is_ok_and(|ago| ago < PROBE_FULL_ROOM_EVERY)
        });
        if recent {
            return;
        }
        self.probed.insert(room.clone(), clock);
        for p in self.model.members(room) {
            let Some(socket) = self.model.socket_of(&p) else {
                continue;
            };
            self.probes.push(socket.clone());
            if !self.gone.contains(&socket) {
                continue;
            }
            self.trace.push(format!("ghost {p} found in {room}"));
            if self.resume {
                let suspension = self.model.suspend(&p, clock + GRACE);
                self.suspensions.extend(suspension);
            } else {
                self.model.participants.remove(&p);
                self.ghosts.insert(p, room.clone());
            }
        }
    }

    /// A `signal` frame from `socket` (whose participant is `who`), and what the model
    /// expects of it.
    fn signal(
        &self,
        socket: &ConnectionId,
        who: Option<&ConnectionId>,
        target: &Target,
    ) -> (String, Expect) {
        let m = &self.model;
        let own_room = who.and_then(|p| m.room(p));
        let mates: Vec<ConnectionId> = match (who, &own_room) {
            (Some(p), Some(r)) => m.others(r, p).into_iter().collect(),
            _ => Vec::new(),
        };
        let to = match *target {
            Target::RoomMate(k) if !mates.is_empty() => mates[k % mates.len()].clone(),
            Target::RoomMate(k) | Target::Slot(k) => {
                let slot = &self.slots[k % SLOTS];
                match &slot.me {
                    Some((p, _)) if k >= SLOTS => p.clone(),
                    _ => slot.socket.clone(),
                }
            }
            Target::Stranger => ConnectionId::parse("stranger").unwrap(),
        };
        let data = format!(r#"{{"step": {}, "sdp": "v=0\r\n"}}"#, self.step);
        let result = if Some(&to) == who || &to == socket {
            Some(ErrorCode::SignalToSelf)
        } else {
            match own_room {
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

    /// Replays the delivered frames into each socket's view of its room, and tells each
    /// client who it is from the `joined` its current socket got.
    fn update_clients(&mut self, pushes: &[Push]) {
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
                    let me = ConnectionId::parse(str_field(&v, "connectionId")).unwrap();
                    let token = v["resumeToken"].as_str().map(str::to_owned);
                    if let Some(slot) = self.slots.iter_mut().find(|s| s.socket == push.to) {
                        slot.me = Some((me, token));
                    }
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

    /// The store holds exactly the model's participants, sockets and rooms, within the cap.
    fn check_store(&self) -> Result<(), TestCaseError> {
        let store = self.world.store();
        let stats = store.stats();
        let m = &self.model;
        let rooms: BTreeSet<RoomId> = m
            .participants
            .values()
            .filter_map(|q| q.room.clone())
            .collect();
        prop_assert_eq!(stats.connections, m.participants.len(), "participants");
        prop_assert_eq!(stats.suspended, m.suspended().len(), "suspended");
        prop_assert_eq!(stats.rooms, rooms.len(), "rooms");
        prop_assert_eq!(
            stats.members,
            m.participants.values().filter(|q| q.room.is_some()).count(),
            "members"
        );
        for name in ROOMS {
            let r = room(name);
            let mut listed = ready(store.members(&r, self.clock)).unwrap();
            prop_assert!(listed.len() <= CAP, "{} over the cap: {:?}", name, listed);
            listed.sort_by(|a, b| a.id.cmp(&b.id));
            let expected: Vec<Member> = m
                .members(&r)
                .into_iter()
                .map(|id| Member {
                    socket: m.socket_of(&id),
                    id,
                })
                .collect();
            prop_assert_eq!(listed, expected, "members of {}", name);
        }
        // Every id ever connected, both as a participant and as a socket.
        for id in &self.ids {
            let got = ready(store.participant(id, self.clock)).unwrap();
            let expected = m.participants.get(id).map(|q| {
                let member = Member {
                    id: id.clone(),
                    socket: m.socket_of(id),
                };
                (q.room.clone(), member)
            });
            prop_assert_eq!(got, expected, "participant {}", id);
            let got = ready(store.lookup(id, self.clock)).unwrap();
            let expected = m.attached(id).map(|p| Presence {
                room: m.room(&p),
                id: p,
            });
            prop_assert_eq!(got, expected, "socket {}", id);
        }
        Ok(())
    }

    /// The store's sweep work is the model's: the suspended participants whose grace is
    /// over, and never a member to check.
    fn check_due(&self) -> Result<(), TestCaseError> {
        let due = ready(self.world.store().due(self.clock)).unwrap();
        let expired = self
            .model
            .suspended()
            .into_iter()
            .filter(|(_, until)| *until <= self.clock)
            .map(|(p, _)| p)
            .collect();
        prop_assert_eq!(
            due,
            Due {
                expired,
                unchecked: Vec::new()
            },
            "due"
        );
        Ok(())
    }

    /// Every attached member's view, from its socket's frames, is the room's other members.
    /// (A suspended one misses frames; the `joined` of its resume starts it afresh.)
    fn check_views(&self) -> Result<(), TestCaseError> {
        for (p, q) in &self.model.participants {
            let (Some(r), Some(socket)) = (&q.room, self.model.socket_of(p)) else {
                continue;
            };
            let socket = &socket;
            let view = self.views.get(socket).cloned().unwrap_or_default();
            prop_assert_eq!(
                view,
                self.model.others(r, p),
                "{} (socket {}) in {} sees the wrong room",
                p,
                socket,
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
    /// The socket that acted (for `Expire`, the participant).
    actor: &'a ConnectionId,
    /// The participant the step is about.
    who: Option<&'a ConnectionId>,
    /// Resume is on.
    resume: bool,
    expect: &'a Expect,
    /// The model before the step.
    before: &'a Model,
    /// After the step's own change, before participants found gone were dropped.
    after_op: &'a Model,
    /// After the step.
    after: &'a Model,
    /// Participants whose sockets answered a push `Gone` in this step (with resume off they
    /// left, and their rooms are told; with resume on they are suspended, and no one is).
    gone: &'a BTreeSet<ConnectionId>,
    /// With resume off: members of a full room whose sockets answered a probe `Gone`,
    /// removed (before the join they made room for), and their rooms.
    ghosts: &'a BTreeMap<ConnectionId, RoomId>,
    pushes: &'a [Push],
}

impl Step<'_> {
    /// A push is allowed only if the step explains it. Frames about a room go only to the
    /// sockets of its members (never to a suspended one, which has none); replies go only to
    /// the acting socket.
    fn check_push(&self, p: &Push) -> Result<(), TestCaseError> {
        let x = &p.to;
        let text = &*p.frame.text;
        let reaches =
            |m: &Model, members: &BTreeSet<ConnectionId>| m.sockets_of(members).contains(x);
        match p.frame.kind {
            Kind::Joined => self.check_joined(x, text)?,
            Kind::NewParticipant => {
                let (
                    Expect::Join {
                        room,
                        result: Ok(false),
                        ..
                    },
                    Some(who),
                ) = (self.expect, self.who)
                else {
                    return Err(fail("newParticipant without a fresh join"));
                };
                prop_assert_eq!(
                    &id_field(&parse_json(text)),
                    who,
                    "newParticipant names the joiner"
                );
                prop_assert!(
                    reaches(self.after_op, &self.after_op.others(room, who)),
                    "newParticipant to {} outside {}",
                    x,
                    room
                );
            }
            Kind::RoomMessage => {
                let (
                    Expect::Send {
                        room,
                        text: sent,
                        ok: true,
                    },
                    Some(who),
                ) = (self.expect, self.who)
                else {
                    return Err(fail("room message without a successful send"));
                };
                prop_assert_eq!(text, sent.as_str(), "relayed verbatim");
                prop_assert!(
                    self.before.room(who).as_ref() == Some(room),
                    "sender outside the room"
                );
                prop_assert!(
                    reaches(self.after_op, &self.after_op.others(room, who)),
                    "room message to {} outside {}",
                    x,
                    room
                );
            }
            Kind::Signal => self.check_signal(x, text)?,
            Kind::ParticipantLeft => self.check_left(x, text)?,
            Kind::Pong => {
                prop_assert!(matches!(self.expect, Expect::Ping), "unasked pong");
                prop_assert_eq!(x, self.actor, "pong to another socket");
            }
            Kind::Error => {
                let code = self.expect.error();
                prop_assert!(code.is_some(), "error frame for an accepted step");
                prop_assert_eq!(x, self.actor, "error to another socket");
                let v = parse_json(text);
                prop_assert_eq!(str_field(&v, "code"), code.unwrap().as_str());
            }
        }
        Ok(())
    }

    /// A signal goes to its addressee's socket alone, stamped with the sender.
    fn check_signal(&self, x: &ConnectionId, text: &str) -> Result<(), TestCaseError> {
        let (
            Expect::Signal {
                to,
                data,
                result: None,
            },
            Some(who),
        ) = (self.expect, self.who)
        else {
            return Err(fail("signal without a successful signal"));
        };
        prop_assert_eq!(
            Some(x.clone()),
            self.after_op.socket_of(to),
            "signal to someone else's socket"
        );
        let expected = format!(r#"{{"type":"signal","from":"{who}","data":{data}}}"#);
        prop_assert_eq!(text, expected.as_str(), "signal frame");
        prop_assert!(self.after_op.room(who).is_some());
        prop_assert_eq!(
            self.after_op.room(who),
            self.after_op.room(to),
            "signal across rooms"
        );
        Ok(())
    }

    /// `participantLeft` goes only to the room of the step's participant, if it left one, of
    /// a participant the sweep expired, or (resume off) of a participant whose socket was
    /// found gone.
    fn check_left(&self, x: &ConnectionId, text: &str) -> Result<(), TestCaseError> {
        let reaches =
            |members: &BTreeSet<ConnectionId>| self.after_op.sockets_of(members).contains(x);
        let leaver = id_field(&parse_json(text));
        let by_actor = Some(&leaver) == self.who
            && self
                .expect
                .left()
                .is_some_and(|l| reaches(&self.after_op.members(l)));
        let by_sweep = match self.expect {
            Expect::Sweep { left } => left
                .iter()
                .any(|(p, l)| p == &leaver && reaches(&self.after_op.members(l))),
            _ => false,
        };
        let by_gone = !self.resume
            && self.gone.contains(&leaver)
            && self
                .after_op
                .room(&leaver)
                .is_some_and(|q| reaches(&self.after_op.others(&q, &leaver)));
        // Told before the join that freed the seat: the room as it was.
        let by_ghost = self.ghosts.get(&leaver).is_some_and(|q| {
            self.before
                .sockets_of(&self.before.others(q, &leaver))
                .contains(x)
        });
        prop_assert!(
            by_actor || by_sweep || by_gone || by_ghost,
            "participantLeft({}) to {}, who was not in its room",
            leaver,
            x
        );
        Ok(())
    }

    /// `joined` goes to the acting socket alone, names its participant and lists the room's
    /// other members; after a resume it is marked `resumed`.
    fn check_joined(&self, to: &ConnectionId, text: &str) -> Result<(), TestCaseError> {
        let (room, resumed) = match self.expect {
            Expect::Join {
                room,
                result: Ok(_),
                ..
            } => (room, false),
            Expect::Resume {
                result: Some((room, _)),
            } => (room, true),
            _ => return Err(fail("joined without a successful join or resume")),
        };
        let who = self.who.unwrap();
        prop_assert_eq!(to, self.actor, "joined to another socket");
        let v = parse_json(text);
        prop_assert_eq!(str_field(&v, "roomId"), room.as_str());
        prop_assert_eq!(str_field(&v, "connectionId"), who.as_str());
        prop_assert_eq!(&v["resumed"], &Value::Bool(resumed), "resumed");
        let token = v.get("resumeToken").map(|t| t.as_str().unwrap());
        let expected = self.resume.then(|| ResumeKey::new(KEY).token(who));
        prop_assert_eq!(token, expected.as_deref(), "resumeToken");
        let listed: Vec<&str> = v["participants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        let set: BTreeSet<&str> = listed.iter().copied().collect();
        prop_assert_eq!(set.len(), listed.len(), "duplicate participants");
        let expected = self.after_op.others(room, who);
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

    /// Everyone still in a room someone left in the step heard of it: the step's own
    /// participant, those the sweep expired, (with resume off) those found gone, and the
    /// ghosts of a full room (except by the joiner they made room for, who never saw them).
    fn check_departures_told(&self) -> Result<(), TestCaseError> {
        let mut departures: Vec<(&ConnectionId, RoomId, &str)> = Vec::new();
        if let Some(l) = self.expect.left() {
            departures.push((self.who.unwrap(), l.clone(), "left"));
        }
        if let Expect::Sweep { left } = self.expect {
            departures.extend(left.iter().map(|(p, l)| (p, l.clone(), "expired")));
        }
        // With resume on, gone is not left: no one is told.
        for g in self.gone.iter().filter(|_| !self.resume) {
            departures.extend(self.after_op.room(g).map(|q| (g, q, "gone")));
        }
        departures.extend(self.ghosts.iter().map(|(g, q)| (g, q.clone(), "ghost")));
        let joiner = self.who.and_then(|p| self.after.socket_of(p));
        for (p, r, why) in departures {
            for x in self.after.sockets_of(&self.after.members(&r)) {
                if why == "ghost" && Some(&x) == joiner.as_ref() {
                    continue;
                }
                prop_assert!(
                    self.pushed(&x, Kind::ParticipantLeft, Some(p)),
                    "{} not told that {} ({}) left {}",
                    x,
                    p,
                    why,
                    r
                );
            }
        }
        Ok(())
    }

    /// Everyone who should have heard of the step did (those still connected, at least),
    /// and steps that concern no one else are silent.
    fn check_complete(&self) -> Result<(), TestCaseError> {
        // The attached sockets of a room's members after the step.
        let survivors = |r: &RoomId| self.after.sockets_of(&self.after.members(r));
        self.check_departures_told()?;
        if let Some(code) = self.expect.error() {
            let errors: Vec<&Push> = self
                .pushes
                .iter()
                .filter(|p| p.frame.kind == Kind::Error)
                .collect();
            prop_assert_eq!(errors.len(), 1, "one error frame for {:?}", code);
            prop_assert_eq!(&errors[0].to, self.actor);
        }
        match self.expect {
            Expect::Nothing
            | Expect::Connect
            | Expect::Suspend
            | Expect::JoinWhileRemoved
            | Expect::Disconnect { left: None }
            | Expect::Expire { left: None } => {
                prop_assert!(self.pushes.is_empty(), "a step that concerns no one pushed");
            }
            Expect::Sweep { left } if left.is_empty() => {
                prop_assert!(self.pushes.is_empty(), "a step that concerns no one pushed");
            }
            // The resumer's own `joined` or `resumeFailed`, and nothing to anyone else (unless
            // that reply found its socket gone: then its participant left, as checked above).
            Expect::Resume { .. } if self.who.is_none_or(|p| !self.gone.contains(p)) => {
                prop_assert_eq!(self.pushes.len(), 1, "resume pushes");
            }
            Expect::Join {
                room,
                result: Ok(already),
                ..
            } => {
                prop_assert_eq!(self.count(Kind::Joined), 1, "one joined");
                let who = self.who.unwrap();
                // A joiner found gone need not be announced (it is gone again).
                if !already && self.after.room(who).is_some() {
                    for x in survivors(room) {
                        if Some(&x) != self.after.socket_of(who).as_ref() {
                            prop_assert!(
                                self.pushed(&x, Kind::NewParticipant, Some(who)),
                                "{} not told that {} joined",
                                x,
                                who
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
                let own = self.who.and_then(|p| self.after.socket_of(p));
                for x in survivors(room) {
                    if Some(&x) != own.as_ref() {
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
                // A suspended addressee misses it, silently.
                let socket = self.after_op.socket_of(to);
                prop_assert_eq!(self.count(Kind::Signal), usize::from(socket.is_some()));
                if let Some(socket) = socket {
                    prop_assert!(self.pushed(&socket, Kind::Signal, None));
                }
            }
            Expect::Ping => prop_assert_eq!(self.count(Kind::Pong), 1, "one pong"),
            _ => {}
        }
        Ok(())
    }
}

fn run(resume: bool, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut run = Run::new(resume);
    // Everyone starts connected; later steps close, drop, reopen and resume slots.
    for _ in 0..SLOTS {
        run.apply(&Op::Connect(0))?;
    }
    for op in ops {
        run.apply(op)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn rooms_stay_consistent_under_any_sequence(ops in ops()) {
        run(true, &ops)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn with_resume_off_every_drop_is_a_departure(ops in ops()) {
        run(false, &ops)?;
    }
}
