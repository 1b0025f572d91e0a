// The upload budget: what each outgoing video stream may use, as `maxBitrate` and
// `scaleResolutionDownBy` for its sender. Pure (no WebRTC, no timers): room.js feeds it the
// mesh and each connection's bandwidth estimate and applies what it answers.
//
// - Bitrate: a total video budget split over the N-1 outgoing streams. What a stream's path
//   carries (its smoothed estimate, with headroom) decides how much of the budget it leaves
//   to the others (splitBudget, "water filling"), never its own cap, which stays at least
//   its equal share: the browser's congestion control already holds it to what its path
//   carries, and a cap at the estimate would keep that estimate from growing back (it may
//   probe only up to the cap, so every dip would ratchet the stream down; measured: on a
//   1 Mbit/s lossy uplink the old cap held three streams at about 55 kbit/s each). An
//   estimate moves the split only when it changes by more than CAP_STEP: a sender's
//   parameters are not rewritten for noise.
// - Picture size: from the stream's share of the budget (the mesh: how many people there
//   are), never from the live estimate. A thin or lossy link is the browser's to adapt to:
//   its encoder lowers resolution and frame rate itself as the estimate drops, and a scale of
//   ours on top would stack on its own and, from an estimate that wobbles around a threshold,
//   flip the picture size (each flip a new key frame) every few seconds. Rungs have
//   hysteresis: a stream moves up a rung only with RUNG_UP_MARGIN to spare.
// - A shared screen keeps its resolution (up to 1080 lines).
// - The scale is the exact ratio of heights, so the picture sent has the rung's height.

/** Total upload for outgoing video, bits/s: fits a modest home uplink with room for audio. */
export const VIDEO_BUDGET_BPS = 2_500_000;
/** No single stream gets more than this, bits/s. */
export const PER_PEER_MAX_BPS = 2_500_000;
/** No stream is squeezed below this, bits/s (below it video is not worth sending). */
export const PER_PEER_MIN_BPS = 150_000;
/** Headroom over a connection's bandwidth estimate, so the estimate can still grow. */
export const ESTIMATE_HEADROOM = 1.25;
/** Weight of a new estimate in the smoothed one. */
export const ESTIMATE_WEIGHT = 0.4;
/** A stream's cap is rewritten only when the new one differs by more than this fraction. */
export const CAP_STEP = 0.15;
/** A stream goes up a rung only when its share clears the rung's floor by this fraction. */
export const RUNG_UP_MARGIN = 0.2;

/** Picture heights by the bitrate they need (camera video, VP8/H.264-ish), highest first. */
const RUNGS = [
  { height: 720, bps: 1_200_000 },
  { height: 540, bps: 600_000 },
  { height: 360, bps: 300_000 },
  { height: 240, bps: 0 },
];

/**
 * @typedef {object} VideoLimits
 * @property {number} maxBitrate  bits/s
 * @property {number} scaleResolutionDownBy  >= 1
 */

/**
 * Split `budget` over streams, each limited by its own cap (what its path can carry),
 * fairly: the most constrained streams are served first and what they cannot use goes
 * to the rest ("water filling"). Every share is kept within [min, max].
 * @param {number} budget
 * @param {number[]} caps  per stream; Infinity when unknown
 * @param {number} min
 * @param {number} max
 * @returns {number[]} bits/s per stream, in the order of `caps`
 */
export function splitBudget(budget, caps, min, max) {
  const order = caps.map((c, i) => ({ c, i })).sort((a, b) => a.c - b.c);
  const out = new Array(caps.length).fill(min);
  let remaining = budget;
  let left = caps.length;
  for (const { c, i } of order) {
    const fair = remaining / left;
    const share = Math.max(min, Math.min(fair, c, max));
    out[i] = Math.round(share);
    remaining = Math.max(0, remaining - share);
    left -= 1;
  }
  return out;
}

/**
 * The picture height worth sending at a bitrate, with hysteresis: from `current` (the
 * height sent now, if any) a stream goes down as soon as `bps` is under that rung's floor,
 * and up only when `bps` clears the higher rung's floor by RUNG_UP_MARGIN.
 * @param {number} bps
 * @param {number} [current]
 */
export function targetHeight(bps, current) {
  const plain = /** @type {{ height: number, bps: number }} */ (RUNGS.find((r) => bps >= r.bps)).height;
  if (current === undefined || plain <= current) return plain;
  const up = RUNGS.find((r) => r.height > current && bps >= r.bps * (1 + RUNG_UP_MARGIN));
  const stay = RUNGS.find((r) => r.height === current);
  if (!stay) return plain;
  return up ? up.height : current;
}

/** Per outgoing stream: the smoothed estimate, the cap and the height last answered. */
/** @typedef {{ estimate: number | null, cap: number | null, height: number | undefined }} Stream */

export class UploadBudget {
  constructor() {
    /** @type {Map<string, Stream>} */
    this.streams = new Map();
  }

  /** @param {string} id */
  stream(id) {
    let s = this.streams.get(id);
    if (!s) {
      s = { estimate: null, cap: null, height: undefined };
      this.streams.set(id, s);
    }
    return s;
  }

  /**
   * A connection's bandwidth estimate (availableOutgoingBitrate), bits/s.
   * @param {string} id @param {number} bps
   */
  estimate(id, bps) {
    const s = this.stream(id);
    s.estimate = s.estimate === null ? bps : s.estimate + ESTIMATE_WEIGHT * (bps - s.estimate);
    const cap = s.estimate * ESTIMATE_HEADROOM;
    if (s.cap === null || Math.abs(cap - s.cap) > CAP_STEP * s.cap) s.cap = cap;
  }

  /** The peer left. @param {string} id */
  forget(id) {
    this.streams.delete(id);
  }

  /**
   * The limits for every stream of the mesh now.
   * @param {string[]} ids  every peer we send to
   * @param {{ height: number, screen: boolean }} source  the outgoing track's height; a screen
   * @returns {Map<string, VideoLimits>}
   */
  limits(ids, source) {
    const caps = ids.map((id) => this.stream(id).cap ?? Infinity);
    const rates = splitBudget(VIDEO_BUDGET_BPS, caps, PER_PEER_MIN_BPS, PER_PEER_MAX_BPS);
    // The mesh's share for a stream: what it would get on an unconstrained link.
    const share = Math.round(Math.max(PER_PEER_MIN_BPS, Math.min(PER_PEER_MAX_BPS, VIDEO_BUDGET_BPS / Math.max(1, ids.length))));
    /** @type {Map<string, VideoLimits>} */
    const out = new Map();
    ids.forEach((id, i) => {
      const s = this.stream(id);
      let target;
      if (source.screen) {
        target = 1080;
      } else {
        s.height = targetHeight(share, s.height);
        target = s.height;
      }
      // The exact ratio, not a rounded one: 720 / 1.33 is 541.4 lines, an odd height that
      // hardware encoders (Safari's H.264 on iOS and macOS) must crop or pad; 720 / (4/3)
      // is 540.
      const scale = Math.max(1, source.height / target);
      out.set(id, { maxBitrate: Math.max(rates[i], share), scaleResolutionDownBy: scale });
    });
    return out;
  }
}
