// One RTCPeerConnection to one remote participant: the connection and its data channel,
// the remote tracks, the video limits toward this peer, stats and recovery. The negotiation
// itself (perfect negotiation with an explicit phase, who offers first, offer rounds, ICE
// restarts, adopting the prelude's connection) is negotiation.js's; this drives it.
//
// - Politeness comes from the two ids: the side whose id sorts first is polite.
// - Trickle ICE: every candidate goes out through `signal` as it is found.
// - Recovery: ICE restart when the connection fails, stays `disconnected` for a few seconds,
//   or does not connect in time, retried while it stays broken (recovery.js); and when our
//   signalling socket comes back or the browser comes back online (restartIce).
// - A negotiated data channel (id 0, boot.js's openDataChannel) carries chat and state
//   messages.
// - Adoption: the boot script may have made the connection already and sent its first
//   offer (the prelude, boot.js); a Peer made with `early` takes it over as if it had made
//   that offer itself (round 1), then `catchUp()` tells what happened before.
//
// No DOM here. Nothing SDP- or candidate-shaped is ever logged.

import { connectionConfig, openDataChannel } from './boot.js';
import { Emitter } from './emitter.js';
import { Negotiation, describe } from './negotiation.js';
import { emptySummary, summarize } from './peerstats.js';
import { parsePeerMessage } from './protocol.js';
import { Recovery } from './recovery.js';

export { describe };

/** @typedef {import('./protocol.js').SignalData} SignalData */
/** @typedef {import('./protocol.js').PeerMessage} PeerMessage */
/** @typedef {import('./peerstats.js').PeerSummary} PeerSummary */
/** @typedef {import('./boot.js').EarlyPeer} EarlyPeer */
/** @typedef {import('./boot.js').Kind} Kind */
/** @typedef {import('./negotiation.js').LocalMedia} LocalMedia */

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
    this.sendSignal = opts.sendSignal;

    const early = opts.early;
    this.pc = early ? early.pc : new RTCPeerConnection(connectionConfig(opts.iceServers, opts.iceTransportPolicy ?? 'all'));
    this.closed = false;
    this.relayed = false;
    /** @type {WeakSet<MediaStreamTrack>} */
    this.watched = new WeakSet();
    // The prelude's: what it received is in it already, and the boot stage plays it (video
    // first), so the tile that takes that element over shows the same stream.
    this.remoteStream = early ? early.stream : new MediaStream();
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

    this.channel = early ? early.channel : openDataChannel(this.pc);
    this.channel.onopen = () => this.emit('channelOpen', undefined);
    this.channel.onmessage = (ev) => {
      const msg = parsePeerMessage(ev.data);
      if (msg) this.emit('message', msg);
    };

    this.negotiation = new Negotiation({
      pc: this.pc,
      polite: this.polite,
      local: opts.local,
      sendSignal: opts.sendSignal,
      initiator: opts.initiator,
      waitMedia: opts.waitMedia,
      holdOfferMs: opts.holdOfferMs,
      offerTimeoutMs: opts.offerTimeoutMs,
      adopted: early,
    });
    this.negotiation.on('offered', () => this.emit('offered', undefined));
    this.negotiation.on('problem', (words) => this.emit('problem', words));
    // A new sender, or a description that may have made its encoding: the limits apply.
    this.negotiation.on('videoSender', () => void this.applyLimits());
    this.negotiation.on('described', () => void this.applyLimits());

    const pc = this.pc;
    pc.onnegotiationneeded = () => this.negotiation.needed();
    pc.onicecandidate = ({ candidate }) => {
      if (candidate) this.sendSignal({ candidate: candidate.toJSON() });
    };
    pc.ontrack = ({ track }) => this.addRemoteTrack(track);
    pc.onconnectionstatechange = () => this.connectionChanged();
    pc.onsignalingstatechange = () => this.negotiation.signalingChanged();

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
    void this.negotiation.handleSignal(data);
  }

  /**
   * Our media has started (or failed, or is taking too long): an initiator holding its first
   * offer makes it now, with whatever tracks it has.
   */
  mediaSettled() {
    this.negotiation.mediaSettled();
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
    await this.negotiation.setOutgoing(kind, track);
  }

  /**
   * Get an ICE restart under way now (negotiation.js: made by whichever side may offer):
   * the connection failed, or our signalling socket came back, or the browser came back
   * online.
   */
  restartIce() {
    this.negotiation.restartIce();
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
    const tr = this.negotiation.sending.video;
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
    this.negotiation.close();
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
    if (!track.muted) this.negotiation.hear(track);
    if (this.watched.has(track)) return;
    this.watched.add(track);
    track.addEventListener('unmute', () => {
      place();
      // Media arrived: a negotiation held back may go now.
      this.negotiation.hear(track);
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
}
