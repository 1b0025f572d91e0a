// A small stand-in for RTCPeerConnection, for web/js/negotiation.js under `node --test`.
//
// It models what perfect negotiation depends on, and nothing of media or networks:
// - signalling states (stable, have-local-offer, have-remote-offer) and their changes;
//   argument-less setLocalDescription() makes an offer (stable, have-local-offer) or an
//   answer (have-remote-offer); setRemoteDescription(offer) in have-local-offer rolls our
//   offer back first (counted in `rollbacks`), as browsers do; an answer in any other state
//   than have-local-offer is refused (InvalidStateError);
// - transceivers with mids, directions and current directions; addTrack reuses a
//   transceiver of its kind that a remote offer made and that never sent; a remote offer
//   takes over our addTrack transceivers (mid still unset) of its m-lines' kinds (JSEP), else
//   makes receive-only ones; `track` fires when the other side first sends on one;
// - `negotiationneeded` (in a later task, only in stable): a transceiver without a mid, a
//   direction not negotiated yet, a data channel not negotiated yet, or restartIce();
// - ICE generations: an offer after restartIce() carries a new one, candidates carry the
//   generation of their description, and a candidate of another generation than the remote
//   description's is refused (OperationError), as a candidate of an offer we ignored is;
//   a candidate before any remote description is refused (InvalidStateError);
// - after each local description, one ICE candidate (`onicecandidate`, a later task).
//
// The description's `sdp` is JSON of its own (m-lines, data channel, ICE generation), not SDP.

let serial = 0;

/** A remote or local media track: starts muted (no media yet) until `unmute()`. */
export class FakeTrack {
  /** @param {'audio' | 'video'} kind */
  constructor(kind) {
    this.kind = kind;
    this.id = `track-${++serial}`;
    this.muted = true;
    this.enabled = true;
    /** @type {Map<string, Array<() => void>>} */
    this.listeners = new Map();
  }

  /** @param {string} type @param {() => void} fn */
  addEventListener(type, fn) {
    this.listeners.set(type, [...(this.listeners.get(type) ?? []), fn]);
  }

  /** Media arrived. */
  unmute() {
    this.muted = false;
    for (const fn of this.listeners.get('unmute') ?? []) fn();
  }
}

class FakeSender {
  /** @param {FakeTrack | null} track */
  constructor(track) {
    this.track = track;
    /** @type {unknown[]} */
    this.streams = [];
  }

  /** @param {FakeTrack | null} track */
  async replaceTrack(track) {
    this.track = track;
  }

  /** @param {unknown[]} streams */
  setStreams(...streams) {
    this.streams = streams;
  }

  getParameters() {
    return { encodings: [{}] };
  }

  async setParameters() {}
}

class FakeTransceiver {
  /**
   * @param {FakePC} pc @param {'audio' | 'video'} kind @param {string} direction
   * @param {FakeTrack | null} track @param {'addTrack' | 'addTransceiver' | 'remote'} origin
   */
  constructor(pc, kind, direction, track, origin) {
    this.pc = pc;
    /** @type {string | null} */
    this.mid = null;
    this.dir = direction;
    /** @type {string | null} */
    this.currentDirection = null;
    /** The direction as last negotiated (null: never). @type {string | null} */
    this.negotiated = null;
    this.sender = new FakeSender(track);
    this.receiver = { track: new FakeTrack(kind) };
    this.origin = origin;
    this.sentEver = false;
    this.trackFired = false;
  }

  get direction() {
    return this.dir;
  }

  set direction(d) {
    if (d === this.dir) return;
    this.dir = d;
    this.pc.changed();
  }
}

/** @param {string} d the other side's direction, as seen from here */
function reverse(d) {
  return d === 'sendonly' ? 'recvonly' : d === 'recvonly' ? 'sendonly' : d;
}

/** What both want: `ours` limited by what the other side's direction allows. */
function intersect(/** @type {string} */ ours, /** @type {string} */ theirsReversed) {
  const send = (ours === 'sendrecv' || ours === 'sendonly') && (theirsReversed === 'sendrecv' || theirsReversed === 'sendonly');
  const recv = (ours === 'sendrecv' || ours === 'recvonly') && (theirsReversed === 'sendrecv' || theirsReversed === 'recvonly');
  return send && recv ? 'sendrecv' : send ? 'sendonly' : recv ? 'recvonly' : 'inactive';
}

/** @param {string} type @param {object} body */
function description(type, body) {
  const sdp = JSON.stringify(body);
  return { type, sdp, toJSON: () => ({ type, sdp }) };
}

/** @param {string} name @param {string} message */
function domError(name, message) {
  return new DOMException(message, name);
}

export class FakePC {
  /** @param {object} [config] */
  constructor(config = {}) {
    this.config = config;
    this.name = `pc-${++serial}`;
    this.signalingState = 'stable';
    this.connectionState = 'new';
    /** @type {ReturnType<typeof description> | null} */
    this.localDescription = null;
    /** @type {{ type: string, sdp: string } | null} */
    this.remoteDescription = null;
    /** @type {ReturnType<typeof description> | null} */
    this.currentLocalDescription = null;
    /** @type {FakeTransceiver[]} */
    this.transceivers = [];
    this.hasData = false;
    this.dataNegotiated = false;
    /** Our ICE generation as negotiated, and the one a pending offer of ours carries. */
    this.ice = 0;
    this.pendingIce = 0;
    this.restartPending = false;
    /** @type {number | null} the remote description's ICE generation */
    this.remoteIce = null;
    this.nextMid = 0;
    this.neededQueued = false;
    this.closed = false;
    // What the tests look at.
    this.rollbacks = 0;
    this.offers = 0;
    this.answers = 0;
    /** @type {Array<{ candidate: string, ice: number }>} */
    this.candidatesAdded = [];
    /** @type {((ev: object) => void) | null} */
    this.onnegotiationneeded = null;
    /** @type {((ev: object) => void) | null} */
    this.onsignalingstatechange = null;
    /** @type {((ev: { track: FakeTrack, transceiver: FakeTransceiver }) => void) | null} */
    this.ontrack = null;
    /** @type {((ev: { candidate: { toJSON(): object } | null }) => void) | null} */
    this.onicecandidate = null;
    /** @type {((ev: object) => void) | null} */
    this.onconnectionstatechange = null;
  }

  getConfiguration() {
    return this.config;
  }

  getTransceivers() {
    return [...this.transceivers];
  }

  /** @param {string} label @param {object} init */
  createDataChannel(label, init) {
    this.hasData = true;
    this.changed();
    return { label, ...init, readyState: 'connecting', onopen: null, onmessage: null, close() {}, send() {} };
  }

  /** @param {FakeTrack} track @param {unknown} stream */
  addTrack(track, stream) {
    let t = this.transceivers.find((x) => x.receiver.track.kind === track.kind && x.origin === 'remote' &&
      !x.sender.track && !x.sentEver && x.direction !== 'stopped');
    if (t) {
      t.sender.track = track;
      t.direction = t.direction === 'recvonly' ? 'sendrecv' : t.direction === 'inactive' ? 'sendonly' : t.direction;
    } else {
      t = new FakeTransceiver(this, track.kind, 'sendrecv', track, 'addTrack');
      this.transceivers.push(t);
    }
    t.sender.streams = [stream];
    this.changed();
    return t.sender;
  }

  /** @param {FakeTrack | 'audio' | 'video'} trackOrKind @param {{ direction?: string }} [init] */
  addTransceiver(trackOrKind, init = {}) {
    const track = typeof trackOrKind === 'string' ? null : trackOrKind;
    const kind = typeof trackOrKind === 'string' ? trackOrKind : trackOrKind.kind;
    const t = new FakeTransceiver(this, kind, init.direction ?? 'sendrecv', track, 'addTransceiver');
    this.transceivers.push(t);
    this.changed();
    return t;
  }

  restartIce() {
    this.restartPending = true;
    this.changed();
  }

  close() {
    this.closed = true;
    this.signalingState = 'closed';
  }

  /** @param {string} state */
  setConnectionState(state) {
    this.connectionState = state;
    this.onconnectionstatechange?.({});
  }

  /** @param {{ type: string, sdp?: string }} [desc] */
  async setLocalDescription(desc) {
    await Promise.resolve(); // a description is set in a later microtask, as in browsers
    this.assertOpen();
    const type = desc?.type ?? (this.signalingState === 'have-remote-offer' ? 'answer' : 'offer');
    if (type === 'offer') {
      if (this.signalingState !== 'stable' && this.signalingState !== 'have-local-offer') {
        throw domError('InvalidStateError', `offer in ${this.signalingState}`);
      }
      for (const t of this.transceivers) {
        if (t.mid === null && t.direction !== 'stopped') t.mid = String(this.nextMid++);
      }
      if (this.restartPending) this.pendingIce = this.ice + 1;
      else if (this.signalingState === 'stable') this.pendingIce = this.ice;
      this.localDescription = description('offer', {
        m: this.transceivers.filter((t) => t.mid !== null).map((t) => ({ mid: t.mid, kind: t.receiver.track.kind, direction: t.direction })),
        data: this.hasData,
        ice: this.pendingIce,
      });
      this.offers += 1;
      this.setState('have-local-offer');
    } else if (type === 'answer') {
      if (this.signalingState !== 'have-remote-offer' || !this.remoteDescription) {
        throw domError('InvalidStateError', `answer in ${this.signalingState}`);
      }
      const offer = JSON.parse(this.remoteDescription.sdp);
      const m = offer.m.map((/** @type {{ mid: string, direction: string }} */ o) => {
        const t = /** @type {FakeTransceiver} */ (this.transceivers.find((x) => x.mid === o.mid));
        const direction = intersect(t.direction, reverse(o.direction));
        t.currentDirection = direction;
        t.negotiated = t.direction;
        if (direction === 'sendrecv' || direction === 'sendonly') t.sentEver = true;
        return { mid: o.mid, kind: t.receiver.track.kind, direction };
      });
      if (offer.ice !== this.remoteIceNegotiated) {
        // Their ICE restart restarts ours too.
        this.ice += this.remoteIceNegotiated === undefined ? 0 : 1;
        this.restartPending = false;
      }
      this.remoteIceNegotiated = offer.ice;
      this.pendingIce = this.ice;
      this.dataNegotiated = this.hasData && offer.data;
      this.localDescription = description('answer', { m, data: this.dataNegotiated, ice: this.ice });
      this.currentLocalDescription = this.localDescription;
      this.answers += 1;
      this.setState('stable');
    } else {
      throw domError('InvalidStateError', `unsupported ${type}`);
    }
    this.gather();
  }

  /** @param {{ type: string, sdp: string }} desc */
  async setRemoteDescription(desc) {
    await Promise.resolve();
    this.assertOpen();
    const body = JSON.parse(desc.sdp);
    if (desc.type === 'offer') {
      if (this.signalingState === 'have-local-offer') this.rollback();
      if (this.signalingState !== 'stable' && this.signalingState !== 'have-remote-offer') {
        throw domError('InvalidStateError', `remote offer in ${this.signalingState}`);
      }
      for (const o of body.m) {
        let t = this.transceivers.find((x) => x.mid === o.mid);
        if (!t) {
          t = this.transceivers.find((x) => x.mid === null && x.origin === 'addTrack' &&
            x.receiver.track.kind === o.kind && x.direction !== 'stopped');
          if (t) t.mid = o.mid;
        }
        if (!t) {
          t = new FakeTransceiver(this, o.kind, 'recvonly', null, 'remote');
          t.mid = o.mid;
          this.transceivers.push(t);
        }
        if (o.direction === 'sendrecv' || o.direction === 'sendonly') this.fireTrack(t);
      }
      this.remoteDescription = { type: desc.type, sdp: desc.sdp };
      this.remoteIce = body.ice;
      this.setState('have-remote-offer');
    } else if (desc.type === 'answer') {
      if (this.signalingState !== 'have-local-offer' || !this.localDescription) {
        throw domError('InvalidStateError', `remote answer in ${this.signalingState}`);
      }
      const offer = JSON.parse(this.localDescription.sdp);
      for (const o of offer.m) {
        const a = body.m.find((/** @type {{ mid: string }} */ x) => x.mid === o.mid);
        const t = /** @type {FakeTransceiver} */ (this.transceivers.find((x) => x.mid === o.mid));
        if (!a) continue;
        t.currentDirection = reverse(a.direction);
        t.negotiated = o.direction;
        if (t.currentDirection === 'sendrecv' || t.currentDirection === 'sendonly') t.sentEver = true;
        if (a.direction === 'sendrecv' || a.direction === 'sendonly') this.fireTrack(t);
      }
      this.ice = offer.ice;
      this.restartPending = false;
      this.dataNegotiated = offer.data && body.data;
      this.currentLocalDescription = this.localDescription;
      this.remoteDescription = { type: desc.type, sdp: desc.sdp };
      this.remoteIce = body.ice;
      this.remoteIceNegotiated = body.ice;
      this.setState('stable');
    } else {
      throw domError('InvalidStateError', `unsupported ${desc.type}`);
    }
  }

  /** @param {{ candidate: string, ice: number }} candidate */
  async addIceCandidate(candidate) {
    await Promise.resolve();
    this.assertOpen();
    if (!this.remoteDescription) throw domError('InvalidStateError', 'no remote description');
    if (candidate.ice !== this.remoteIce) throw domError('OperationError', 'unknown ufrag');
    this.candidatesAdded.push(candidate);
  }

  // ---------------------------------------------------------------- internals

  assertOpen() {
    if (this.closed) throw domError('InvalidStateError', 'closed');
  }

  /** Something that needs negotiating may have changed. */
  changed() {
    if (this.neededQueued) return;
    this.neededQueued = true;
    setTimeout(() => {
      this.neededQueued = false;
      if (!this.closed && this.signalingState === 'stable' && this.negotiationNeeded()) this.onnegotiationneeded?.({});
    }, 0);
  }

  negotiationNeeded() {
    return this.restartPending || (this.hasData && !this.dataNegotiated) ||
      this.transceivers.some((t) => t.direction !== 'stopped' && (t.mid === null || t.negotiated !== t.direction));
  }

  /** Our offer, undone: the mids it gave and its ICE generation. */
  rollback() {
    const offer = JSON.parse(/** @type {{ sdp: string }} */ (this.localDescription).sdp);
    for (const o of offer.m) {
      const t = this.transceivers.find((x) => x.mid === o.mid);
      if (t && t.negotiated === null && t.currentDirection === null) t.mid = null;
    }
    this.pendingIce = this.ice;
    this.localDescription = this.currentLocalDescription;
    this.rollbacks += 1;
    this.setState('stable');
  }

  /** @param {string} state */
  setState(state) {
    this.signalingState = state;
    this.onsignalingstatechange?.({});
    if (state === 'stable') this.changed();
  }

  /** @param {FakeTransceiver} t */
  fireTrack(t) {
    if (t.trackFired) return;
    t.trackFired = true;
    this.ontrack?.({ track: t.receiver.track, transceiver: t });
  }

  /** One candidate for the description just set, in a later task. */
  gather() {
    const ice = this.signalingState === 'have-local-offer' ? this.pendingIce : this.ice;
    const n = ++serial;
    setTimeout(() => {
      if (this.closed) return;
      const candidate = { candidate: `candidate ${this.name} ${n}`, ice };
      this.onicecandidate?.({ candidate: { toJSON: () => candidate } });
    }, 0);
  }
}
