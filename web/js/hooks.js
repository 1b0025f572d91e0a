// What the browser tests read from the page (docs/web.md, "Test hooks"), installed only when
// a test asks for them: `window.__meshcallTestHooks = true` before the app's scripts run
// (Playwright: `context.addInitScript`). main.js then loads this module first and hands the
// hooks to the page it starts; otherwise none of this is loaded, recorded or run.
//
//   window.T             { joinedAt, selfId, firstFrameAt, errors, notices }
//   window.collectStats  async () => { [peerId]: { connectionState, framesDecoded,
//                                      frameWidth, audioPackets, pair, relayed } }

/**
 * @typedef {object} TestState
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

/**
 * What the pages report to the tests.
 * @typedef {object} TestHooks
 * @property {(selfId: string) => void} joined  every `joined`, fresh or resumed
 * @property {(peerId: string) => void} firstFrame  a peer's video painted its first frame
 * @property {(kind: string) => void} notice  a notice was shown
 * @property {(fn: () => Promise<Record<string, StatsSummary>>) => void} exposeStats
 */

/**
 * Publish `window.T`, start recording uncaught errors, and return what the pages report to.
 * @returns {TestHooks}
 */
export function installHooks() {
  /** @type {TestState} */
  const T = { joinedAt: null, selfId: null, firstFrameAt: {}, errors: [], notices: [] };
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
  return {
    joined(selfId) {
      T.joinedAt = Date.now();
      T.selfId = selfId;
    },
    firstFrame(peerId) {
      T.firstFrameAt[peerId] ??= Date.now();
    },
    notice(kind) {
      T.notices.push(kind);
    },
    exposeStats(fn) {
      Object.assign(window, { collectStats: fn });
    },
  };
}
