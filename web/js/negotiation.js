// The negotiation of one RTCPeerConnection with one remote participant: perfect negotiation
// with an explicit phase, the offer rounds, the transceivers we send on, ICE restarts. No
// DOM, no media elements: tests/unit/negotiation.test.js runs it under node against a fake
// RTCPeerConnection. peer.js owns the connection's other parts (data channel, remote
// tracks, video limits, stats, recovery timing) and drives this.
//
// - Politeness comes from the two ids (the caller's `polite`): on an offer collision the
//   polite side applies the other's offer (which rolls its own back); the impolite side
//   ignores it, and, quietly, the candidates that follow it. Offers come from argument-less
//   setLocalDescription(). Signals are applied one at a time, in arrival order.
// - Who offers first: the participant that joined later (an initiator) adds its tracks and
//   offers once, when its camera and microphone have started (`waitMedia`, until
//   `mediaSettled`: the offer then carries them and no renegotiation follows); the other
//   side (a responder) holds its own offers until that offer arrives (`waitOffer`, or
//   `holdOfferMs` passes) and answers on the offered transceivers.
// - No rollback before first media: Chromium leaves a receiver that the other side's offer
//   made, and that has had no media yet, without frames for good when an offer of ours is
//   rolled back at that moment. So the polite side does not offer while it has such a
//   receiver (`mayOffer`); it asks the other side for an offer (`requestOffer`) and owes
//   the negotiation (`owed`) until that media arrives (`hear`). Nobody rolls an offer back
//   by hand: an unanswered offer is replaced by a new one (`offerTimeoutMs`).
// - Adoption: the boot script's prelude (boot.js) may have made the connection and sent its
//   first offer (round 1) already (`adopted`): this takes over as if it had made that offer.
//
// The phase (one at a time):
//
//   waitMedia  an initiator holds its first offer until our media has settled
//   waitOffer  a responder holds its offers until the other side's first offer
//   ready      may offer whenever a negotiation is needed
//   owed       a negotiation held back (the polite side's no-rollback rule); made on `hear`
//   offering   an offer of ours is being made (perfect negotiation's `makingOffer`)
//   closed     the end; nothing more happens
//
//   waitMedia ──mediaSettled, requestOffer, their description──► ready
//   waitOffer ──their description, holdOfferMs, requestOffer, restartIce (impolite)──► ready
//   ready | owed ──negotiate──► offering ──the offer is out (or failed)──► ready
//   ready ──negotiate while a receiver has had no media (polite)──► owed
//   any ──close──► closed
//
// Nothing SDP- or candidate-shaped is ever put into an event or a log.

import { KINDS, MAX_EARLY_CANDIDATES, addReceiveOnly, addTrackTransceiver } from './boot.js';
import { Emitter } from './emitter.js';

/** @typedef {import('./protocol.js').SignalData} SignalData */
/** @typedef {import('./boot.js').Kind} Kind */
/** @typedef {'waitMedia' | 'waitOffer' | 'ready' | 'owed' | 'offering' | 'closed'} Phase */

/** We ask the other side for an offer at most this often. */
const REQUEST_GAP_MS = 2_000;
/** An offer of ours younger than this already is the restart a new trigger asks for. */
const FRESH_OFFER_MS = 1_000;

/**
 * @typedef {object} LocalMedia
 * @property {MediaStream} stream  the stream our tracks are announced in
 * @property {MediaStreamTrack | null} audio  what to send as audio
 * @property {MediaStreamTrack | null} video  what to send as video (camera or screen)
 */

/**
 * @typedef {object} NegotiationEvents
 * @property {void} offered  an offer of ours went out
 * @property {void} described  a local description was set (sender parameters may apply now)
 * @property {void} videoSender  a transceiver to send our video on was added (addTrack)
 * @property {string} problem  a negotiation step failed (words only, no SDP)
 */

/**
 * @typedef {object} Adopted  an offer (round 1) made before we took the connection over
 * @property {number} offeredAt  Date.now() when it went out
 * @property {RTCIceCandidateInit[]} candidates  candidates that came before the answer
 * @property {Promise<void>} chain  the signals applied so far (never rejects)
 */

/**
 * @typedef {object} NegotiationOptions
 * @property {RTCPeerConnection} pc
 * @property {boolean} polite
 * @property {LocalMedia} local
 * @property {(data: SignalData) => void} sendSignal
 * @property {boolean} initiator  we offer first (we are the later joiner)
 * @property {boolean} [waitMedia]  an initiator holds its first offer until `mediaSettled()`
 * @property {number} [holdOfferMs]  how long a responder waits for the first offer
 * @property {number} [offerTimeoutMs]  an offer unanswered this long is made again
 * @property {Adopted} [adopted]  the connection was made and offered on already (then
 *   `initiator` and `waitMedia` do not apply)
 */

/** @extends {Emitter<NegotiationEvents>} */
export class Negotiation extends Emitter {
  /** @param {NegotiationOptions} opts */
  constructor(opts) {
    super();
    this.pc = opts.pc;
    this.polite = opts.polite;
    this.local = opts.local;
    this.sendSignal = opts.sendSignal;
    this.offerTimeoutMs = opts.offerTimeoutMs ?? 10_000;
    const adopted = opts.adopted;
    /** @type {Phase} */
    this.phase = adopted || (opts.initiator && !opts.waitMedia) ? 'ready' : opts.initiator ? 'waitMedia' : 'waitOffer';
    /** We ignored the other side's latest offer (a collision, impolite): its candidates fail. */
    this.ignoredOffer = false;
    /**
     * Candidates that arrived before any remote description: on AWS, API Gateway hands
     * each frame to the function on its own, so a candidate can overtake its offer.
     * @type {RTCIceCandidateInit[]}
     */
    this.earlyCandidates = adopted ? adopted.candidates : [];
    /** The transceiver we send each kind on, once chosen. */
    /** @type {Record<Kind, RTCRtpTransceiver | null>} */
    this.sending = { audio: null, video: null };
    /** Transceivers we made (addTrack, addTransceiver); the others came with an offer. */
    /** @type {WeakSet<RTCRtpTransceiver>} */
    this.own = new WeakSet();
    /** Remote tracks that have had media (unmuted at least once). */
    /** @type {WeakSet<MediaStreamTrack>} */
    this.heard = new WeakSet();
    /** Number of our latest offer; an answer names the offer it answers. */
    this.offerRound = 0;
    /** @type {number | undefined} the round of the latest offer of theirs we applied */
    this.remoteRound = undefined;
    this.offeredAt = 0;
    this.requestedAt = -Infinity;
    /** Signals are handled one at a time, in arrival order. */
    /** @type {Promise<void>} */
    this.chain = adopted ? adopted.chain : Promise.resolve();
    /** @type {Record<'offer' | 'hold' | 'request', ReturnType<typeof setTimeout> | undefined>} */
    this.timers = { offer: undefined, hold: undefined, request: undefined };

    if (adopted) {
      // Its transceivers are ours (addTrack, or receive-only), offered in round 1.
      for (const t of this.pc.getTransceivers()) {
        this.own.add(t);
        if (t.sender.track) this.sending[/** @type {Kind} */ (t.receiver.track.kind)] = t;
      }
      this.offerRound = 1;
      this.offeredAt = adopted.offeredAt;
      this.timers.offer = setTimeout(() => this.offerAgain(), this.offerTimeoutMs);
    } else if (this.phase === 'ready') {
      this.addLocalTransceivers();
    } else if (this.phase === 'waitOffer') {
      // Our tracks wait on transceivers of their own; the other side's offer takes them over.
      this.addLocalTransceivers(false);
      this.timers.hold = setTimeout(() => this.stopWaiting(), opts.holdOfferMs ?? 3_000);
    }
  }

  /** @param {Phase} phase */
  is(phase) {
    return this.phase === phase;
  }

  /** The connection's `negotiationneeded`. */
  needed() {
    if (this.phase === 'ready' || this.phase === 'owed') void this.negotiate();
  }

  /** The connection's `signalingstatechange`. */
  signalingChanged() {
    if (this.pc.signalingState !== 'have-local-offer') clearTimeout(this.timers.offer);
  }

  /** Feed one negotiation `signal` from the other side. @param {SignalData} data */
  handleSignal(data) {
    this.chain = this.chain.then(() => this.applySignal(data)).catch((err) => {
      this.emit('problem', `signal handling failed: ${describe(err)}`);
    });
    return this.chain;
  }

  /**
   * Our media has started (or failed, or is taking too long): an initiator holding its first
   * offer makes it now, with whatever tracks `local` holds.
   */
  mediaSettled() {
    if (this.phase !== 'waitMedia') return;
    this.phase = 'ready';
    this.addLocalTransceivers();
    // The data channel set the negotiation-needed flag already (its event was held back):
    // adding tracks does not fire it again.
    void this.negotiate();
  }

  /**
   * A remote track has had media (it unmuted, or came unmuted): a negotiation we owe may go
   * now.
   * @param {MediaStreamTrack} track
   */
  hear(track) {
    this.heard.add(track);
    if (this.phase === 'owed' && this.pc.signalingState === 'stable' && this.mayOffer()) void this.negotiate();
  }

  /**
   * Start sending `track` (or nothing) as our `kind`; renegotiates only when the
   * transceiver did not send yet.
   * @param {Kind} kind
   * @param {MediaStreamTrack | null} track
   */
  async setOutgoing(kind, track) {
    this.local = { ...this.local, [kind]: track };
    if (this.phase === 'closed') return;
    const tr = this.sending[kind] ?? this.transceiverFor(kind);
    if (!tr) {
      // No transceiver of this kind yet. Waiting for their first offer: the track waits on
      // a transceiver of its own (see addLocalTrack). Waiting for our media to offer: it goes
      // into that offer. Else the next negotiation carries it.
      if (track && this.phase === 'waitOffer') {
        this.addLocalTrack(kind, track);
      } else if (track && this.phase !== 'waitMedia') {
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
    if (this.phase === 'closed' || this.phase === 'waitMedia') return; // the first offer is still to come
    if (this.phase === 'waitOffer') {
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

  close() {
    this.phase = 'closed';
    for (const t of Object.values(this.timers)) clearTimeout(t);
  }

  // ------------------------------------------------------------------ internals

  /**
   * Whether we may make an offer now. The impolite side always may: it never rolls back.
   * The polite side may not while a receiver that came with the other side's offer, and on
   * which the other side sends, has had no media yet (see the top of this file).
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
    if (this.phase === 'closed') return;
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
    if (this.phase !== 'ready' && this.phase !== 'owed') return;
    if (!this.mayOffer()) {
      this.phase = 'owed';
      this.requestOffer();
      return;
    }
    this.phase = 'offering';
    try {
      await this.pc.setLocalDescription();
      const desc = this.pc.localDescription;
      if (desc?.type === 'offer') {
        this.offerRound += 1;
        this.offeredAt = Date.now();
        this.sendSignal({ description: desc.toJSON(), round: this.offerRound });
        this.emit('offered', undefined);
        this.emit('described', undefined);
        clearTimeout(this.timers.offer);
        this.timers.offer = setTimeout(() => this.offerAgain(), this.offerTimeoutMs);
      } else if (desc) {
        // An offer of theirs got in first and this became its answer.
        this.sendSignal({ description: desc.toJSON(), round: this.remoteRound });
      }
    } catch (err) {
      this.emit('problem', `offer failed: ${describe(err)}`);
    } finally {
      if (this.phase === 'offering') this.phase = 'ready';
    }
  }

  /** @param {SignalData} data */
  async applySignal(data) {
    if (this.phase === 'closed') return;
    const pc = this.pc;
    if ('requestOffer' in data) {
      if (this.phase === 'waitMedia') this.mediaSettled();
      else if (this.phase === 'waitOffer') this.stopWaiting();
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
      const collision = description.type === 'offer' && (this.phase === 'offering' || pc.signalingState !== 'stable');
      this.ignoredOffer = !this.polite && collision;
      if (this.ignoredOffer) return;
      // Their description came first: we answer with what we have (a track that comes later
      // is added by setOutgoing).
      if (this.phase === 'waitOffer' || this.phase === 'waitMedia') {
        this.phase = 'ready';
        clearTimeout(this.timers.hold);
      }
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
        this.emit('described', undefined);
      }
    } else if ('candidate' in data) {
      if (!pc.remoteDescription && !this.ignoredOffer) {
        if (this.earlyCandidates.length < MAX_EARLY_CANDIDATES) this.earlyCandidates.push(data.candidate);
        return;
      }
      try {
        await pc.addIceCandidate(data.candidate);
      } catch (err) {
        // Candidates of an offer we ignored fail to apply; that is expected.
        if (!this.ignoredOffer) throw err;
      }
    }
  }

  /**
   * Before we offer: one transceiver per kind, sending what we have (receive-only for a
   * kind we have no track of, when `receiveOnly`). The boot script's prelude lays out its
   * connections the same way (boot.js's addTrackTransceiver and addReceiveOnly).
   * @param {boolean} [receiveOnly]
   */
  addLocalTransceivers(receiveOnly = true) {
    for (const kind of KINDS) {
      if (this.sending[kind]) continue;
      const track = this.local[kind];
      if (track) this.addLocalTrack(kind, track);
      else if (receiveOnly && !this.transceiverFor(kind)) this.own.add(addReceiveOnly(this.pc, kind));
    }
  }

  /**
   * Send `track` as our `kind` on a transceiver of its own (addTrack: an offer from the other
   * side that comes first takes it over).
   * @param {Kind} kind
   * @param {MediaStreamTrack} track
   */
  addLocalTrack(kind, track) {
    const tr = addTrackTransceiver(this.pc, track, this.local.stream);
    // Waiting for their first offer, this transceiver will be taken over by it: its receiver
    // then counts as one their offer made (see mayOffer), not as ours.
    if (tr && this.phase !== 'waitOffer') this.own.add(tr);
    this.sending[kind] = tr;
    if (kind === 'video') this.emit('videoSender', undefined); // before any description: the encoder starts at the limits
  }

  /** After applying an offer: send our tracks on the offered transceivers. */
  async adoptTransceivers() {
    for (const kind of KINDS) {
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
    if (this.phase !== 'waitOffer') return;
    this.phase = 'ready';
    clearTimeout(this.timers.hold);
    this.addLocalTransceivers();
    void this.negotiate();
  }

  /**
   * Our offer got no answer (lost with a dropped socket?): make a new one, with an ICE
   * restart, in its place. Not a rollback (see mayOffer); an answer to the old offer that
   * turns up late is told apart by its round and dropped.
   */
  offerAgain() {
    if (this.phase === 'closed' || this.pc.signalingState !== 'have-local-offer') return;
    this.pc.restartIce();
    void this.negotiate();
  }
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
