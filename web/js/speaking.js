// Who is speaking: our microphone's level and each remote participant's audio level, sampled
// a few times a second, turned into a highlight that holds a moment after the voice drops
// (so it does not flicker), and the level bar on the microphone button.
//
// Cheap by design: a few samples a second (not every frame); remote levels come from the
// RTP audio level the sender already measured (RTCRtpReceiver.getSynchronizationSources, no
// decoding or analysis here); the page is only touched when what it shows changes (a
// highlight turning on or off, the bar moving by a tenth).

/** Remote audio level (RTP audio level, linear 0..1) counted as speaking. */
export const REMOTE_SPEAKING = 0.03;
/** Own microphone level (Media.level(), scaled RMS) counted as speaking. */
export const LOCAL_SPEAKING = 0.12;
/** A highlight stays this long after the voice drops. */
export const SPEAKING_HOLD_MS = 600;
/** How often the levels are read. */
export const SAMPLE_MS = 200;
/** The own key: our tile is keyed "" in the grid. */
const SELF = '';

/** Levels in, who is speaking out; no timers, no DOM. */
export class SpeakingDetector {
  /** @param {number} holdMs */
  constructor(holdMs = SPEAKING_HOLD_MS) {
    this.holdMs = holdMs;
    /** @type {Map<string, number>} key -> until when it counts as speaking */
    this.until = new Map();
  }

  /**
   * Feed one level; whether `key` counts as speaking at `now`.
   * @param {string} key @param {number} level @param {number} threshold @param {number} now
   */
  update(key, level, threshold, now) {
    if (level >= threshold) this.until.set(key, now + this.holdMs);
    return (this.until.get(key) ?? 0) > now;
  }

  /** @param {string} key */
  forget(key) {
    this.until.delete(key);
  }
}

/**
 * @typedef {object} SpeakingIO
 * @property {() => number} ownLevel  our microphone, 0..1 (0 while muted)
 * @property {() => Map<string, number>} remoteLevels  per remote participant, 0..1
 * @property {(key: string, on: boolean) => void} showSpeaking  key "" is our own tile
 * @property {(level: number) => void} showOwnLevel  0..1, in tenths
 */

/**
 * Sample the levels every SAMPLE_MS and show what changed. Returns a function that stops.
 * @param {SpeakingIO} io
 */
export function watchSpeaking(io) {
  const detector = new SpeakingDetector();
  /** @type {Map<string, boolean>} what each tile shows now */
  const shown = new Map();
  let bar = -1;
  const sample = () => {
    if (document.hidden) return; // nobody looks; timers are throttled anyway
    const now = Date.now();
    const own = io.ownLevel();
    /** @type {[string, number, number][]} */
    const levels = [[SELF, own, LOCAL_SPEAKING]];
    const remote = io.remoteLevels();
    for (const [id, level] of remote) levels.push([id, level, REMOTE_SPEAKING]);
    for (const [key, level, threshold] of levels) {
      const on = detector.update(key, level, threshold, now);
      if (shown.get(key) !== on) {
        shown.set(key, on);
        io.showSpeaking(key, on);
      }
    }
    for (const key of [...shown.keys()]) {
      if (key !== SELF && !remote.has(key)) {
        shown.delete(key);
        detector.forget(key);
      }
    }
    const tenths = Math.round(own * 10) / 10;
    if (tenths !== bar) {
      bar = tenths;
      io.showOwnLevel(tenths);
    }
  };
  const timer = setInterval(sample, SAMPLE_MS);
  return () => clearInterval(timer);
}
