// What the browser tests read from the page (docs/web.md, "Test hooks"):
//   window.T             { joinedAt, selfId, firstFrameAt, errors, notices }
//   window.collectStats  async () => { [peerId]: { connectionState, framesDecoded,
//                                      frameWidth, audioPackets, pair, relayed } }
// They are cheap, hold no secrets, and are useful when debugging a call by hand too.

/**
 * @typedef {object} TestHooks
 * @property {number | null} joinedAt  epoch ms of the latest `joined`
 * @property {string | null} selfId  our connection id from the latest `joined`
 * @property {Record<string, number>} firstFrameAt  peer id -> epoch ms of its first painted frame
 * @property {string[]} errors  uncaught errors and unhandled rejections
 * @property {string[]} notices  every notice kind shown, in order
 */

/**
 * @typedef {object} StatsSummary
 * @property {RTCPeerConnectionState} connectionState
 * @property {number} framesDecoded
 * @property {number} frameWidth
 * @property {number} audioPackets
 * @property {string | null} pair
 * @property {boolean} relayed
 */

/** @type {TestHooks} */
export const T = { joinedAt: null, selfId: null, firstFrameAt: {}, errors: [], notices: [] };

/** Publish `window.T` and start recording uncaught errors. */
export function installHooks() {
  Object.assign(window, { T });
  window.addEventListener('error', (ev) => {
    const msg = ev.message || String(ev.error);
    // Browser noise, not a fault of the page.
    if (/ResizeObserver loop/.test(msg)) return;
    const where = ev.filename ? ` (${ev.filename.replace(location.origin, '')}:${ev.lineno})` : '';
    T.errors.push(`${msg}${where}`);
  });
  window.addEventListener('unhandledrejection', (ev) => {
    const r = ev.reason;
    T.errors.push(r instanceof Error ? `${r.name}: ${r.message}` : `unhandled rejection: ${String(r)}`);
  });
}

/** @param {() => Promise<Record<string, StatsSummary>>} fn */
export function exposeStats(fn) {
  Object.assign(window, { collectStats: fn });
}
