// How a participant's connection is doing, in one word for its tile: `good`, `weak` or
// `reconnecting`. Pure: room.js samples getStats (peerstats.js) every few seconds and on
// each connection state change, and asks here what two successive samples mean.
//
// - reconnecting: the connection is `disconnected` or `failed` (an ICE restart is under way:
//   recovery.js), or nothing at all arrived since the last sample while connected.
// - weak: over the last interval, more than WEAK_LOSS of the packets sent to us were lost,
//   or their video (when they send some) came at under WEAK_FPS frames a second, or the
//   round trip is over WEAK_RTT_MS.
// - good: otherwise. Unknown (null) until two samples of a connected connection exist.
// A weak link is told only after two weak intervals in a row and good again after two
// good ones: one lost burst does not make the badge blink.

/** @typedef {'good' | 'weak' | 'reconnecting'} Quality */

/** Share of packets lost over an interval above which the link is weak. */
export const WEAK_LOSS = 0.03;
/** Received video frame rate under which the link is weak (when video is sent). */
export const WEAK_FPS = 10;
/** Round-trip time over which the link is weak. */
export const WEAK_RTT_MS = 500;

/**
 * @typedef {object} QualitySample  what one getStats said (peerstats.js's summary)
 * @property {number} at  ms (any clock, the same for every sample)
 * @property {RTCPeerConnectionState} connectionState
 * @property {number} framesDecoded
 * @property {number} packetsReceived  audio and video
 * @property {number} packetsLost  audio and video
 * @property {number | null} rttMs  the selected pair's current round trip
 */

/**
 * What the interval between two samples says, on its own.
 * @param {QualitySample | null} prev
 * @param {QualitySample} now
 * @param {boolean} videoExpected  they say their camera or screen is on
 * @returns {Quality | null}
 */
export function assess(prev, now, videoExpected) {
  if (now.connectionState === 'disconnected' || now.connectionState === 'failed') return 'reconnecting';
  if (now.connectionState !== 'connected' || !prev || prev.connectionState !== 'connected') return null;
  const seconds = (now.at - prev.at) / 1000;
  if (seconds <= 0) return null;
  const received = now.packetsReceived - prev.packetsReceived;
  const lost = Math.max(0, now.packetsLost - prev.packetsLost);
  if (received <= 0) return 'reconnecting';
  if (lost / (lost + received) > WEAK_LOSS) return 'weak';
  if (videoExpected && (now.framesDecoded - prev.framesDecoded) / seconds < WEAK_FPS) return 'weak';
  if (now.rttMs !== null && now.rttMs > WEAK_RTT_MS) return 'weak';
  return 'good';
}

/** One participant's indicator: samples in, the word to show out (with the two-in-a-row rule). */
export class QualityMeter {
  constructor() {
    /** @type {QualitySample | null} */
    this.prev = null;
    /** @type {Quality | null} */
    this.shown = null;
    /** @type {Quality | null} */
    this.pending = null;
  }

  /**
   * @param {QualitySample} sample
   * @param {boolean} videoExpected
   * @returns {Quality | null}  what to show now
   */
  update(sample, videoExpected) {
    const q = assess(this.prev, sample, videoExpected);
    this.prev = sample;
    if (q === null) return this.shown;
    if (q === 'reconnecting' || this.shown === null || this.shown === 'reconnecting') {
      // Trouble is told at once, and so is the first word or the way out of reconnecting.
      this.shown = q;
      this.pending = null;
    } else if (q !== this.shown) {
      if (this.pending === q) {
        this.shown = q;
        this.pending = null;
      } else {
        this.pending = q;
      }
    } else {
      this.pending = null;
    }
    return this.shown;
  }
}
