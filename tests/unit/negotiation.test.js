// web/js/negotiation.js against a fake RTCPeerConnection (fake-rtc.js): two sides wired
// through in-memory signalling the test delivers by hand, so that it decides what crosses
// what (glare). Run with `node --test tests/unit/` (scripts/test does).

import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';

import { addReceiveOnly, addTrackTransceiver, openDataChannel } from '../../web/js/boot.js';
import { Negotiation } from '../../web/js/negotiation.js';
import { FakePC, FakeTrack } from './fake-rtc.js';

/** @typedef {import('../../web/js/protocol.js').SignalData} SignalData */

/** Yield to the event loop once (timers of 0 ms, microtasks). */
const tick = () => new Promise((resolve) => setImmediate(resolve));

/** Every side a test made, closed after it (their timers would keep node running). */
/** @type {Array<{ neg: Negotiation, pc: FakePC }>} */
const made = [];
afterEach(() => {
  for (const s of made.splice(0)) {
    s.neg.close();
    s.pc.close();
  }
});

/**
 * One side: a fake connection, a Negotiation driving it (wired as peer.js wires it), and
 * the signals it sent, waiting in `outbox` until the test delivers them.
 * @param {string} id @param {string} otherId
 * @param {Partial<import('../../web/js/negotiation.js').NegotiationOptions> & { pc?: FakePC }} [opts]
 */
function side(id, otherId, opts = {}) {
  const pc = opts.pc ?? new FakePC();
  if (!opts.pc) openDataChannel(/** @type {any} */ (pc)); // as peer.js, before the negotiation
  /** @type {any[]} */
  const outbox = [];
  /** @type {string[]} what it sent, in order: offer, answer, candidate, requestOffer */
  const sent = [];
  /** @param {any} data */
  const send = (data) => {
    sent.push(data.description ? data.description.type : data.candidate ? 'candidate' : 'requestOffer');
    outbox.push(JSON.parse(JSON.stringify(data)));
  };
  const local = { stream: /** @type {any} */ ({}), audio: /** @type {any} */ (new FakeTrack('audio')),
    video: /** @type {any} */ (new FakeTrack('video')) };
  const neg = new Negotiation({
    pc: /** @type {any} */ (pc), polite: id < otherId, local, sendSignal: send, initiator: false, ...opts,
  });
  /** @type {string[]} */
  const problems = [];
  neg.on('problem', (words) => problems.push(words));
  /** @type {FakeTrack[]} */
  const remote = [];
  const seen = { negotiationNeeded: 0 };
  pc.onnegotiationneeded = () => {
    seen.negotiationNeeded += 1;
    neg.needed();
  };
  pc.onsignalingstatechange = () => neg.signalingChanged();
  pc.onicecandidate = ({ candidate }) => {
    if (candidate) send({ candidate: candidate.toJSON() });
  };
  pc.ontrack = ({ track }) => {
    remote.push(track);
    if (!track.muted) neg.hear(/** @type {any} */ (track));
    track.addEventListener('unmute', () => neg.hear(/** @type {any} */ (track)));
  };
  made.push({ neg, pc });
  return { id, pc, neg, outbox, sent, problems, remote, seen };
}

/** @typedef {ReturnType<typeof side>} Side */

/** Hand what `from` sent to `to`, in order, and wait until `to` has applied it. @param {Side} from @param {Side} to */
async function deliver(from, to) {
  for (const data of from.outbox.splice(0)) void to.neg.handleSignal(/** @type {SignalData} */ (data));
  await to.neg.chain;
}

/**
 * Deliver both ways until `done()` holds; fails after `timeoutMs`.
 * @param {Side} a @param {Side} b @param {() => boolean} done @param {string} what
 */
async function exchange(a, b, done, what, timeoutMs = 2_000) {
  const end = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > end) {
      throw new Error(`timeout: ${what} (${a.id}: ${a.neg.phase} ${a.pc.signalingState}, ${b.id}: ${b.neg.phase} ${b.pc.signalingState})`);
    }
    await deliver(a, b);
    await deliver(b, a);
    await tick();
  }
}

/** Wait for a condition of one side (its own timers, negotiationneeded). @param {() => boolean} done @param {string} what */
async function until(done, what, timeoutMs = 2_000) {
  const end = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > end) throw new Error(`timeout: ${what}`);
    await tick();
  }
}

/** Both sides stable and free, nothing left to deliver. @param {Side} a @param {Side} b */
const settled = (a, b) => () => [a, b].every((s) => s.pc.signalingState === 'stable' && s.neg.is('ready') &&
  s.outbox.length === 0 && !s.pc.negotiationNeeded());

/**
 * A connected pair as a join makes it: `b` joined later (initiator), `a` was there
 * (responder). `a` < `b`: `a` is the polite one unless `politeNewcomer`.
 */
async function joinedPair({ politeNewcomer = false } = {}) {
  const [older, newer] = politeNewcomer ? ['b', 'a'] : ['a', 'b'];
  const a = side(older, newer);
  const b = side(newer, older, { initiator: true });
  await exchange(a, b, settled(a, b), 'the first exchange');
  for (const s of [a, b]) for (const t of s.remote) t.unmute();
  return { a, b };
}

test('the first exchange: the later joiner offers once its media settled, the other answers on its own transceivers', async () => {
  const a = side('a', 'b');
  const b = side('b', 'a', { initiator: true, waitMedia: true });
  assert.equal(a.neg.phase, 'waitOffer');
  assert.equal(b.neg.phase, 'waitMedia');
  // Both data channels asked for a negotiation; neither may offer yet.
  await until(() => a.seen.negotiationNeeded > 0 && b.seen.negotiationNeeded > 0, 'negotiationneeded on both');
  await tick(); // an offer would be out by now (setLocalDescription settles in microtasks)
  assert.deepEqual([a.sent, b.sent], [[], []], 'no offer before the media settled');
  b.neg.mediaSettled();
  await exchange(a, b, settled(a, b), 'the first exchange');
  assert.deepEqual([a.pc.offers, b.pc.offers], [0, 1], 'one offer, from the later joiner');
  assert.deepEqual([a.pc.rollbacks, b.pc.rollbacks], [0, 0]);
  // The offer took a's addTrack transceivers over: no m-line more than the two kinds.
  assert.equal(a.pc.getTransceivers().length, 2);
  assert.deepEqual(a.pc.getTransceivers().map((t) => t.currentDirection), ['sendrecv', 'sendrecv']);
  assert.equal(a.neg.sending.video?.sender.track, a.neg.local.video, 'a sends its camera on the offered m-line');
  assert.deepEqual([a.remote.length, b.remote.length], [2, 2], 'each receives audio and video');
  assert.deepEqual([a.problems, b.problems], [[], []]);
});

test('a requestOffer makes an initiator still waiting for its media offer now', async () => {
  const a = side('a', 'b');
  const b = side('b', 'a', { initiator: true, waitMedia: true });
  void b.neg.handleSignal({ requestOffer: true });
  await exchange(a, b, settled(a, b), 'the exchange');
  assert.deepEqual([a.pc.offers, b.pc.offers], [0, 1]);
});

test('glare: both offer at once; the polite side rolls back and answers, the impolite side ignores its offer and candidates', async () => {
  const { a, b } = await joinedPair();
  assert.equal(a.neg.polite, true);
  assert.equal(b.neg.polite, false);
  const offers = [a.pc.offers, b.pc.offers];
  // Both restart ICE at the same moment: two offers cross on the wire.
  a.neg.restartIce();
  b.neg.restartIce();
  await until(() => a.sent.at(-1) === 'candidate' && b.sent.at(-1) === 'candidate' &&
    a.pc.signalingState === 'have-local-offer' && b.pc.signalingState === 'have-local-offer', 'two offers out');
  const fromA = a.outbox.splice(0);
  const fromB = b.outbox.splice(0);
  for (const d of fromA) void b.neg.handleSignal(d);
  for (const d of fromB) void a.neg.handleSignal(d);
  await Promise.all([a.neg.chain, b.neg.chain]);
  assert.equal(b.neg.ignoredOffer, true, 'the impolite side ignored the colliding offer');
  assert.equal(b.pc.signalingState, 'have-local-offer', 'and kept its own');
  assert.equal(a.pc.rollbacks, 1, 'the polite side rolled its offer back');
  assert.equal(b.pc.rollbacks, 0, 'the impolite side never rolls back');
  await exchange(a, b, settled(a, b), 'after the glare');
  assert.ok(a.pc.offers > offers[0] && b.pc.offers > offers[1]);
  assert.equal(a.pc.ice, b.pc.remoteIce, 'a new ICE generation on both sides');
  assert.ok(b.pc.ice > 0);
  assert.deepEqual([a.problems, b.problems], [[], []], 'the ignored offer\'s candidates failed quietly');
});

test('the polite side does not offer while a receiver the other side\'s offer made has had no media: it asks, and owes', async () => {
  const a = side('a', 'b');
  const b = side('b', 'a', { initiator: true });
  await exchange(a, b, settled(a, b), 'the first exchange');
  // b's media has not reached a yet. A negotiation a needs (an ICE restart) waits.
  a.pc.restartIce();
  await until(() => a.neg.is('owed'), 'a owes the negotiation');
  assert.ok(a.sent.includes('requestOffer'));
  assert.equal(a.pc.signalingState, 'stable', 'no offer of its own');
  // b answers the request with an offer carrying an ICE restart; a answers it.
  const bOffers = b.pc.offers;
  await exchange(a, b, () => b.pc.offers > bOffers && b.pc.signalingState === 'stable' && a.pc.signalingState === 'stable',
    'the requested offer');
  assert.equal(a.pc.remoteIce, 1, 'with a new ICE generation');
  assert.equal(a.neg.phase, 'owed', 'still owed: still no media');
  const aOffers = a.pc.offers;
  for (const t of a.remote) t.unmute(); // media arrives
  await exchange(a, b, settled(a, b), 'the owed negotiation');
  assert.equal(a.pc.offers, aOffers + 1, 'made once media came');
  assert.equal(a.pc.rollbacks, 0);
});

test('adoption: the prelude\'s connection and its round-1 offer are taken over; no second offer; early candidates apply', async () => {
  // What boot.js's prelude does: the data channel, its layout, the offer, a candidate that
  // came before the answer.
  const pc = new FakePC();
  openDataChannel(/** @type {any} */ (pc));
  const audio = new FakeTrack('audio');
  addTrackTransceiver(/** @type {any} */ (pc), /** @type {any} */ (audio), /** @type {any} */ ({}));
  addReceiveOnly(/** @type {any} */ (pc), 'video');
  await pc.setLocalDescription();
  const offer = { description: /** @type {any} */ (pc.localDescription).toJSON(), round: 1 };
  const a = side('a', 'b');
  void a.neg.handleSignal(offer);
  await a.neg.chain;
  await until(() => a.outbox.length >= 2, 'a answered, with a candidate');
  const [answer, candidate] = a.outbox.splice(0);
  // The candidate overtook the answer: the prelude kept it.
  const b = side('b', 'a', {
    pc, adopted: { offeredAt: Date.now(), candidates: [candidate.candidate], chain: Promise.resolve() },
  });
  assert.equal(b.neg.phase, 'ready');
  assert.equal(b.neg.sending.audio?.sender.track, audio, 'the prelude\'s audio transceiver is ours');
  assert.equal(b.neg.sending.video, null, 'no camera: nothing sent as video yet');
  a.outbox.push(answer);
  await exchange(a, b, settled(a, b), 'the adopted exchange');
  assert.equal(pc.offers, 1, 'no second offer');
  assert.deepEqual(pc.candidatesAdded.map((c) => c.candidate), [candidate.candidate.candidate]);
  assert.deepEqual([a.problems, b.problems], [[], []]);
});

test('an adopted offer never answered is made again with an ICE restart; the late answer to round 1 is dropped', async () => {
  const pc = new FakePC();
  openDataChannel(/** @type {any} */ (pc));
  addTrackTransceiver(/** @type {any} */ (pc), /** @type {any} */ (new FakeTrack('audio')), /** @type {any} */ ({}));
  addReceiveOnly(/** @type {any} */ (pc), 'video');
  await pc.setLocalDescription();
  const offer = { description: /** @type {any} */ (pc.localDescription).toJSON(), round: 1 };
  const b = side('b', 'a', {
    pc, adopted: { offeredAt: Date.now(), candidates: [], chain: Promise.resolve() }, offerTimeoutMs: 30,
  });
  await until(() => b.sent.includes('offer'), 'the offer made again');
  const again = b.outbox.find((d) => d.description);
  assert.equal(again.round, 2);
  assert.equal(JSON.parse(again.description.sdp).ice, 1, 'with an ICE restart');
  // The lost first offer's answer turns up now: dropped, not an error.
  const a = side('a', 'b');
  void a.neg.handleSignal(offer);
  await a.neg.chain;
  const late = a.outbox.find((d) => d.description);
  void b.neg.handleSignal(late);
  await b.neg.chain;
  assert.equal(pc.signalingState, 'have-local-offer', 'still waiting for round 2\'s answer');
  assert.deepEqual(b.problems, []);
});

test('ICE restart: the impolite side offers with a new generation; a fresh offer of its own is left be', async () => {
  const { a, b } = await joinedPair();
  const offers = b.pc.offers;
  b.neg.restartIce();
  await until(() => b.pc.signalingState === 'have-local-offer', 'the restart offer');
  b.neg.restartIce(); // a second trigger within FRESH_OFFER_MS
  await tick();
  assert.equal(b.pc.offers, offers + 1, 'one offer for both triggers');
  await exchange(a, b, settled(a, b), 'the restart');
  assert.equal(b.pc.ice, 1);
  assert.equal(a.pc.remoteIce, 1);
});

test('ICE restart from the polite side while the other side\'s media has not come: it asks for the offer', async () => {
  const a = side('a', 'b');
  const b = side('b', 'a', { initiator: true });
  await exchange(a, b, settled(a, b), 'the first exchange');
  const before = a.sent.length;
  a.neg.restartIce();
  assert.deepEqual(a.sent.slice(before), ['requestOffer']);
  await exchange(a, b, () => a.pc.remoteIce === 1 && settled(a, b)(), 'the restart made by the other side');
  assert.equal(a.pc.offers, 0, 'the polite side never offered');
});

test('a responder whose first offer does not come offers itself after holdOfferMs', async () => {
  const a = side('a', 'b', { holdOfferMs: 20 });
  assert.equal(a.neg.phase, 'waitOffer');
  await until(() => a.sent.includes('offer'), 'the responder\'s own offer');
  assert.equal(a.neg.phase, 'ready');
  const b = side('b', 'a');
  await exchange(a, b, settled(a, b), 'its exchange');
  assert.deepEqual([a.pc.offers, b.pc.offers], [1, 0]);
});

test('closed: nothing more happens', async () => {
  const a = side('a', 'b', { initiator: true });
  a.neg.close();
  await tick();
  await tick();
  assert.deepEqual(a.sent, []);
  a.neg.restartIce();
  a.neg.mediaSettled();
  void a.neg.handleSignal({ requestOffer: true });
  await a.neg.chain;
  assert.deepEqual(a.sent, []);
});
