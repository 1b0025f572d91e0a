// Media watched from inside a page, for the network tests and the call-quality benchmark
// (tests/bench-join/quality.js): every peer connection the page makes is remembered
// (`recorder`, an init script), and every 500 ms its inbound media is read from getStats,
// keyed by the remote end's address:port (so it works on any page, the app's or the
// reference's, and a test tells people apart by their namespaces' addresses).
//
// Freezes come from the receiver's own counters (Chromium's inbound-rtp `freezeCount` and
// `totalFreezesDuration`: an interval between rendered frames longer than
// max(3 x the mean frame interval, the mean + 150 ms)), not from when the page's sampler got
// to run: on a busy machine a page's timers stall for seconds, and an interval between two
// samples says as much about the sampler as about the video. The longest freeze of a window is
// the growth of totalFreezesDuration over a sample where freezeCount grew by one (by k: its
// mean, a lower bound). Audio: the share of samples the receiver concealed (lost or late).

/** Runs in every page before its scripts: remember each RTCPeerConnection; `__q()` reads them. */
export function recorder() {
  const Orig = window.RTCPeerConnection;
  /** @type {RTCPeerConnection[]} */
  const pcs = [];
  window.RTCPeerConnection = class extends Orig {
    /** @param {RTCConfiguration} [cfg] */
    constructor(cfg) {
      super(cfg);
      pcs.push(this);
    }
  };
  Object.defineProperty(window, '__q', {
    value: async () => {
      /** @type {Record<string, { frames: number, width: number, height: number, freezes: number, freezeS: number, audio: number, concealed: number, samples: number }>} */
      const out = {};
      for (const pc of pcs) {
        if (pc.connectionState === 'closed') continue;
        const report = await pc.getStats();
        let key = '';
        const row = { frames: 0, width: 0, height: 0, freezes: 0, freezeS: 0, audio: 0, concealed: 0, samples: 0 };
        report.forEach((/** @type {any} */ r) => {
          if (r.type === 'transport' && r.selectedCandidatePairId) {
            const pair = report.get(r.selectedCandidatePairId);
            const rm = pair && report.get(pair.remoteCandidateId);
            if (rm) key = `${rm.address}:${rm.port}`;
          } else if (r.type === 'inbound-rtp' && r.kind === 'video' && (r.framesDecoded ?? 0) >= row.frames) {
            row.frames = r.framesDecoded ?? 0;
            row.width = r.frameWidth ?? 0;
            row.height = r.frameHeight ?? 0;
            row.freezes = r.freezeCount ?? 0;
            row.freezeS = r.totalFreezesDuration ?? 0;
          } else if (r.type === 'inbound-rtp' && r.kind === 'audio') {
            row.audio += r.packetsReceived ?? 0;
            row.concealed += r.concealedSamples ?? 0;
            row.samples += r.totalSamplesReceived ?? 0;
          }
        });
        if (key) out[key] = row;
      }
      return out;
    },
  });
}

/** Runs in the page: start a window; every 500 ms, the counters of every remote end. */
export function startWatch() {
  const w = /** @type {any} */ (window);
  if (w.__qs) clearInterval(w.__qs.timer);
  /** @type {Record<string, any>} */
  const per = {};
  let busy = false;
  const sample = async () => {
    if (busy) return;
    busy = true;
    try {
      const s = await w.__q();
      for (const [key, r] of Object.entries(s)) {
        const p = per[key];
        if (!p) {
          per[key] = { first: r, last: r, longestFreezeS: 0, heights: [], widths: [] };
          continue;
        }
        const dn = r.freezes - p.last.freezes;
        if (dn > 0) p.longestFreezeS = Math.max(p.longestFreezeS, (r.freezeS - p.last.freezeS) / dn);
        p.last = r;
        if (r.height) {
          p.heights.push(r.height);
          p.widths.push(r.width);
        }
      }
    } finally {
      busy = false;
    }
  };
  w.__qs = { timer: setInterval(sample, 500), per, t0: performance.now() };
  void sample();
}

/**
 * Runs in the page: per remote end (address:port), over the window so far: decoded frames
 * per second, the longest freeze (ms), the freezes' total (ms), the share of audio concealed
 * (%), audio packets received, and the median frame size.
 */
export async function readWatch() {
  const w = /** @type {any} */ (window);
  const seconds = (performance.now() - w.__qs.t0) / 1000;
  /** @type {Record<string, { fps: number, frames: number, longestFreezeMs: number, freezesMs: number, concealedPct: number, audioPackets: number, height: number, width: number }>} */
  const out = {};
  const mid = (/** @type {number[]} */ xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1] ?? 0;
  for (const [key, p] of Object.entries(/** @type {Record<string, any>} */ (w.__qs.per))) {
    const d = (/** @type {string} */ k) => p.last[k] - p.first[k];
    out[key] = {
      fps: Math.round((d('frames') / seconds) * 10) / 10,
      frames: d('frames'),
      longestFreezeMs: Math.round(p.longestFreezeS * 1000),
      freezesMs: Math.round(d('freezeS') * 1000),
      concealedPct: d('samples') > 0 ? Math.round((d('concealed') / d('samples')) * 1000) / 10 : 100,
      audioPackets: d('audio'),
      height: mid(p.heights),
      width: mid(p.widths),
    };
  }
  return out;
}
