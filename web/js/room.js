// The mesh: one Peer per remote participant, driven by the signalling events.
//
// - `joined` (fresh): connect to every participant already there (we offer first, once our
//   camera and microphone have started: see mediaSettled). On the first one, the
//   connections index.html's prelude made and offered on already are adopted instead;
//   `newParticipant`: make a peer and wait for the newcomer's offer;
//   `participantLeft` or a `peerNotFound` refusal: that peer is gone;
//   `joined` after a resume: same id, so keep the peers, drop the ones that left meanwhile,
//   add the ones that came (as responders, asking for their lost offer), and restart ICE
//   on the rest (signals were lost, the network may have changed);
//   `resumeFailed`: our id is gone, drop every peer; the fresh `joined` rebuilds the mesh.
// - Local media changes are swapped into every peer; local state, chat and whether we are
//   speaking go out on every data channel.
// - Bandwidth: the upload budget (budget.js) is split over the N-1 outgoing video streams,
//   revisited when the mesh changes and every few seconds from each connection's
//   availableOutgoingBitrate; docs/web.md has the numbers.
//
// - Quality: per peer, good / weak / reconnecting (quality.js) from the same getStats
//   samples, and at once on each connection state change (`peerQuality`).
//
// No DOM here: the page listens to the events.

import { UploadBudget } from './budget.js';
import { Emitter } from './emitter.js';
import { Peer, describe } from './peer.js';
import { MAX_CHAT_CHARS } from './protocol.js';
import { QualityMeter } from './quality.js';

/** @typedef {import('./protocol.js').PeerState} PeerState */
/** @typedef {import('./protocol.js').Joined} Joined */
/** @typedef {import('./signaling.js').Signaling} Signaling */
/** @typedef {import('./media.js').Media} Media */
/** @typedef {import('./peerstats.js').PeerSummary} PeerSummary */
/** @typedef {import('./boot.js').Prelude} Prelude */

const STATS_EVERY_MS = 5_000;
/**
 * When someone joins, the others' streams get their smaller share this much later: changing
 * an encoder's bitrate and picture size costs CPU (and the receivers a new picture size)
 * just when the newcomer's connections need it. The newcomer's own streams start at theirs.
 */
const REBALANCE_AFTER_JOIN_MS = 2_000;

/**
 * @typedef {object} RoomEvents
 * @property {{ selfId: string, resumed: boolean, count: number }} joined
 * @property {void} offersOut  after our first join: an offer went to everyone who was there
 * @property {{ id: string, video: HTMLVideoElement | null }} peerAdded  video: the boot stage's
 *   element already playing this peer (video first), for its tile to take over
 * @property {string} peerRemoved
 * @property {{ id: string, stream: MediaStream }} peerStream
 * @property {{ id: string, state: PeerState }} peerState
 * @property {{ id: string, state: RTCPeerConnectionState }} peerConnection
 * @property {{ id: string, reason: string }} peerFailed
 * @property {{ id: string, relayed: boolean }} peerRelayed
 * @property {{ id: string, quality: import('./quality.js').Quality | null }} peerQuality
 * @property {{ id: string, on: boolean }} peerSpeaking  a peer started or stopped speaking
 * @property {{ from: string | null, name: string, text: string, at: number }} chat  from null = us
 */

/** @extends {Emitter<RoomEvents>} */
export class Room extends Emitter {
  /**
   * @param {object} opts
   * @param {Signaling} opts.signaling
   * @param {Media} opts.media
   * @param {() => PeerState} opts.localState  what we tell peers about ourselves
   */
  constructor(opts) {
    super();
    this.signaling = opts.signaling;
    this.media = opts.media;
    this.localState = opts.localState;
    /**
     * What index.html's prelude made, set by call.js when it takes the socket over: adopted
     * on the first `joined`, if it is the one the prelude saw.
     * @type {Prelude | null}
     */
    this.prelude = null;
    /** @type {Map<string, Peer>} */
    this.peers = new Map();
    /** @type {Map<string, PeerState>} */
    this.states = new Map();
    this.budget = new UploadBudget();
    /** @type {Map<string, { meter: QualityMeter, shown: import('./quality.js').Quality | null }>} */
    this.quality = new Map();
    /** @type {string | null} */
    this.selfId = null;
    /** @type {RTCIceServer[]} */
    this.iceServers = [];
    /** `relay` to use TURN only (from /config.json; set before the first join). */
    /** @type {RTCIceTransportPolicy} */
    this.iceTransportPolicy = 'all';
    /** Our media has started (or failed): peers we offer to may offer (see mediaSettled). */
    this.mediaReady = false;
    /**
     * After our first join, the peers we offer to that have not offered yet; null before
     * that join, and once `offersOut` was told.
     * @type {Set<string> | null}
     */
    this.offersPending = null;
    this.everJoined = false;
    /** Whether we are speaking (setSpeaking), told to each peer whose channel opens. */
    this.speaking = false;
    /** Per peer, the state we last told it (JSON), by hello or on its data channel. */
    /** @type {Map<string, string>} */
    this.told = new Map();

    const sig = this.signaling;
    sig.on('joined', (msg) => this.onJoined(msg));
    sig.on('resumeFailed', () => this.dropAll());
    sig.on('newParticipant', (id) => {
      if (this.selfId && id !== this.selfId && !this.peers.has(id)) this.addPeer(id, false);
    });
    sig.on('participantLeft', (id) => this.removePeer(id));
    sig.on('signal', ({ from, data }) => {
      if (!this.selfId || from === this.selfId) return;
      // A signal can beat its `newParticipant` only in theory; make the peer either way.
      const peer = this.peers.get(from) ?? this.addPeer(from, false);
      if ('state' in data) this.setState(from, data.state);
      else peer.handleSignal(data);
    });
    sig.on('error', (err) => {
      if (err.code === 'peerNotFound' && err.peerId) this.removePeer(err.peerId);
    });

    this.media.on('outgoing', ({ kind, track }) => {
      for (const p of this.peers.values()) void p.setOutgoing(kind, track);
      if (kind === 'video') void this.rebalance();
    });

    this.statsTimer = setInterval(() => void this.refreshStats(), STATS_EVERY_MS);
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.rebalanceTimer = undefined;
  }

  /**
   * Our camera and microphone have started, failed, or are taking too long. Until then the
   * peers we offer to (we joined after them) hold their first offer, so that it carries our
   * tracks: an offer without them would need a second round trip (a renegotiation) for the
   * others to see us. Waiting costs little: media starts as the page starts (early.js),
   * alongside the socket and the join.
   */
  mediaSettled() {
    if (this.mediaReady) return;
    this.mediaReady = true;
    for (const p of this.peers.values()) p.mediaSettled();
  }

  /** Tell every peer our current state (name, mic, camera, screen). */
  broadcastState() {
    const state = this.localState();
    for (const [id, p] of this.peers) this.tellState(id, p, state);
  }

  /**
   * Send `state` on `peer`'s data channel unless it is what the peer was last told (by the
   * hello or on the channel).
   * @param {string} id @param {Peer} peer @param {PeerState} state
   */
  tellState(id, peer, state) {
    const json = JSON.stringify(state);
    if (this.told.get(id) !== json && peer.send({ t: 'state', ...state })) this.told.set(id, json);
  }

  /** Send a chat message to everyone; returns false for an empty one. @param {string} text */
  sendChat(text) {
    const clean = text.trim().slice(0, MAX_CHAT_CHARS);
    if (!clean) return false;
    const at = Date.now();
    for (const p of this.peers.values()) p.send({ t: 'chat', text: clean, at });
    this.emit('chat', { from: null, name: this.localState().name, text: clean, at });
    return true;
  }

  /** The state a peer last told us, if any. @param {string} id */
  stateOf(id) {
    return this.states.get(id) ?? null;
  }

  /**
   * We started or stopped speaking: every peer is told (it shows our highlight; nobody has
   * to poll anyone's audio level). @param {boolean} on
   */
  setSpeaking(on) {
    if (on === this.speaking) return;
    this.speaking = on;
    for (const p of this.peers.values()) p.send({ t: 'speaking', on });
  }

  /** @returns {Promise<Record<string, PeerSummary>>} */
  async summaries() {
    /** @type {Record<string, PeerSummary>} */
    const out = {};
    await Promise.all(
      [...this.peers].map(async ([id, p]) => {
        try {
          out[id] = await p.summary();
        } catch {
          // closed while asking
        }
      }),
    );
    return out;
  }

  /** The browser is back online (the network may be another one): restart ICE everywhere. */
  networkChanged() {
    for (const p of this.peers.values()) p.restartIce();
  }

  /** Leave the call: the room is told at once. */
  leave() {
    clearInterval(this.statsTimer);
    clearTimeout(this.rebalanceTimer);
    this.signaling.leave();
    this.dropAll();
  }

  // ------------------------------------------------------------------ internals

  /** @param {Joined} msg */
  onJoined(msg) {
    this.iceServers = msg.iceServers;
    if (msg.resumed && msg.connectionId === this.selfId) {
      // Frames to us were dropped while we were away: offers, answers, candidates. Get a
      // negotiation (with an ICE restart) going with everyone now rather than when a
      // watchdog notices. Someone we do not know joined meanwhile: it made us as one of
      // its initiators and its first offer to us was lost, so we wait for (and ask for)
      // that offer, as the responder we would have been.
      const present = new Set(msg.participants);
      for (const id of [...this.peers.keys()]) if (!present.has(id)) this.removePeer(id);
      for (const p of this.peers.values()) p.restartIce();
      for (const id of msg.participants) {
        if (!this.peers.has(id) && id !== this.selfId) this.addPeer(id, false).restartIce();
      }
    } else {
      if (this.selfId !== msg.connectionId) this.dropAll();
      this.selfId = msg.connectionId;
      const first = !this.everJoined;
      this.everJoined = true;
      if (first) this.offersPending = new Set();
      const made = this.prelude && this.prelude.selfId === msg.connectionId ? this.prelude.peers : null;
      for (const id of msg.participants) {
        if (this.peers.has(id) || id === this.selfId) continue;
        const early = made?.get(id);
        made?.delete(id);
        const peer = this.addPeer(id, true, early);
        if (!first || early) continue; // the prelude's offer is out already
        this.offersPending?.add(id);
        const off = peer.on('offered', () => {
          off();
          this.offerMade(id);
        });
      }
      // Any the prelude made that this join does not list (none, unless the ids differ).
      if (this.prelude) for (const p of this.prelude.peers.values()) p.pc.close();
      this.prelude = null;
    }
    this.emit('joined', { selfId: msg.connectionId, resumed: msg.resumed, count: this.peers.size + 1 });
    this.offerMade(null);
  }

  /**
   * @param {string} id @param {boolean} initiator
   * @param {import('./boot.js').EarlyPeer} [early]  the prelude's connection to adopt
   */
  addPeer(id, initiator, early) {
    const selfId = /** @type {string} */ (this.selfId);
    const peer = new Peer({
      selfId,
      peerId: id,
      iceServers: this.iceServers,
      iceTransportPolicy: this.iceTransportPolicy,
      initiator,
      waitMedia: !this.mediaReady,
      local: {
        stream: this.media.stream,
        audio: this.media.outgoing('audio'),
        video: this.media.outgoing('video'),
      },
      sendSignal: (data) => this.signaling.signal(id, data),
      early,
    });
    this.peers.set(id, peer);
    peer.on('channelOpen', () => {
      // Our state went with the hello already; only what changed since. (A data-channel send
      // waits on WebRTC's network thread, busy just then with the connection's first media.)
      this.tellState(id, peer, this.localState());
      if (this.speaking) peer.send({ t: 'speaking', on: true });
    });
    peer.on('message', (msg) => {
      if (msg.t === 'state') {
        const { t: _t, ...state } = msg;
        this.setState(id, state);
      } else if (msg.t === 'speaking') {
        this.emit('peerSpeaking', { id, on: msg.on });
      } else {
        const name = this.states.get(id)?.name || 'Someone';
        this.emit('chat', { from: id, name, text: msg.text, at: msg.at });
      }
    });
    peer.on('remoteStream', (stream) => this.emit('peerStream', { id, stream }));
    peer.on('connectionState', (state) => {
      this.emit('peerConnection', { id, state });
      if (state === 'connected') void this.rebalance(id);
      void this.sampleQuality(id);
    });
    peer.on('failed', ({ reason }) => {
      // Lost its path: the network may have changed under our socket too (the restart's
      // offer has to get through it).
      this.signaling.probe();
      this.emit('peerFailed', { id, reason });
    });
    peer.on('relayed', (relayed) => this.emit('peerRelayed', { id, relayed }));
    peer.on('problem', (words) => console.warn(`meshcall: peer ${id}: ${words}`));
    this.emit('peerAdded', { id, video: early?.video ?? null });
    // Hello: our name and state, so the other side can label us before media connects.
    const hello = this.localState();
    this.signaling.signal(id, { state: hello });
    this.told.set(id, JSON.stringify(hello));
    if (early) peer.catchUp(early);
    void this.rebalance(id);
    clearTimeout(this.rebalanceTimer);
    this.rebalanceTimer = setTimeout(() => void this.rebalance(), REBALANCE_AFTER_JOIN_MS);
    return peer;
  }

  /**
   * An offer to `id` went out (or `id` left; null: just look). Once none is pending after
   * our first join, `offersOut`, once.
   * @param {string | null} id
   */
  offerMade(id) {
    const pending = this.offersPending;
    if (!pending) return;
    if (id !== null) pending.delete(id);
    if (pending.size > 0) return;
    this.offersPending = null;
    this.emit('offersOut', undefined);
  }

  /** @param {string} id @param {PeerState} state */
  setState(id, state) {
    if (!this.peers.has(id)) return;
    this.states.set(id, state);
    this.emit('peerState', { id, state });
  }

  /** @param {string} id */
  removePeer(id) {
    const peer = this.peers.get(id);
    if (!peer) return;
    peer.close();
    this.peers.delete(id);
    this.told.delete(id);
    this.offerMade(id);
    this.states.delete(id);
    this.budget.forget(id);
    this.quality.delete(id);
    this.emit('peerRemoved', id);
    void this.rebalance();
  }

  dropAll() {
    for (const id of [...this.peers.keys()]) this.removePeer(id);
  }

  async refreshStats() {
    if (this.peers.size === 0) return;
    const all = await this.summaries();
    for (const [id, s] of Object.entries(all)) {
      if (s.availableOutgoingBitrate !== null) this.budget.estimate(id, s.availableOutgoingBitrate);
      this.judge(id, s);
    }
    await this.rebalance();
  }

  /**
   * Feed a peer's stats sample to its quality meter; tell a change.
   * @param {string} id @param {PeerSummary} s
   */
  judge(id, s) {
    if (!this.peers.has(id)) return;
    let q = this.quality.get(id);
    if (!q) {
      q = { meter: new QualityMeter(), shown: null };
      this.quality.set(id, q);
    }
    const state = this.states.get(id);
    const shown = q.meter.update({ at: Date.now(), ...s }, !!state && (state.cam || state.screen));
    if (shown === q.shown) return;
    q.shown = shown;
    this.emit('peerQuality', { id, quality: shown });
  }

  /**
   * A connection's state changed: judge it now, and once more a moment later (the first
   * interval back from reconnecting).
   * @param {string} id
   */
  async sampleQuality(id) {
    for (const wait of [0, 1_500]) {
      if (wait) await new Promise((r) => setTimeout(r, wait));
      const peer = this.peers.get(id);
      if (!peer) return;
      try {
        this.judge(id, await peer.summary());
      } catch {
        return; // closed while asking
      }
    }
  }

  /**
   * Apply the budget split to every outgoing video stream (or only to `only`'s: the split is
   * over everyone either way).
   * @param {string} [only]
   */
  async rebalance(only) {
    const ids = [...this.peers.keys()];
    if (ids.length === 0) return;
    const track = this.media.outgoing('video');
    const limits = this.budget.limits(ids, { height: track?.getSettings().height ?? 720, screen: !!this.media.screenTrack });
    await Promise.all(
      ids.map(async (id) => {
        const peer = this.peers.get(id);
        const limit = limits.get(id);
        if (!peer || !limit || (only !== undefined && id !== only)) return;
        try {
          await peer.setVideoLimits(limit);
        } catch (err) {
          console.warn(`meshcall: limits for ${id}: ${describe(err)}`);
        }
      }),
    );
  }
}
