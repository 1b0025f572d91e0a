// One RTCPeerConnection to one remote participant, negotiated with "perfect negotiation".
//
// - Politeness comes from the two ids: the side whose id sorts first is polite. On an offer
//   collision the polite side rolls back and takes the other's offer; the impolite side
//   ignores the other's offer. Offers come from argument-less setLocalDescription().
// - Who offers first: the participant that joined later (it learnt of the other from
//   `joined`) adds its tracks and offers once, when its camera and microphone have started
//   (`waitMedia`: the offer then carries them and no renegotiation follows); the other side
//   holds its own offer until that offer arrives (or a few seconds pass) and answers on the
//   offered transceivers. That keeps the first exchange free of glare; perfect negotiation
//   covers every later one (ICE restarts, a camera or screen added later) from either side.
// - No rollback before first media: Chromium leaves a receiver that the other side's offer
//   made, and that has had no media yet, without frames for good when an offer of ours is
//   rolled back at that moment (decoding goes on; the track never gets a frame). So the
//   polite side (the one that rolls back on a collision) does not offer while it has such a
//   receiver; it asks the other side for an offer instead (`requestOffer`). Nobody rolls an
//   offer back by hand: an unanswered offer is replaced by a new one.
// - Trickle ICE: every candidate goes out through `signal` as it is found.
// - Recovery: ICE restart when the connection fails, stays `disconnected` for a few seconds,
//   or does not connect in time, retried while it stays broken (recovery.js); and when our
//   signalling socket comes back or the browser comes back online (restartIce).
// - A negotiated data channel (id 0) carries chat and state messages.
// - Adoption: index.html's boot script may have made the connection already and sent its
//   first offer (the prelude, early.js); a Peer made with `early` takes it over as if it
//   had made that offer itself (round 1), then `catchUp()` tells what happened before.
//
// No DOM here. Nothing SDP- or candidate-shaped is ever logged.

import { Emitter } from './emitter.js';
import { emptySummary, summarize } from './peerstats.js';
import { parsePeerMessage } from './protocol.js';
import { Recovery } from './recovery.js';

/** @typedef {import('./protocol.js').SignalData} SignalData */
/** @typedef {import('./protocol.js').PeerMessage} PeerMessage */
/** @typedef {import('./peerstats.js').PeerSummary} PeerSummary */
/** @typedef {import('./early.js').EarlyPeer} EarlyPeer */
/** @typedef {'audio' | 'video'} Kind */

/** We ask the other side for an offer at most this often. */
const REQUEST_GAP_MS = 2_000;
/** An offer of ours younger than this already is the restart a new trigger asks for. */
const FRESH_OFFER_MS = 1_000;
/** After connecting, we look this much later whether the pair is relayed. */
const RELAY_CHECK_MS = 1_000;

/**
 * @typedef {object} PeerEvents
 * @property {MediaStream} remoteStream  the remote stream changed (same object, new tracks)
 * @property {RTCPeerConnectionState} connectionState
 * @property {void} channelOpen  the data channel opened: time to send our state
 * @property {void} offered  an offer of ours went out
 * @property {PeerMessage} message
 * @property {{ reason: string }} failed  could not connect; an ICE restart is under way
 * @property {boolean} relayed  the selected pair is (or stopped being) relayed
 * @property {string} problem  a negotiation step failed (words only, no SDP)
 */

/**
 * @typedef {object} LocalMedia
 * @property {MediaStream} stream  the stream our tracks are announced in
 * @property {MediaStreamTrack | null} audio  what to send as audio
 * @property {MediaStreamTrack | null} video  what to send as video (camera or screen)
 */

/**
 * @typedef {object} PeerOptions
 * @property {string} selfId
 * @property {string} peerId
 * @property {RTCIceServer[]} iceServers
 * @property {RTCIceTransportPolicy} [iceTransportPolicy]  `relay` to use TURN only
 * @property {boolean} initiator  we offer first (we are the later joiner)
 * @property {boolean} [waitMedia]  an initiator holds its first offer until `mediaSettled()`
 * @property {LocalMedia} local
 * @property {(data: SignalData) => void} sendSignal
 * @property {number} [holdOfferMs]  how long a non-initiator waits for the first offer
 * @property {number} [connectTimeoutMs]  no connection after this long counts as failed
 * @property {number} [disconnectedGraceMs]  `disconnected` this long triggers an ICE restart
 * @property {number} [offerTimeoutMs]  an offer unanswered this long is made again
 * @property {EarlyPeer} [early]  the connection the prelude made and offered on: adopted
 *   (then `initiator` and `waitMedia` do not apply)
 */

/** @extends {Emitter<PeerEvents>} */
export class Peer extends Emitter {
  /** @param {PeerOptions} opts */
  constructor(opts) {
    super();
    this.selfId = opts.selfId;
    this.peerId = opts.peerId;
    this.polite = opts.selfId < opts.peerId;
    this.local = opts.local;
    this.sendSignal = opts.sendSignal;
    this.offerTimeoutMs = opts.offerTimeoutMs ?? 10_000;

    const early = opts.early;
    this.pc = early ? early.pc : new RTCPeerConnection(connectionConfig(opts.iceServers, opts.iceTransportPolicy ?? 'all'));
    this.makingOffer = false;
    this.ignoreOffer = false;
    /**
     * Candidates that arrived before any remote description: on AWS, API Gateway hands
     * each frame to the function on its own, so a candidate can overtake its offer.
     * @type {RTCIceCandidateInit[]}
     */
    this.earlyCandidates = early ? early.candidates : [];
    this.closed = false;
    /** Held back until the other side's first offer arrives. */
    this.awaitingOffer = !early && !opts.initiator;
    /** An initiator's first offer, held back until our media has started (or failed). */
    this.awaitingMedia = !early && opts.initiator && !!opts.waitMedia;
    this.relayed = false;
    /** The transceiver we send each kind on, once chosen. */
    /** @type {Record<Kind, RTCRtpTransceiver | null>} */
    this.sending = { audio: null, video: null };
    /** Transceivers we made (addTrack, addTransceiver); the others came with an offer. */
    /** @type {WeakSet<RTCRtpTransceiver>} */
    this.own = new WeakSet();
    /** Remote tracks that have had media (unmuted at least once). */
    /** @type {WeakSet<MediaStreamTrack>} */
    this.heard = new WeakSet();
    /** @type {WeakSet<MediaStreamTrack>} */
    this.watched = new WeakSet();
    /** A negotiation we held back (see mayOffer); made once we may. */
    this.deferred = false;
    /** Number of our latest offer; an answer names the offer it answers. */
    this.offerRound = 0;
    /** @type {number | undefined} the round of the latest offer of theirs we applied */
    this.remoteRound = undefined;
    this.offeredAt = 0;
    this.requestedAt = -Infinity;
    // The prelude's: what it received is in it already, and the boot stage plays it (video
    // first), so the tile that takes that element over shows the same stream.
    this.remoteStream = early ? early.stream : new MediaStream();
    /** Signals are handled one at a time, in arrival order. */
    /** @type {Promise<void>} */
    this.chain = early ? early.chain : Promise.resolve();
    /** @type {Record<string, ReturnType<typeof setTimeout> | undefined>} */
    this.timers = {};
    this.limitsBusy = false;
    /**
     * The video limits asked for last (setVideoLimits); applied once the sender has been
     * negotiated, so that a new connection starts at them.
     * @type {{ maxBitrate: number, scaleResolutionDownBy: number } | null}
     */
    this.limits = null;
    /**
     * What the video sender was last set to (set values survive renegotiation; a new sender
     * is set afresh).
     * @type {{ sender: RTCRtpSender, maxBitrate: number, scaleResolutionDownBy: number } | null}
     */
    this.applied = null;

    this.channel = early ? early.channel : this.pc.createDataChannel('meshcall', { negotiated: true, id: 0 });
    this.channel.onopen = () => this.emit('channelOpen', undefined);
    this.channel.onmessage = (ev) => {
      const msg = parsePeerMessage(ev.data);
      if (msg) this.emit('message', msg);
    };

    const pc = this.pc;
    pc.onnegotiationneeded = () => {
      if (!this.awaitingOffer && !this.awaitingMedia) void this.negotiate();
    };
    pc.onicecandidate = ({ candidate }) => {
      if (candidate) this.sendSignal({ candidate: candidate.toJSON() });
    };
    pc.ontrack = ({ track }) => this.addRemoteTrack(track);
    pc.onconnectionstatechange = () => this.connectionChanged();
    pc.onsignalingstatechange = () => this.signalingChanged();

    if (early) {
      // Its transceivers are ours (addTrack, or receive-only), offered in round 1.
      for (const t of pc.getTransceivers()) {
        this.own.add(t);
        if (t.sender.track) this.sending[/** @type {Kind} */ (t.receiver.track.kind)] = t;
      }
      this.offerRound = 1;
      this.offeredAt = early.offeredAt;
      this.timers.offer = setTimeout(() => this.offerAgain(), this.offerTimeoutMs);
    } else if (opts.initiator) {
      if (!this.awaitingMedia) this.addLocalTransceivers();
    } else {
      // Our tracks wait on transceivers of their own; the other side's offer takes them over.
      this.addLocalTransceivers(false);
      this.timers.hold = setTimeout(() => this.stopWaiting(), opts.holdOfferMs ?? 3_000);
    }
    this.recovery = new Recovery({
      connectTimeoutMs: opts.connectTimeoutMs,
      disconnectedGraceMs: opts.disconnectedGraceMs,
      state: () => this.pc.connectionState,
      restart: (reason) => {
        this.emit('failed', { reason });
        this.restartIce();
      },
    });
  }

  /**
   * After adopting the prelude's connection (and once the caller listens): what happened
   * before, as events (remote tracks, the data channel open, the connection state).
   * @param {EarlyPeer} early
   */
  catchUp(early) {
    if (this.closed) return;
    for (const track of early.tracks) this.addRemoteTrack(track);
    // Those tracks were in the stream already (the prelude put them there): tell it once.
    if (this.remoteStream.getTracks().length) this.emit('remoteStream', this.remoteStream);
    if (this.pc.connectionState !== 'new') this.connectionChanged();
    if (this.channel.readyState === 'open') this.emit('channelOpen', undefined);
  }

  /** Feed one negotiation `signal` from this peer. @param {SignalData} data */
  handleSignal(data) {
    this.chain = this.chain.then(() => this.applySignal(data)).catch((err) => {
      this.emit('problem', `signal handling failed: ${describe(err)}`);
    });
  }

  /**
   * Our media has started (or failed, or is taking too long): an initiator holding its first
   * offer makes it now, with whatever tracks `local` holds.
   */
  mediaSettled() {
    if (!this.awaitingMedia || this.closed) return;
    this.awaitingMedia = false;
    this.addLocalTransceivers();
    // The data channel set the negotiation-needed flag already (its event was held back):
    // adding tracks does not fire it again.
    void this.negotiate();
  }

  /**
   * Send a data-channel message if the channel is open; whether it was sent.
   * @param {PeerMessage} msg
   */
  send(msg) {
    if (this.channel.readyState !== 'open') return false;
    this.channel.send(JSON.stringify(msg));
    return true;
  }

  /**
   * Start sending `track` (or nothing) as our `kind`; renegotiates only when the
   * transceiver did not send yet.
   * @param {Kind} kind
   * @param {MediaStreamTrack | null} track
   */
  async setOutgoing(kind, track) {
    this.local = { ...this.local, [kind]: track };
    if (this.closed) return;
    const tr = this.sending[kind] ?? this.transceiverFor(kind);
    if (!tr) {
      // No transceiver of this kind yet. Waiting for their first offer: the track waits on
      // a transceiver of its own (see addLocalTrack). Waiting for our media to offer: it goes
      // into that offer. Else the next negotiation carries it.
      if (track && this.awaitingOffer) {
        this.addLocalTrack(kind, track);
      } else if (track && !this.awaitingMedia) {
        const added = this.pc.addTransceiver(track, { direction: 'sendrecv', streams: [this.local.stream] });
        this.own.add(added);
        this.sending[kind] = added;
      }
      return;
    }
    this.sending[kind] = tr;
    if (track && tr.sender.track === track && (tr.direction === 'sendrecv' || tr.direction === 'sendonly')) {
      return; // sent already (the prelude's tracks are the ones media.js starts with)
    }
    try {
      await tr.sender.replaceTrack(track);
    } catch (err) {
      this.emit('problem', `replaceTrack failed: ${describe(err)}`);
      return;
    }
    if (track) {
      tr.sender.setStreams(this.local.stream);
      if (tr.direction === 'recvonly') tr.direction = 'sendrecv';
      else if (tr.direction === 'inactive') tr.direction = 'sendonly';
    }
  }

  /**
   * Get an ICE restart under way now, made by whichever side may offer: the connection
   * failed, or our signalling socket came back (signals may have been lost, the network may
   * have changed), or the browser came back online.
   */
  restartIce() {
    if (this.closed || this.awaitingMedia) return; // the first offer is still to come
    if (this.awaitingOffer) {
      // Their first offer is late, or was lost. The polite side asks for it again (the
      // impolite side would ignore an offer of ours while its own is pending); the
      // impolite side offers itself and wins any collision.
      if (this.polite) this.requestOffer();
      else this.stopWaiting();
      return;
    }
    if (!this.mayOffer()) {
      this.requestOffer();
      return;
    }
    if (this.pc.signalingState === 'have-local-offer') {
      if (Date.now() - this.offeredAt < FRESH_OFFER_MS) return;
      this.pc.restartIce();
      void this.negotiate(); // a new offer in place of the unanswered one
      return;
    }
    this.pc.restartIce(); // negotiationneeded follows
  }

  /**
   * Cap our outgoing video toward this peer. Applied to the sender at once, even before it is
   * negotiated (so the encoder starts at them); where a browser refuses that, again after
   * each local description.
   * @param {{ maxBitrate: number, scaleResolutionDownBy: number }} limits
   */
  async setVideoLimits(limits) {
    this.limits = limits;
    await this.applyLimits();
  }

  async applyLimits() {
    const tr = this.sending.video;
    const limits = this.limits;
    if (!tr || !limits || this.closed || this.limitsBusy) return;
    const done = this.applied;
    if (done && done.sender === tr.sender && done.maxBitrate === limits.maxBitrate &&
        done.scaleResolutionDownBy === limits.scaleResolutionDownBy) {
      return; // as set already: no getParameters (it waits on WebRTC's signalling thread)
    }
    const params = tr.sender.getParameters();
    const enc = params.encodings && params.encodings[0];
    if (!enc) return; // no encoding yet (some browsers, before negotiation): after the next description
    if (enc.maxBitrate === limits.maxBitrate && enc.scaleResolutionDownBy === limits.scaleResolutionDownBy) {
      this.applied = { sender: tr.sender, ...limits };
      return;
    }
    enc.maxBitrate = limits.maxBitrate;
    enc.scaleResolutionDownBy = limits.scaleResolutionDownBy;
    this.limitsBusy = true;
    try {
      await tr.sender.setParameters(params);
      this.applied = { sender: tr.sender, ...limits };
    } catch (err) {
      // Before negotiation some browsers refuse; it is tried again after the description.
      if (this.pc.currentLocalDescription) this.emit('problem', `setParameters failed: ${describe(err)}`);
    } finally {
      this.limitsBusy = false;
    }
    if (this.limits !== limits) await this.applyLimits(); // asked again meanwhile
  }

  /** @returns {Promise<PeerSummary>} */
  async summary() {
    if (this.closed) return emptySummary(this.pc.connectionState);
    const s = await summarize(this.pc);
    if (s.relayed !== this.relayed && s.pair) {
      this.relayed = s.relayed;
      this.emit('relayed', s.relayed);
    }
    return s;
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    for (const t of Object.values(this.timers)) clearTimeout(t);
    this.recovery.close();
    this.channel.onopen = null;
    this.channel.onmessage = null;
    this.pc.onnegotiationneeded = null;
    this.pc.onicecandidate = null;
    this.pc.ontrack = null;
    this.pc.onconnectionstatechange = null;
    this.pc.onsignalingstatechange = null;
    this.channel.close();
    this.pc.close();
    for (const t of this.remoteStream.getTracks()) this.remoteStream.removeTrack(t);
  }

  // ------------------------------------------------------------------ negotiation

  /**
   * Whether we may make an offer now. The impolite side always may: it never rolls back.
   * The polite side may not while a receiver that came with the other side's offer, and on
   * which the other side sends, has had no media yet: its offer could collide and be rolled
   * back, and Chromium leaves such a receiver's video without frames for good after a
   * rollback. Until that media arrives the other side makes the offers (`requestOffer`).
   */
  mayOffer() {
    if (!this.polite) return true;
    return this.pc.getTransceivers().every((t) => {
      const theySend = t.currentDirection === 'sendrecv' || t.currentDirection === 'recvonly';
      return this.own.has(t) || !theySend || this.heard.has(t.receiver.track);
    });
  }

  /** Ask the other side to make an offer (with an ICE restart); at most every REQUEST_GAP_MS. */
  requestOffer() {
    if (this.closed) return;
    const wait = this.requestedAt + REQUEST_GAP_MS - Date.now();
    if (wait > 0) {
      this.timers.request ??= setTimeout(() => {
        this.timers.request = undefined;
        this.requestOffer();
      }, wait);
      return;
    }
    this.requestedAt = Date.now();
    this.sendSignal({ requestOffer: true });
  }

  async negotiate() {
    if (this.closed || this.makingOffer) return;
    if (!this.mayOffer()) {
      this.deferred = true;
      this.requestOffer();
      return;
    }
    this.deferred = false;
    try {
      this.makingOffer = true;
      await this.pc.setLocalDescription();
      const desc = this.pc.localDescription;
      if (desc?.type === 'offer') {
        this.offerRound += 1;
        this.offeredAt = Date.now();
        this.sendSignal({ description: desc.toJSON(), round: this.offerRound });
        this.emit('offered', undefined);
        void this.applyLimits(); // if it could not be set before
        clearTimeout(this.timers.offer);
        this.timers.offer = setTimeout(() => this.offerAgain(), this.offerTimeoutMs);
      } else if (desc) {
        // An offer of theirs got in first and this became its answer.
        this.sendSignal({ description: desc.toJSON(), round: this.remoteRound });
      }
    } catch (err) {
      this.emit('problem', `offer failed: ${describe(err)}`);
    } finally {
      this.makingOffer = false;
    }
  }

  /** @param {SignalData} data */
  async applySignal(data) {
    if (this.closed) return;
    const pc = this.pc;
    if ('requestOffer' in data) {
      if (this.awaitingMedia) this.mediaSettled();
      else if (this.awaitingOffer) this.stopWaiting();
      else if (!this.polite) this.restartIce();
      return;
    }
    if ('description' in data) {
      const description = data.description;
      if (description.type === 'answer') {
        // An answer to an offer we replaced or rolled back: the one we hold gets its own.
        const current = data.round === undefined || data.round === this.offerRound;
        if (pc.signalingState !== 'have-local-offer' || !current) return;
      }
      const collision = description.type === 'offer' && (this.makingOffer || pc.signalingState !== 'stable');
      this.ignoreOffer = !this.polite && collision;
      if (this.ignoreOffer) return;
      if (this.awaitingOffer) {
        this.awaitingOffer = false;
        clearTimeout(this.timers.hold);
      }
      // Their offer came first: we answer with what we have (a track that comes later is
      // added by setOutgoing).
      this.awaitingMedia = false;
      await pc.setRemoteDescription(description); // rolls our offer back on a collision
      for (const candidate of this.earlyCandidates.splice(0)) {
        await pc.addIceCandidate(candidate).catch(() => {});
      }
      if (description.type === 'offer') {
        this.remoteRound = data.round;
        await this.adoptTransceivers();
        await pc.setLocalDescription();
        const desc = pc.localDescription;
        if (desc) this.sendSignal({ description: desc.toJSON(), round: data.round });
        void this.applyLimits(); // if it could not be set before
      }
    } else if ('candidate' in data) {
      if (!pc.remoteDescription && !this.ignoreOffer) {
        if (this.earlyCandidates.length < 200) this.earlyCandidates.push(data.candidate);
        return;
      }
      try {
        await pc.addIceCandidate(data.candidate);
      } catch (err) {
        // Candidates of an offer we ignored fail to apply; that is expected.
        if (!this.ignoreOffer) throw err;
      }
    }
  }

  /**
   * Before we offer: one transceiver per kind, sending what we have (receive-only for a
   * kind we have no track of, when `receiveOnly`).
   * @param {boolean} [receiveOnly]
   */
  addLocalTransceivers(receiveOnly = true) {
    for (const kind of /** @type {Kind[]} */ (['audio', 'video'])) {
      if (this.sending[kind]) continue;
      const track = this.local[kind];
      if (track) this.addLocalTrack(kind, track);
      else if (receiveOnly && !this.transceiverFor(kind)) {
        this.own.add(this.pc.addTransceiver(kind, { direction: 'recvonly' }));
      }
    }
  }

  /**
   * Send `track` as our `kind` on a transceiver of its own. addTrack (not addTransceiver):
   * an offer from the other side that comes first takes it over for its m-line of that kind
   * (no m-lines added, no replaceTrack needed before answering).
   * @param {Kind} kind
   * @param {MediaStreamTrack} track
   */
  addLocalTrack(kind, track) {
    const sender = this.pc.addTrack(track, this.local.stream);
    const tr = this.pc.getTransceivers().find((t) => t.sender === sender) ?? null;
    // Waiting for their first offer, this transceiver will be taken over by it: its receiver
    // then counts as one their offer made (see mayOffer), not as ours.
    if (tr && !this.awaitingOffer) this.own.add(tr);
    this.sending[kind] = tr;
    if (kind === 'video') void this.applyLimits(); // before any description: the encoder starts at them
  }

  /** After applying an offer: send our tracks on the offered transceivers. */
  async adoptTransceivers() {
    for (const kind of /** @type {Kind[]} */ (['audio', 'video'])) {
      const held = this.sending[kind];
      if (held && held.direction !== 'stopped') continue;
      const tr = this.transceiverFor(kind);
      if (!tr) continue;
      this.sending[kind] = tr;
      const track = this.local[kind];
      if (track && tr.sender.track !== track) {
        await tr.sender.replaceTrack(track);
        tr.sender.setStreams(this.local.stream);
      }
      if (track && tr.direction === 'recvonly') tr.direction = 'sendrecv';
    }
  }

  /** The first live transceiver of a kind (by its receiver's track). @param {Kind} kind */
  transceiverFor(kind) {
    return this.pc.getTransceivers().find((t) => t.direction !== 'stopped' && t.receiver.track.kind === kind) ?? null;
  }

  /** We waited for the other side's offer long enough: offer ourselves. */
  stopWaiting() {
    if (!this.awaitingOffer || this.closed) return;
    this.awaitingOffer = false;
    clearTimeout(this.timers.hold);
    this.addLocalTransceivers();
    void this.negotiate();
  }

  // ------------------------------------------------------------------ media and state

  /** @param {MediaStreamTrack} track */
  addRemoteTrack(track) {
    const place = () => {
      if (this.closed || this.remoteStream.getTracks().includes(track)) return;
      // Add first, then remove: the stream never goes empty (an element playing an
      // inactive stream ends playback).
      this.remoteStream.addTrack(track);
      for (const old of this.remoteStream.getTracks()) {
        if (old.kind === track.kind && old !== track) this.remoteStream.removeTrack(old);
      }
      this.emit('remoteStream', this.remoteStream);
    };
    // Keep one track per kind; a second m-line of the same kind (left by a glare) takes
    // over only once media actually flows on it.
    const hasKind = this.remoteStream.getTracks().some((t) => t.kind === track.kind);
    if (!hasKind) place();
    if (!track.muted) this.heard.add(track);
    if (this.watched.has(track)) return;
    this.watched.add(track);
    track.addEventListener('unmute', () => {
      this.heard.add(track);
      place();
      // Media arrived: a negotiation we held back may go now.
      if (this.deferred && !this.awaitingOffer && this.pc.signalingState === 'stable' && this.mayOffer()) {
        void this.negotiate();
      }
    });
  }

  connectionChanged() {
    const state = this.pc.connectionState;
    this.emit('connectionState', state);
    this.recovery.changed(state);
    // Whether the pair is relayed, once the first media had time to start (getStats is
    // heavy, and the connection's first frames are worth more).
    clearTimeout(this.timers.relayCheck);
    if (state === 'connected') {
      this.timers.relayCheck = setTimeout(() => void this.summary().catch(() => {}), RELAY_CHECK_MS);
    }
  }

  signalingChanged() {
    if (this.pc.signalingState !== 'have-local-offer') clearTimeout(this.timers.offer);
  }

  /**
   * Our offer got no answer (lost with a dropped socket?): make a new one, with an ICE
   * restart, in its place. Not a rollback (see mayOffer); an answer to the old offer that
   * turns up late is told apart by its round and dropped.
   */
  offerAgain() {
    if (this.closed || this.pc.signalingState !== 'have-local-offer') return;
    this.pc.restartIce();
    void this.negotiate();
  }
}

/**
 * Every peer connection's configuration. index.html's prelude makes its connections with
 * the same (tests/e2e/prelude.test.js compares an adopted connection's with this).
 * @param {RTCIceServer[]} iceServers
 * @param {RTCIceTransportPolicy} iceTransportPolicy
 * @returns {RTCConfiguration}
 */
export function connectionConfig(iceServers, iceTransportPolicy) {
  return {
    iceServers,
    iceTransportPolicy,
    // One transport for audio, video and the data channel from the first offer on. The
    // default ('balanced') gathers candidates, signals them and runs ICE checks for each of
    // the three until the answer confirms bundling: three times the work of a join.
    bundlePolicy: 'max-bundle',
  };
}

/**
 * Words for a failure, without anything that might hold an address or SDP.
 * @param {unknown} err
 */
export function describe(err) {
  if (err instanceof Error) {
    const firstLine = err.message.split('\n')[0].slice(0, 120);
    return `${err.name}: ${firstLine.replace(/[0-9a-f:.]{7,}/gi, '…')}`;
  }
  return 'unknown error';
}
