// One RTCPeerConnection to one remote participant, negotiated with "perfect negotiation".
//
// - Politeness comes from the two ids: the side whose id sorts first is polite. On an offer
//   collision the polite side rolls back and takes the other's offer; the impolite side
//   ignores the other's offer. Offers come from argument-less setLocalDescription().
// - Who offers first: the participant that joined later (it learnt of the other from
//   `joined`) adds its transceivers and offers; the other side holds its own offer until
//   that offer arrives (or a few seconds pass) and answers on the offered transceivers.
//   That keeps the first exchange free of glare; perfect negotiation covers every later one
//   (ICE restarts, a camera or screen added later) from either side.
// - Trickle ICE: every candidate goes out through `signal` as it is found.
// - Recovery: ICE restart when the connection fails, stays `disconnected` for a few seconds,
//   does not connect in time, or after our signalling socket was resumed; an offer left
//   unanswered is rolled back and made again.
// - A negotiated data channel (id 0) carries chat and state messages.
//
// No DOM here. Nothing SDP- or candidate-shaped is ever logged.

import { Emitter } from './emitter.js';
import { parsePeerMessage } from './protocol.js';

/** @typedef {import('./protocol.js').SignalData} SignalData */
/** @typedef {import('./protocol.js').PeerMessage} PeerMessage */
/** @typedef {'audio' | 'video'} Kind */

/**
 * @typedef {object} PeerSummary  the shape `window.collectStats` reports per peer
 * @property {RTCPeerConnectionState} connectionState
 * @property {number} framesDecoded
 * @property {number} frameWidth
 * @property {number} audioPackets
 * @property {string | null} pair  "addr:port/proto -> addr:port/proto" of the selected pair
 * @property {boolean} relayed  either end of the selected pair is a TURN relay
 * @property {number | null} availableOutgoingBitrate  bits/s, the sender's estimate
 */

/**
 * @typedef {object} PeerEvents
 * @property {MediaStream} remoteStream  the remote stream changed (same object, new tracks)
 * @property {RTCPeerConnectionState} connectionState
 * @property {void} channelOpen  the data channel opened: time to send our state
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
 * @property {boolean} initiator  we offer first (we are the later joiner)
 * @property {LocalMedia} local
 * @property {(data: SignalData) => void} sendSignal
 * @property {number} [holdOfferMs]  how long a non-initiator waits for the first offer
 * @property {number} [connectTimeoutMs]  no connection after this long counts as failed
 * @property {number} [disconnectedGraceMs]  `disconnected` this long triggers an ICE restart
 * @property {number} [offerTimeoutMs]  an offer unanswered this long is made again
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
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 20_000;
    this.disconnectedGraceMs = opts.disconnectedGraceMs ?? 4_000;
    this.offerTimeoutMs = opts.offerTimeoutMs ?? 10_000;

    this.pc = new RTCPeerConnection({ iceServers: opts.iceServers });
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.closed = false;
    /** Held back until the other side's first offer arrives. */
    this.awaitingOffer = !opts.initiator;
    this.restarts = 0;
    this.everConnected = false;
    this.relayed = false;
    /** The transceiver we send each kind on, once chosen. */
    /** @type {Record<Kind, RTCRtpTransceiver | null>} */
    this.sending = { audio: null, video: null };
    this.remoteStream = new MediaStream();
    /** Signals are handled one at a time, in arrival order. */
    /** @type {Promise<void>} */
    this.chain = Promise.resolve();
    /** @type {Record<string, ReturnType<typeof setTimeout> | undefined>} */
    this.timers = {};
    this.limitsBusy = false;

    this.channel = this.pc.createDataChannel('meshcall', { negotiated: true, id: 0 });
    this.channel.onopen = () => this.emit('channelOpen', undefined);
    this.channel.onmessage = (ev) => {
      const msg = parsePeerMessage(ev.data);
      if (msg) this.emit('message', msg);
    };

    const pc = this.pc;
    pc.onnegotiationneeded = () => {
      if (!this.awaitingOffer) void this.negotiate();
    };
    pc.onicecandidate = ({ candidate }) => {
      if (candidate) this.sendSignal({ candidate: candidate.toJSON() });
    };
    pc.ontrack = ({ track }) => this.addRemoteTrack(track);
    pc.onconnectionstatechange = () => this.connectionChanged();
    pc.onsignalingstatechange = () => this.signalingChanged();

    if (opts.initiator) {
      this.addLocalTransceivers();
    } else {
      this.timers.hold = setTimeout(() => this.stopWaiting(), opts.holdOfferMs ?? 3_000);
    }
    this.timers.connect = setTimeout(() => {
      if (!this.everConnected) this.recover('never connected');
    }, this.connectTimeoutMs);
  }

  /** Feed one negotiation `signal` from this peer. @param {SignalData} data */
  handleSignal(data) {
    this.chain = this.chain.then(() => this.applySignal(data)).catch((err) => {
      this.emit('problem', `signal handling failed: ${describe(err)}`);
    });
  }

  /** Send a data-channel message if the channel is open. @param {PeerMessage} msg */
  send(msg) {
    if (this.channel.readyState === 'open') this.channel.send(JSON.stringify(msg));
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
      // No transceiver of this kind yet (we are still waiting for the first offer, or
      // neither side offered this kind): the next negotiation will carry it.
      if (track && !this.awaitingOffer) {
        this.sending[kind] = this.pc.addTransceiver(track, {
          direction: 'sendrecv',
          streams: [this.local.stream],
        });
      }
      return;
    }
    this.sending[kind] = tr;
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

  /** After our signalling socket was resumed: restart ICE, the network may have changed. */
  restartIce() {
    if (this.closed) return;
    if (this.awaitingOffer) {
      this.stopWaiting();
      return;
    }
    this.pc.restartIce();
  }

  /**
   * Cap our outgoing video toward this peer.
   * @param {{ maxBitrate: number, scaleResolutionDownBy: number }} limits
   */
  async setVideoLimits(limits) {
    const tr = this.sending.video;
    if (!tr || this.closed || this.limitsBusy) return;
    const params = tr.sender.getParameters();
    const enc = params.encodings && params.encodings[0];
    if (!enc) return; // not negotiated yet; the next round will apply
    if (enc.maxBitrate === limits.maxBitrate && enc.scaleResolutionDownBy === limits.scaleResolutionDownBy) {
      return;
    }
    enc.maxBitrate = limits.maxBitrate;
    enc.scaleResolutionDownBy = limits.scaleResolutionDownBy;
    this.limitsBusy = true;
    try {
      await tr.sender.setParameters(params);
    } catch (err) {
      this.emit('problem', `setParameters failed: ${describe(err)}`);
    } finally {
      this.limitsBusy = false;
    }
  }

  /** The remote participant's current audio level, 0..1 (from RTP header extensions). */
  audioLevel() {
    for (const r of this.pc.getReceivers()) {
      if (r.track.kind !== 'audio' || !this.remoteStream.getTracks().includes(r.track)) continue;
      const sources = r.getSynchronizationSources();
      if (sources.length > 0) return sources[0].audioLevel ?? 0;
    }
    return 0;
  }

  /** @returns {Promise<PeerSummary>} */
  async summary() {
    /** @type {PeerSummary} */
    const s = {
      connectionState: this.pc.connectionState,
      framesDecoded: 0,
      frameWidth: 0,
      audioPackets: 0,
      pair: null,
      relayed: false,
      availableOutgoingBitrate: null,
    };
    if (this.closed) return s;
    const report = await this.pc.getStats();
    /** @type {any} */
    let selected = null;
    report.forEach((/** @type {any} */ r) => {
      if (r.type === 'inbound-rtp' && r.kind === 'video') {
        // The flowing stream, if a glare left two video m-lines.
        if ((r.framesDecoded ?? 0) >= s.framesDecoded) {
          s.framesDecoded = r.framesDecoded ?? 0;
          s.frameWidth = r.frameWidth ?? s.frameWidth;
        }
      } else if (r.type === 'inbound-rtp' && r.kind === 'audio') {
        s.audioPackets += r.packetsReceived ?? 0;
      } else if (r.type === 'transport' && r.selectedCandidatePairId) {
        selected = report.get(r.selectedCandidatePairId) ?? selected;
      } else if (r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded' && !selected) {
        selected = r;
      }
    });
    if (selected) {
      const l = report.get(selected.localCandidateId);
      const rm = report.get(selected.remoteCandidateId);
      if (l && rm) {
        s.pair = `${l.address}:${l.port}/${l.protocol} -> ${rm.address}:${rm.port}/${rm.protocol}`;
        s.relayed = l.candidateType === 'relay' || rm.candidateType === 'relay';
      }
      if (typeof selected.availableOutgoingBitrate === 'number') {
        s.availableOutgoingBitrate = selected.availableOutgoingBitrate;
      }
    }
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

  async negotiate() {
    if (this.closed || this.makingOffer) return;
    try {
      this.makingOffer = true;
      await this.pc.setLocalDescription();
      const desc = this.pc.localDescription;
      if (desc) this.sendSignal({ description: desc.toJSON() });
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
    if ('description' in data) {
      const description = data.description;
      const collision = description.type === 'offer' && (this.makingOffer || pc.signalingState !== 'stable');
      this.ignoreOffer = !this.polite && collision;
      if (this.ignoreOffer) return;
      if (this.awaitingOffer) {
        this.awaitingOffer = false;
        clearTimeout(this.timers.hold);
      }
      await pc.setRemoteDescription(description); // rolls our offer back on a collision
      if (description.type === 'offer') {
        await this.adoptTransceivers();
        await pc.setLocalDescription();
        const desc = pc.localDescription;
        if (desc) this.sendSignal({ description: desc.toJSON() });
      }
    } else if ('candidate' in data) {
      try {
        await pc.addIceCandidate(data.candidate);
      } catch (err) {
        // Candidates of an offer we ignored fail to apply; that is expected.
        if (!this.ignoreOffer) throw err;
      }
    }
  }

  /** The initiator's side: one transceiver per kind, sending what we have. */
  addLocalTransceivers() {
    for (const kind of /** @type {Kind[]} */ (['audio', 'video'])) {
      if (this.sending[kind]) continue;
      const track = this.local[kind];
      if (track) {
        // addTrack (not addTransceiver) so that, if the other side offers at the same
        // time, its offer can reuse these transceivers instead of adding more m-lines.
        const sender = this.pc.addTrack(track, this.local.stream);
        this.sending[kind] = this.pc.getTransceivers().find((t) => t.sender === sender) ?? null;
      } else if (!this.transceiverFor(kind)) {
        this.pc.addTransceiver(kind, { direction: 'recvonly' });
      }
    }
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
      for (const old of this.remoteStream.getTracks()) {
        if (old.kind === track.kind) this.remoteStream.removeTrack(old);
      }
      this.remoteStream.addTrack(track);
      this.emit('remoteStream', this.remoteStream);
    };
    // Keep one track per kind; a second m-line of the same kind (left by a glare) takes
    // over only once media actually flows on it.
    const hasKind = this.remoteStream.getTracks().some((t) => t.kind === track.kind);
    if (!hasKind) place();
    track.addEventListener('unmute', place);
  }

  connectionChanged() {
    const state = this.pc.connectionState;
    this.emit('connectionState', state);
    clearTimeout(this.timers.disconnected);
    if (state === 'connected') {
      this.everConnected = true;
      this.restarts = 0;
      clearTimeout(this.timers.connect);
      clearTimeout(this.timers.failedRetry);
      void this.summary(); // learns whether the pair is relayed
    } else if (state === 'disconnected') {
      this.timers.disconnected = setTimeout(() => this.recover('disconnected'), this.disconnectedGraceMs);
    } else if (state === 'failed') {
      this.recover('failed');
    }
  }

  signalingChanged() {
    clearTimeout(this.timers.offer);
    if (this.pc.signalingState === 'have-local-offer') {
      this.timers.offer = setTimeout(() => void this.offerAgain(), this.offerTimeoutMs);
    }
  }

  /** Our offer got no answer (lost in a dropped socket?): take it back and offer again. */
  async offerAgain() {
    if (this.closed || this.pc.signalingState !== 'have-local-offer') return;
    try {
      await this.pc.setLocalDescription({ type: 'rollback' });
      this.pc.restartIce(); // negotiationneeded follows
    } catch (err) {
      this.emit('problem', `rollback failed: ${describe(err)}`);
    }
  }

  /** @param {string} reason */
  recover(reason) {
    if (this.closed) return;
    this.emit('failed', { reason });
    this.restarts += 1;
    this.restartIce();
    // Keep trying while it stays broken, further apart each time (up to a minute).
    clearTimeout(this.timers.failedRetry);
    const wait = Math.min(60_000, 5_000 * 2 ** Math.min(this.restarts, 4));
    this.timers.failedRetry = setTimeout(() => {
      const s = this.pc.connectionState;
      if (s !== 'connected') this.recover(reason);
    }, wait);
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
