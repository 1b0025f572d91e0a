// The signalling client: one WebSocket to the service, kept alive and brought back.
//
// - connects and joins the room; after a drop it reconnects with exponential backoff and
//   jitter and sends `resume` with the latest token, so the room never sees us leave;
// - when the service refuses the token (`resumeFailed`) it joins afresh on the same socket;
// - pings every few minutes so the idle timeout (10 minutes) never fires, and treats a
//   missing pong as a dead socket; pings at once, with a short wait, when the network may
//   have changed under it (probe);
// - queues outgoing `signal`s while the socket is down and sends them after a resume;
// - publishes typed events; it knows nothing about peers or the page.
//
// Payloads are never logged: SDP and ICE candidates carry IP addresses.

import { Emitter } from './emitter.js';
import { parseConfig, signallingUrl } from './boot.js';
import { parseServerMessage } from './protocol.js';

/** @typedef {import('./protocol.js').ClientMessage} ClientMessage */
/** @typedef {import('./protocol.js').Joined} Joined */
/** @typedef {import('./protocol.js').ErrorMsg} ErrorMsg */
/** @typedef {import('./protocol.js').SignalData} SignalData */
/** @typedef {import('./boot.js').EarlySocket} EarlySocket */

/**
 * @typedef {'connecting' | 'joining' | 'joined' | 'waiting' | 'closed'} SignalingState
 *   waiting: the socket is down and the next attempt is scheduled (`retryAt`).
 */
/**
 * @typedef {object} Status
 * @property {SignalingState} state
 * @property {number} failures  consecutive attempts that did not reach `joined`
 * @property {number | null} retryAt  epoch ms of the next attempt while waiting
 * @property {boolean} everJoined
 */
/**
 * @typedef {object} SignalingEvents
 * @property {Joined} joined  on every joined, fresh or resumed
 * @property {ErrorMsg} resumeFailed  the token was refused; a fresh join follows
 * @property {string} newParticipant
 * @property {string} participantLeft
 * @property {{ from: string, data: SignalData }} signal
 * @property {ErrorMsg} error  every other refusal (peerNotFound, rateLimited, ...)
 * @property {ErrorMsg} fatal  the room cannot be joined (roomFull, invalidRoomId); stopped
 * @property {Status} status
 */

/** Refusals after which retrying the same join is pointless. */
const FATAL = new Set(['roomFull', 'invalidRoomId']);

/**
 * @typedef {object} SignalingOptions
 * @property {string} url  ws:// or wss:// URL of the service
 * @property {string} roomId
 * @property {number} [pingIntervalMs]  keep-alive period (default 5 minutes)
 * @property {number} [pongTimeoutMs]  a ping unanswered this long means the socket is dead
 * @property {number} [probeTimeoutMs]  the same for a probe (the network may have changed)
 * @property {number} [joinTimeoutMs]  an open socket not joined this long is retried
 * @property {number} [backoffBaseMs]  first retry delay (before jitter)
 * @property {number} [backoffMaxMs]  longest retry delay
 * @property {number} [queueLimit]  most signals kept while the socket is down
 * @property {number} [socketMaxAgeMs]  move to a fresh socket (a resume) this long after
 *   joining on one; 0 never. For services that end connections at a fixed age (API
 *   Gateway: 2 hours), so the call never notices.
 */

/** @extends {Emitter<SignalingEvents>} */
export class Signaling extends Emitter {
  /** @param {SignalingOptions} opts */
  constructor(opts) {
    super();
    this.url = opts.url;
    this.roomId = opts.roomId;
    this.pingIntervalMs = opts.pingIntervalMs ?? 5 * 60_000;
    this.pongTimeoutMs = opts.pongTimeoutMs ?? 20_000;
    this.probeTimeoutMs = opts.probeTimeoutMs ?? 3_000;
    this.joinTimeoutMs = opts.joinTimeoutMs ?? 10_000;
    this.backoffBaseMs = opts.backoffBaseMs ?? 500;
    this.backoffMaxMs = opts.backoffMaxMs ?? 10_000;
    this.queueLimit = opts.queueLimit ?? 500;
    this.socketMaxAgeMs = opts.socketMaxAgeMs ?? 0;

    /** @type {WebSocket | null} */
    this.ws = null;
    /** @type {SignalingState} */
    this.state = 'closed';
    /** The latest resume token; null before the first join and after a refusal. */
    /** @type {string | null} */
    this.token = null;
    /** @type {string | null} */
    this.selfId = null;
    this.failures = 0;
    this.everJoined = false;
    /** @type {number | null} */
    this.retryAt = null;
    this.stopped = true;
    /** @type {{ to: string, data: SignalData }[]} */
    this.queue = [];
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.retryTimer = undefined;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.joinTimer = undefined;
    /** @type {ReturnType<typeof setInterval> | undefined} */
    this.pingTimer = undefined;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.pongTimer = undefined;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.rotateTimer = undefined;
  }

  /**
   * Connect and join the room. `early`: the socket opened (and joining) as the page started
   * (early.js), taken over with what it received meanwhile, if it is still good and for
   * this URL; else a fresh one.
   * @param {EarlySocket | null} [early]
   */
  start(early) {
    this.stopped = false;
    if (early && early.url === this.url && early.ws.readyState <= WebSocket.OPEN) {
      this.adopt(early);
    } else {
      early?.ws.close();
      this.open();
    }
  }

  /**
   * The network may have changed under the socket (the browser came back online, a peer
   * connection lost its path): a socket bound to an address that has gone stays open and
   * swallows what we send until the next keep-alive, minutes later. Ping now and give the
   * socket up when no pong comes within probeTimeoutMs; the resume on the next one keeps
   * our place in the room.
   */
  probe() {
    if (this.stopped || this.state !== 'joined' || this.pongTimer !== undefined) return;
    this.send({ action: 'ping' });
    this.pongTimer = setTimeout(() => this.abandon(), this.probeTimeoutMs);
  }

  /** Skip the backoff wait and try now (a retry button, the browser coming back online). */
  reconnectNow() {
    if (this.stopped || this.state !== 'waiting') return;
    clearTimeout(this.retryTimer);
    this.open();
  }

  /**
   * Send a `signal` to one peer; kept for later while the socket is down.
   * @param {string} to
   * @param {SignalData} data
   */
  signal(to, data) {
    if (this.state === 'joined' && this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.send({ action: 'signal', to, data });
    } else if (this.queue.length < this.queueLimit) {
      this.queue.push({ to, data });
    }
  }

  /** Leave cleanly: the room is told at once, and nothing reconnects. */
  leave() {
    if (this.stopped) return;
    this.stopped = true;
    this.clearTimers();
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      detach(ws);
      if (ws.readyState === WebSocket.OPEN) {
        ws.send(JSON.stringify({ action: 'leaveRoom' }));
        ws.close(1000, 'leave');
      } else {
        ws.close();
      }
    }
    this.queue = [];
    this.setState('closed');
  }

  // ------------------------------------------------------------------ internals

  open() {
    this.clearTimers();
    this.retryAt = null;
    this.setState('connecting');
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch {
      this.dropped();
      return;
    }
    this.ws = ws;
    this.listen(ws);
    ws.onopen = () => {
      if (this.token) {
        this.send({ action: 'resume', token: this.token });
      } else {
        this.send({ action: 'joinRoom', roomId: this.roomId });
      }
      this.joining();
    };
  }

  /** Take over the early socket (see start). @param {EarlySocket} early */
  adopt(early) {
    this.clearTimers();
    this.retryAt = null;
    this.setState('connecting');
    const ws = early.ws;
    this.ws = ws;
    this.listen(ws);
    if (ws.readyState === WebSocket.OPEN) {
      this.joining(early.openedAt); // it sent joinRoom when it opened
    } else {
      ws.onopen = () => {
        this.send({ action: 'joinRoom', roomId: this.roomId });
        this.joining();
      };
    }
    for (const text of early.received.splice(0)) this.receive(text);
  }

  /** @param {WebSocket} ws */
  listen(ws) {
    ws.onmessage = (ev) => {
      if (typeof ev.data === 'string') this.receive(ev.data);
    };
    ws.onclose = () => this.dropped();
    // An error is always followed by close; the close handler does the work.
    ws.onerror = () => {};
  }

  /**
   * The socket is open and our join (or resume) is on its way.
   * @param {number} [openedAt]  performance.now() when it opened, if that was earlier
   */
  joining(openedAt) {
    performance.mark('meshcall:socket-open', openedAt === undefined ? undefined : { startTime: openedAt });
    this.setState('joining');
    this.joinTimer = setTimeout(() => this.abandon(), this.joinTimeoutMs);
  }

  /** @param {string} text */
  receive(text) {
    const msg = parseServerMessage(text);
    if (!msg) return;
    switch (msg.type) {
      case 'joined':
        this.joinedWith(msg);
        break;
      case 'newParticipant':
        this.emit('newParticipant', msg.participantConnectionId);
        break;
      case 'participantLeft':
        this.emit('participantLeft', msg.participantConnectionId);
        break;
      case 'signal':
        this.emit('signal', { from: msg.from, data: msg.data });
        break;
      case 'pong':
        clearTimeout(this.pongTimer);
        this.pongTimer = undefined;
        break;
      case 'error':
        this.refused(msg);
        break;
    }
  }

  /** @param {Joined} msg */
  joinedWith(msg) {
    clearTimeout(this.joinTimer);
    const resumed = msg.resumed && msg.connectionId === this.selfId;
    if (!resumed) this.queue = [];
    this.selfId = msg.connectionId;
    this.token = msg.resumeToken ?? null;
    this.failures = 0;
    this.everJoined = true;
    this.setState('joined');
    this.startPinging();
    clearTimeout(this.rotateTimer);
    if (this.socketMaxAgeMs > 0 && this.token) {
      this.rotateTimer = setTimeout(() => this.rotate(), this.socketMaxAgeMs);
    }
    this.emit('joined', { ...msg, resumed });
    const queued = this.queue;
    this.queue = [];
    for (const { to, data } of queued) this.send({ action: 'signal', to, data });
  }

  /** @param {ErrorMsg} msg */
  refused(msg) {
    if (msg.code === 'resumeFailed') {
      this.token = null;
      this.queue = [];
      this.emit('resumeFailed', msg);
      this.send({ action: 'joinRoom', roomId: this.roomId });
      return;
    }
    if (FATAL.has(msg.code) && this.state !== 'joined') {
      this.emit('fatal', msg);
      this.leave();
      return;
    }
    if (msg.code === 'rateLimited' && this.state === 'joining') {
      // The join itself may have been dropped: ask again shortly.
      setTimeout(() => {
        if (this.state === 'joining') this.send({ action: 'joinRoom', roomId: this.roomId });
      }, 1000);
    }
    this.emit('error', msg);
  }

  startPinging() {
    clearInterval(this.pingTimer);
    this.pingTimer = setInterval(() => {
      this.send({ action: 'ping' });
      if (this.pongTimer === undefined) {
        this.pongTimer = setTimeout(() => this.abandon(), this.pongTimeoutMs);
      }
    }, this.pingIntervalMs);
  }

  /**
   * The socket looks dead (no pong, no joined): give it up and reconnect.
   * While we hold a participant (joined, or a resume is pending) the old socket gets no
   * close frame: that would be a clean leave. The resume on the next socket takes the
   * participant over and the service closes the old one. A socket that only asked to join
   * is closed cleanly, so that a late join does not linger.
   */
  abandon() {
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      detach(ws);
      if (!this.token) ws.close();
    }
    this.dropped();
  }

  /**
   * Move to a fresh socket before the service ends this one for its age: resume on a new
   * socket, which takes the participant over (the service then closes the old one). The
   * old socket is never closed from here: a close frame would be a clean leave.
   */
  rotate() {
    if (this.stopped || this.state !== 'joined' || !this.token) return;
    const old = this.ws;
    if (old) detach(old);
    this.ws = null;
    this.open();
  }

  /** The socket is gone (or never opened); schedule the next attempt. */
  dropped() {
    if (this.ws) detach(this.ws);
    this.ws = null;
    this.clearTimers();
    if (this.stopped) return;
    const delay = backoff(this.failures, this.backoffBaseMs, this.backoffMaxMs);
    this.failures += 1;
    this.retryAt = Date.now() + delay;
    this.setState('waiting');
    this.retryTimer = setTimeout(() => this.open(), delay);
  }

  /** @param {ClientMessage} msg */
  send(msg) {
    const ws = this.ws;
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg));
  }

  /** @param {SignalingState} state */
  setState(state) {
    this.state = state;
    this.emit('status', {
      state,
      failures: this.failures,
      retryAt: this.retryAt,
      everJoined: this.everJoined,
    });
  }

  clearTimers() {
    clearTimeout(this.retryTimer);
    clearTimeout(this.joinTimer);
    clearInterval(this.pingTimer);
    clearTimeout(this.pongTimer);
    clearTimeout(this.rotateTimer);
    this.pongTimer = undefined;
  }
}

/**
 * Delay before attempt `n` (0 = first retry): exponential, capped, with "equal jitter"
 * (half fixed, half random), so a room that lost its server does not come back in lockstep.
 * @param {number} n
 * @param {number} baseMs
 * @param {number} maxMs
 */
export function backoff(n, baseMs, maxMs) {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(n, 20));
  return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
}

/** @param {WebSocket} ws */
function detach(ws) {
  ws.onopen = null;
  ws.onmessage = null;
  ws.onclose = null;
  ws.onerror = null;
}

/**
 * The service's settings, as the boot script read them (the page's meshcall-config meta, or
 * /config.json; early.js): the signalling URL (`wsUrl`, else /ws on this page's host), the
 * ICE transport policy and the socket age limit.
 * @param {Promise<unknown>} read  the raw settings; null when there are none
 * @returns {Promise<{ url: string, iceTransportPolicy: RTCIceTransportPolicy, socketMaxAgeMs: number }>}
 */
export async function loadConfig(read) {
  const config = parseConfig(await read);
  const { wsUrl: _wsUrl, ...rest } = config;
  return { url: signallingUrl(config, location), ...rest };
}
