// Media watched from inside a page, for the network tests and the quality benchmark: every
// 500 ms the page reads per remote participant the decoded video frames and received audio
// packets (window.collectStats, the app's test hook, or `window.__watchStats` where a page
// has no app), and keeps the longest time without a newly decoded frame and without a new
// audio packet, the frame widths seen, and the decoded frames per second over the window.
// Sampled inside the page: no round trip per sample, so four pages can be watched at once
// on two cores (each sample is one getStats per connection; every 200 ms was enough to
// cost frames of its own on a busy machine).

/**
 * Runs in the page: start watching `ids` (replacing any earlier watch).
 * @param {string[]} ids
 */
export function startWatch(ids) {
  const w = /** @type {any} */ (window);
  if (w.__watch) clearInterval(w.__watch.timer);
  const read = w.__watchStats ?? (() => window.collectStats());
  const t0 = performance.now();
  /** @type {Record<string, { frames: number, audio: number, fAt: number, aAt: number, fGap: number, aGap: number, widths: number[], f0: number }>} */
  const per = {};
  for (const id of ids) per[id] = { frames: -1, audio: -1, fAt: t0, aAt: t0, fGap: 0, aGap: 0, widths: [], f0: -1 };
  let busy = false;
  const timer = setInterval(async () => {
    if (busy) return;
    busy = true;
    try {
      const s = await read();
      const now = performance.now();
      for (const id of ids) {
        const r = s[id];
        const p = per[id];
        if (!r) continue;
        if (p.f0 < 0) p.f0 = r.framesDecoded;
        if (r.framesDecoded > p.frames) {
          if (p.frames >= 0) p.fGap = Math.max(p.fGap, now - p.fAt);
          p.frames = r.framesDecoded;
          p.fAt = now;
        }
        if (r.audioPackets > p.audio) {
          if (p.audio >= 0) p.aGap = Math.max(p.aGap, now - p.aAt);
          p.audio = r.audioPackets;
          p.aAt = now;
        }
        if (r.frameWidth && p.widths[p.widths.length - 1] !== r.frameWidth) p.widths.push(r.frameWidth);
      }
    } finally {
      busy = false;
    }
  }, 500);
  w.__watch = { timer, per, t0 };
}

/**
 * Runs in the page: what the watch saw so far, per id: longest video and audio gaps (ms,
 * counting the time since the last frame or packet), frame widths in order, decoded frames
 * per second over the window.
 */
export function readWatch() {
  const w = /** @type {any} */ (window).__watch;
  const now = performance.now();
  /** @type {Record<string, { videoGapMs: number, audioGapMs: number, widths: number[], fps: number }>} */
  const out = {};
  for (const [id, p] of Object.entries(/** @type {Record<string, any>} */ (w.per))) {
    out[id] = {
      videoGapMs: Math.round(Math.max(p.fGap, now - p.fAt)),
      audioGapMs: Math.round(Math.max(p.aGap, now - p.aAt)),
      widths: p.widths,
      fps: Math.round(((p.frames - p.f0) / ((now - w.t0) / 1000)) * 10) / 10,
    };
  }
  return out;
}

/**
 * Runs in every page before the app (init script): remembers each RTCPeerConnection, so
 * rawVideoStats can read what collectStats boils away.
 */
export function pcRecorder() {
  const Orig = window.RTCPeerConnection;
  /** @type {RTCPeerConnection[]} */
  const pcs = [];
  Object.defineProperty(window, '__pcs', { value: pcs });
  window.RTCPeerConnection = class extends Orig {
    /** @param {RTCConfiguration} [cfg] */
    constructor(cfg) {
      super(cfg);
      pcs.push(this);
    }
  };
}

/**
 * Runs in the page (after pcRecorder): per open connection, the video counters that tell a
 * freeze's cause: inbound freezes, key frames and loss recovery; outbound key frames,
 * resolution changes, the encoder's target and what limits it.
 */
export async function rawVideoStats() {
  const out = [];
  for (const pc of /** @type {RTCPeerConnection[]} */ (/** @type {any} */ (window).__pcs)) {
    if (pc.connectionState === 'closed') continue;
    /** @type {Record<string, any>} */
    const row = { state: pc.connectionState };
    (await pc.getStats()).forEach((/** @type {any} */ r) => {
      if (r.kind !== 'video') return;
      if (r.type === 'inbound-rtp' && (r.framesDecoded ?? 0) >= (row.in?.framesDecoded ?? 0)) {
        row.in = {
          framesDecoded: r.framesDecoded, keyFramesDecoded: r.keyFramesDecoded, framesDropped: r.framesDropped,
          freezeCount: r.freezeCount, totalFreezesDuration: r.totalFreezesDuration, pauseCount: r.pauseCount,
          pliCount: r.pliCount, firCount: r.firCount, nackCount: r.nackCount, packetsLost: r.packetsLost,
          packetsReceived: r.packetsReceived, frameWidth: r.frameWidth, jitterBufferDelay: r.jitterBufferDelay,
        };
      }
      if (r.type === 'outbound-rtp') {
        row.out = {
          framesEncoded: r.framesEncoded, keyFramesEncoded: r.keyFramesEncoded, frameWidth: r.frameWidth,
          qualityLimitationReason: r.qualityLimitationReason,
          qualityLimitationResolutionChanges: r.qualityLimitationResolutionChanges,
          targetBitrate: r.targetBitrate, pliCount: r.pliCount, firCount: r.firCount, nackCount: r.nackCount,
          retransmittedBytesSent: r.retransmittedBytesSent, bytesSent: r.bytesSent,
        };
      }
    });
    out.push(row);
  }
  return out;
}
