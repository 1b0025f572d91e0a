// What the page starts before anything else. index.html loads this module on its own
// (`async`, first in <head>, and it imports nothing), so it runs as soon as it has arrived,
// while the rest of the app is still being fetched, compiled and wired to the page:
//
// - the camera and microphone are asked for at once (the remembered devices; no camera when
//   the person chose to join with it off), on the lobby and on a call page alike. Starting
//   a camera takes a few hundred ms, the longest step of a join; media.js takes the answer
//   (`Media.start` uses it for its first ask instead of asking again);
// - /config.json is fetched (index.html preloads it; signaling.js reads it in loadConfig),
//   and on a call page the signalling socket is opened with it and sends `joinRoom` as soon
//   as it is open; signaling.js takes that socket over (Signaling.start), with what came
//   meanwhile. So the join's round trips run while the app loads, not after.
//
// Nothing here touches the page (but for <link>s to preload the call's modules), and a failure is kept as a value: media.js and signaling.js
// decide what it means, and nothing is left as an unhandled rejection.

/** What prefs.js remembers, read here without importing it (one fetch less before we start). */
const STORED = { camera: 'meshcall.cameraId', mic: 'meshcall.micId', camOff: 'meshcall.joinCamOff' };

/** @param {() => Storage} store @param {string} key */
function stored(store, key) {
  try {
    return store().getItem(key);
  } catch {
    return null; // no storage: nothing remembered
  }
}

/** What we ask a camera for: 720p at up to 30 fps. */
export const VIDEO_SHAPE = { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30, max: 30 } };
/** What we ask a microphone for. */
export const AUDIO_SHAPE = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };

/** @param {string | null} micId  a remembered microphone, or null for any */
export function audioConstraints(micId) {
  return micId ? { ...AUDIO_SHAPE, deviceId: { exact: micId } } : AUDIO_SHAPE;
}

/** @param {string | null} cameraId  a remembered camera, or null for any */
export function videoConstraints(cameraId) {
  return cameraId ? { ...VIDEO_SHAPE, deviceId: { exact: cameraId } } : VIDEO_SHAPE;
}

/**
 * getUserMedia; when a remembered device is gone (or no longer fits), any device.
 * @param {MediaStreamConstraints} c
 */
export async function getUserMediaLoose(c) {
  try {
    return await navigator.mediaDevices.getUserMedia(c);
  } catch (err) {
    if (err instanceof DOMException && (err.name === 'OverconstrainedError' || err.name === 'NotFoundError')) {
      const loose = { audio: c.audio ? AUDIO_SHAPE : false, video: c.video ? VIDEO_SHAPE : false };
      if (JSON.stringify(loose) !== JSON.stringify(c)) return navigator.mediaDevices.getUserMedia(loose);
    }
    throw err;
  }
}

/**
 * A getUserMedia call already under way: what it asked for, and how it ended (never rejects).
 * @typedef {object} EarlyAsk
 * @property {MediaStreamConstraints} constraints
 * @property {Promise<{ stream: MediaStream } | { error: unknown }>} result
 */

/** @returns {EarlyAsk | null} */
function askNow() {
  if (!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia)) return null;
  const camOff = stored(() => sessionStorage, STORED.camOff) === '1';
  /** @type {MediaStreamConstraints} */
  const constraints = {
    audio: audioConstraints(stored(() => localStorage, STORED.mic)),
    video: camOff ? false : videoConstraints(stored(() => localStorage, STORED.camera)),
  };
  if (!constraints.video) delete constraints.video;
  const result = getUserMediaLoose(constraints).then(
    (stream) => ({ stream }),
    (error) => ({ error }),
  );
  return { constraints, result };
}

/** The camera and microphone, asked for as the page started. */
export const earlyMedia = askNow();

/**
 * /config.json (null when absent or unreadable). Fetched on every page (it is tiny) so that
 * index.html's preload of it is always used.
 * @type {Promise<unknown>}
 */
export const earlyConfig = fetch('/config.json')
  .then((res) => (res.ok ? res.json() : null))
  .catch(() => null);

/**
 * The call's first signalling socket, opened as the page started.
 * @typedef {object} EarlySocket
 * @property {WebSocket} ws
 * @property {string} url
 * @property {number | undefined} openedAt  performance.now() when it opened and sent `joinRoom`
 * @property {string[]} received  text frames that came before signaling.js took it over
 */

/** The room of a call page (`/r/<room>`) with a valid name, else null (the lobby shows). */
function roomOfPage() {
  const m = /^\/r\/([^/]+)\/?$/.exec(location.pathname);
  if (!m) return null;
  try {
    const id = decodeURIComponent(m[1]);
    return /^[A-Za-z0-9_-]{1,64}$/.test(id) ? id : null; // protocol.js isRoomId
  } catch {
    return null;
  }
}

/** @param {string} roomId @returns {Promise<EarlySocket | null>} */
async function openSocket(roomId) {
  const raw = /** @type {{ wsUrl?: unknown } | null} */ (await earlyConfig);
  // As signaling.js loadConfig: `wsUrl`, else /ws on this page's host.
  const url =
    raw && typeof raw === 'object' && typeof raw.wsUrl === 'string' && raw.wsUrl
      ? raw.wsUrl
      : `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
  let ws;
  try {
    ws = new WebSocket(url);
  } catch {
    return null;
  }
  /** @type {EarlySocket} */
  const early = { ws, url, openedAt: undefined, received: [] };
  ws.onopen = () => {
    ws.send(JSON.stringify({ action: 'joinRoom', roomId }));
    early.openedAt = performance.now();
  };
  ws.onmessage = (ev) => {
    if (typeof ev.data === 'string') early.received.push(ev.data);
  };
  return early;
}

const roomId = roomOfPage();

/** The call's socket, opening and joining (null on the lobby). */
export const earlySocket = roomId === null ? Promise.resolve(null) : openSocket(roomId);

/**
 * The call page's modules, fetched all at once (`modulepreload`) rather than import by
 * import. Asked for from here, after the camera, the config and the socket, so that they
 * do not compete with this module's own fetch (index.html would have them fetched with it).
 * Keep in step with call.js's imports; a module missing here is still fetched, only later.
 */
const CALL_MODULES = [
  'prefs', 'protocol', 'notices', 'dom', 'icons', 'call', 'callnotices', 'callview', 'media', 'emitter',
  'room', 'peer', 'peerstats', 'recovery', 'signaling', 'speaking', 'ui', 'tiles',
];
if (roomId !== null) {
  for (const name of CALL_MODULES) {
    const link = document.createElement('link');
    link.rel = 'modulepreload';
    link.href = `/js/${name}.js`;
    document.head.append(link);
  }
}
