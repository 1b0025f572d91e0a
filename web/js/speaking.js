// Whether we are speaking: our microphone's level, sampled a few times a second, turned into
// a highlight that holds a moment after the voice drops (so it does not flicker), and the
// level bar on the microphone button. Each participant measures only itself and tells the
// others when it starts and stops speaking (room.js, over the data channels), so nobody
// polls anybody's audio: reading a remote level (RTCRtpReceiver.getSynchronizationSources)
// waits on WebRTC's worker thread, and with a few peers sampled a few times a second that
// held the page's main thread for a third of the time in a 4-person call.
//
// The page is only touched when what it shows changes (the highlight turning on or off,
// the bar moving by a tenth).

/** Own microphone level (Media.level(), scaled RMS) counted as speaking. */
export const SPEAKING_LEVEL = 0.12;
/** A highlight stays this long after the voice drops. */
export const SPEAKING_HOLD_MS = 600;
/** How often the level is read. */
export const SAMPLE_MS = 200;

/** Levels in, speaking or not out; no timers, no DOM. */
export class SpeakingDetector {
  /** @param {number} threshold @param {number} holdMs */
  constructor(threshold = SPEAKING_LEVEL, holdMs = SPEAKING_HOLD_MS) {
    this.threshold = threshold;
    this.holdMs = holdMs;
    /** Until when it counts as speaking (epoch ms). */
    this.until = 0;
  }

  /** Feed one level; whether it counts as speaking at `now`. @param {number} level @param {number} now */
  update(level, now) {
    if (level >= this.threshold) this.until = now + this.holdMs;
    return this.until > now;
  }
}

/**
 * @typedef {object} SpeakingIO
 * @property {() => number} level  our microphone, 0..1 (0 while muted)
 * @property {(on: boolean) => void} speaking  we started or stopped speaking
 * @property {(level: number) => void} showLevel  0..1, in tenths
 */

/**
 * Sample our level every SAMPLE_MS and report what changed. Returns a function that stops.
 * @param {SpeakingIO} io
 */
export function watchSpeaking(io) {
  const detector = new SpeakingDetector();
  let speaking = false;
  let bar = -1;
  const sample = () => {
    const level = io.level();
    const on = detector.update(level, Date.now());
    if (on !== speaking) {
      speaking = on;
      io.speaking(on);
    }
    const tenths = Math.round(level * 10) / 10;
    if (tenths !== bar) {
      bar = tenths;
      io.showLevel(tenths);
    }
  };
  const timer = setInterval(sample, SAMPLE_MS);
  return () => {
    clearInterval(timer);
    if (speaking) io.speaking(false);
  };
}
