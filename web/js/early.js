// What the page started before anything else: index.html's inline boot script runs as the
// HTML is parsed, before any file is fetched, and leaves its work in `window.meshcallBoot`:
//
// - the camera and microphone, asked for at once (the remembered devices; no camera when the
//   person chose to join with it off), on the lobby and on a call page alike. Starting a
//   camera takes a few hundred ms, the longest step of a join; media.js takes the answer
//   (`Media.start` uses it for its first ask instead of asking again);
// - /config.json (signaling.js reads it in loadConfig), and on a call page the signalling
//   socket, opened with it, which sends `joinRoom` as soon as it is open; signaling.js
//   takes that socket over (Signaling.start), with what came meanwhile. So the join's round
//   trips run while the app loads, not after;
// - on a call page, `modulepreload` links for the call's modules.
//
// A failure is kept as a value: media.js and signaling.js decide what it means. This module
// gives the boot script's work its types; it must run after it, as every module does.

/**
 * A getUserMedia call already under way: what it asked for, and how it ended (never rejects).
 * @typedef {object} EarlyAsk
 * @property {MediaStreamConstraints} constraints
 * @property {Promise<{ stream: MediaStream } | { error: unknown }>} result
 */

/**
 * The call's first signalling socket, opened as the page started.
 * @typedef {object} EarlySocket
 * @property {WebSocket} ws
 * @property {string} url
 * @property {number | undefined} openedAt  performance.now() when it opened and sent `joinRoom`
 * @property {string[]} received  text frames that came before signaling.js took it over
 */

/**
 * @typedef {object} Boot
 * @property {EarlyAsk | null} media  null without getUserMedia (an insecure origin)
 * @property {Promise<unknown>} config  /config.json, null when absent or unreadable
 * @property {Promise<EarlySocket | null>} socket  null on the lobby
 * @property {(c: MediaStreamConstraints) => Promise<MediaStream>} getUserMediaLoose
 *   getUserMedia; when a remembered device is gone (or no longer fits), any device
 * @property {(micId: string | null) => MediaTrackConstraints} audioConstraints
 * @property {(cameraId: string | null) => MediaTrackConstraints} videoConstraints
 */

const boot = /** @type {Boot | undefined} */ (/** @type {any} */ (window).meshcallBoot);
if (!boot) {
  // Only if the page's Content-Security-Policy lost the boot script's hash.
  throw new Error("meshcall: index.html's boot script did not run (blocked by the Content-Security-Policy?)");
}

/** The camera and microphone, asked for as the page started. */
export const earlyMedia = boot.media;
/** /config.json, fetched as the page started. */
export const earlyConfig = boot.config;
/** The call's socket, opening and joining (null on the lobby). */
export const earlySocket = boot.socket;
export const { getUserMediaLoose, audioConstraints, videoConstraints } = boot;
