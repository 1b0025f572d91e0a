// What the page started before anything else: boot.js, inlined into the page as a classic
// script, runs as the HTML is parsed, before any file is fetched, and leaves its work in
// `window.meshcallBoot` (boot.js `start`, which says what each part is):
//
// - the camera and microphone, asked for at once, on the lobby and on a call page alike;
//   media.js takes the answer (`Media.start` uses it for its first ask instead of asking
//   again);
// - the app's settings (the page's meshcall-config meta, else /config.json; signaling.js
//   reads them in loadConfig), and on a call page the signalling socket, opened with them,
//   which sends `joinRoom` as soon as it is open; signaling.js takes that socket over
//   (Signaling.start), with what came meanwhile;
// - on a call page, `appMayLoad`, which holds main.js back from running the call's modules
//   until the prelude is done;
// - on a call page, the first offers (the prelude) and the first videos (video first):
//   call.js takes them over (`takeOver`) when it takes the socket; room.js adopts each as a
//   Peer.
//
// A failure is kept as a value: media.js and signaling.js decide what it means. This module
// hands that work over, typed; the constants the boot script shares with the modules are
// imported from boot.js itself.

/** @typedef {import('./boot.js').EarlyAsk} EarlyAsk */
/** @typedef {import('./boot.js').EarlySocket} EarlySocket */
/** @typedef {import('./boot.js').EarlyPeer} EarlyPeer */
/** @typedef {import('./boot.js').Prelude} Prelude */

const boot = /** @type {import('./boot.js').Boot | undefined} */ (/** @type {any} */ (window).meshcallBoot);
if (!boot) {
  // Only if the page's Content-Security-Policy lost the boot script's hash, or the page was
  // served without boot.js inlined into it.
  throw new Error("meshcall: the page's boot script did not run (blocked by the Content-Security-Policy?)");
}

/** The camera and microphone, asked for as the page started. */
export const earlyMedia = boot.media;
/** The app's settings, read as the page started. */
export const earlyConfig = boot.config;
/** The call's socket, opening and joining (null on the lobby). */
export const earlySocket = boot.socket;
/** The call's modules may load now (the prelude is done or gave up). */
export const appMayLoad = boot.appMayLoad;
/** The stream our tracks are announced in, on a call page. */
export const earlyStream = boot.stream;
/** Stop the prelude and take what it made (null on the lobby). */
export const takeOverPrelude = boot.takeOver;
