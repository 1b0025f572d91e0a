// What the page started before anything else: index.html's inline boot script runs as the
// HTML is parsed, before any file is fetched, and leaves its work in `window.meshcallBoot`:
//
// - the camera and microphone, asked for at once (the remembered devices; no camera when the
//   person chose to join with it off), on the lobby and on a call page alike. Starting a
//   camera takes a few hundred ms, the longest step of a join; media.js takes the answer
//   (`Media.start` uses it for its first ask instead of asking again);
// - the app's settings (the page's meshcall-config meta, else /config.json; signaling.js
//   reads them in loadConfig), and on a call page the signalling socket, opened with them, which sends `joinRoom` as soon as it is open; signaling.js
//   takes that socket over (Signaling.start), with what came meanwhile. So the join's round
//   trips run while the app loads, not after;
// - on a call page, `modulepreload` links for the call's modules (fetched and compiled at
//   once); `appMayLoad` holds main.js back from running them until the prelude (below) is
//   done;
// - on a call page, the first offers (the prelude): once `joined` came and the camera
//   answered, a peer connection per participant already there, its offer sent and its
//   answer applied, while the app loads. call.js takes them over (`takeOver`) when it takes
//   the socket; room.js adopts each as a Peer. A prelude not started by then never starts;
// - video first: each participant's video, as soon as it comes, on a stage of its own
//   (#boot-stage) until the call page shows; that participant's tile takes the element over.
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
 * A peer connection the prelude made and offered on (see peer.js, `early`).
 * @typedef {object} EarlyPeer
 * @property {RTCPeerConnection} pc
 * @property {RTCDataChannel} channel  negotiated, id 0, as peer.js makes it
 * @property {Promise<void>} chain  the signals applied so far (never rejects)
 * @property {RTCIceCandidateInit[]} candidates  candidates that came before the answer
 * @property {MediaStreamTrack[]} tracks  remote tracks (`track` events) so far
 * @property {number} offeredAt  Date.now() when the offer (round 1) went out
 * @property {MediaStream} stream  the remote stream (the first track of each kind), which the
 *   Peer keeps as its remoteStream
 * @property {HTMLVideoElement | null} video  the boot stage's element playing `stream` (video
 *   first), for the participant's tile to take over; null when no video came
 * @property {boolean} settled  its first frame was painted, or none will come before the app
 */

/**
 * @typedef {object} Prelude
 * @property {string | null} selfId  our id from the first `joined`, if it came
 * @property {Map<string, EarlyPeer>} peers  by participant id; empty when it made none
 */

/**
 * @typedef {object} Boot
 * @property {EarlyAsk | null} media  null without getUserMedia (an insecure origin)
 * @property {Promise<unknown>} config  the settings: the page's meshcall-config meta, else
 *   /config.json; null when absent or unreadable
 * @property {Promise<EarlySocket | null>} socket  null on the lobby
 * @property {Promise<void>} appMayLoad  the call's modules may load now: the prelude's offers
 *   are out, or it has nothing to do, or it took too long (at once on the lobby)
 * @property {MediaStream | null} stream  the call's own stream, which the prelude's tracks are
 *   announced in (media.js's `stream`; null on the lobby)
 * @property {(() => Prelude) | null} takeOver  the prelude stops and hands over what it made
 *   (null on the lobby)
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
export const { getUserMediaLoose, audioConstraints, videoConstraints } = boot;
