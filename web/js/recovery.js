// When one peer connection needs an ICE restart, from its connection state alone:
//
// - it never connected within `connectTimeoutMs` of being made;
// - it stayed `disconnected` for `disconnectedGraceMs` (ICE often heals a short drop itself);
// - it went `failed`;
// - and, while it stays broken, again after RETRY_MS (5, 10, 20 s, then every 30 s).
//
// How the restart is made (and by which side) is the peer's business (peer.js). The other
// reasons to restart (our signalling socket came back, the browser came back online) come
// from outside and do not go through here.

/** ICE restarts while a connection stays broken, this long apart: 5, 10, 20 s, then 30 s. */
export const RETRY_MS = [5_000, 10_000, 20_000, 30_000];

/**
 * @typedef {object} RecoveryOptions
 * @property {(reason: string) => void} restart  the connection is broken: restart ICE
 * @property {() => RTCPeerConnectionState} state  the connection's state now
 * @property {number} [connectTimeoutMs]  no connection after this long counts as failed
 * @property {number} [disconnectedGraceMs]  `disconnected` this long counts as failed
 */

export class Recovery {
  /** @param {RecoveryOptions} opts */
  constructor(opts) {
    this.restart = opts.restart;
    this.state = opts.state;
    this.disconnectedGraceMs = opts.disconnectedGraceMs ?? 4_000;
    this.everConnected = false;
    this.closed = false;
    /** Restarts since the connection was last `connected`. */
    this.attempts = 0;
    /** @type {Record<'connect' | 'disconnected' | 'retry', ReturnType<typeof setTimeout> | undefined>} */
    this.timers = { connect: undefined, disconnected: undefined, retry: undefined };
    this.timers.connect = setTimeout(() => {
      if (!this.everConnected) this.fail('never connected');
    }, opts.connectTimeoutMs ?? 20_000);
  }

  /** Feed every connection state change. @param {RTCPeerConnectionState} state */
  changed(state) {
    clearTimeout(this.timers.disconnected);
    if (state === 'connected') {
      this.everConnected = true;
      this.attempts = 0;
      clearTimeout(this.timers.connect);
      clearTimeout(this.timers.retry);
    } else if (state === 'disconnected') {
      this.timers.disconnected = setTimeout(() => this.fail('disconnected'), this.disconnectedGraceMs);
    } else if (state === 'failed') {
      this.fail('failed');
    }
  }

  /** @param {string} reason */
  fail(reason) {
    if (this.closed) return;
    this.restart(reason);
    clearTimeout(this.timers.retry);
    const wait = RETRY_MS[Math.min(this.attempts, RETRY_MS.length - 1)];
    this.attempts += 1;
    this.timers.retry = setTimeout(() => {
      if (this.state() !== 'connected') this.fail(reason);
    }, wait);
  }

  close() {
    this.closed = true;
    for (const t of Object.values(this.timers)) clearTimeout(t);
  }
}
