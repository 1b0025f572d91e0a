// The boot script, and the one owner of what it shares with the app's modules.
//
// This file is used twice:
//
// - **inline, as a classic script**: the server writes it into the page it serves, first in
//   <head> (in place of index.html's placeholder element for it; `meshcall` in
//   crates/server/src/web.rs, `deploy/aws/deploy` for static hosting, both the same way:
//   every line's leading `export ` dropped, the whole wrapped in `(() => { … })();`), and
//   the Content-Security-Policy allows exactly that text by its SHA-256. So it runs as soon
//   as the parser reaches it, before any file is fetched, and `start()` (last line) does the
//   page's first work and leaves it in `window.meshcallBoot` (early.js hands it to the app);
// - **as a module** (`/js/boot.js`): the app's modules import its constants and helpers
//   from it (the RTCConfiguration, the data channel, the candidate cap, the transceiver
//   layout, the storage keys, the room-id rule, the settings' parsing), so that the boot
//   script and the app cannot drift apart. Imported, it starts nothing (`start()` runs only
//   from a classic script: `document.currentScript` is null in a module).
//
// So: no `import`, module syntax only as `export ` at the start of a line (before `const`,
// `function` or `class`), no end tag of a script nor the start of an HTML comment anywhere
// in the text, not even in a comment: either would change where the inline script ends
// (crates/server's tests check all that); no DOM work outside `start()` (node's unit tests
// import it).
//
// What `start()` does: asks for the camera and microphone, reads the app's settings and, on
// a call page, opens the signalling socket and sends joinRoom, makes the first offers and
// shows the first videos (the prelude, below) and preloads the call's modules.

'use strict';

// ------------------------------------------------------------------ shared with the modules

/**
 * What the browser remembers between visits (prefs.js): the display name and the chosen
 * devices in localStorage, "join with mic/camera off" in sessionStorage for the next join.
 */
export const STORAGE_KEYS = Object.freeze({
  name: 'meshcall.name',
  camera: 'meshcall.cameraId',
  mic: 'meshcall.micId',
  micOff: 'meshcall.joinMicOff',
  camOff: 'meshcall.joinCamOff',
});

/** Room ids: 1-64 characters of A-Z a-z 0-9 _ - (case-sensitive), as the service checks. */
export const ROOM_ID_RE = /^[A-Za-z0-9_-]{1,64}$/;

/** @param {string} id */
export function isRoomId(id) {
  return ROOM_ID_RE.test(id);
}

/**
 * The room a path names: `/r/<room>` (or `/r/<room>/`), percent-decoded. `undefined`: not a
 * room path (the lobby); `null`: a room path that does not decode. The name is not checked
 * (isRoomId).
 * @param {string} pathname
 * @returns {{ raw: string, id: string | null } | undefined}
 */
export function roomPath(pathname) {
  const m = /^\/r\/([^/]+)\/?$/.exec(pathname);
  if (!m) return undefined;
  try {
    return { raw: m[1], id: decodeURIComponent(m[1]) };
  } catch {
    return { raw: m[1], id: null };
  }
}

/**
 * What the deployment tells the app (/config.json, or the page's meshcall-config meta).
 * @typedef {object} ServiceConfig
 * @property {string | null} wsUrl  the signalling URL (on AWS, the API Gateway stage)
 * @property {RTCIceTransportPolicy} iceTransportPolicy  `relay` when the server forces TURN
 *   (`--force-relay`): media then only flows through TURN, and peers never learn each
 *   other's addresses
 * @property {number} socketMaxAgeMs  move to a fresh socket (a resume) this long after
 *   joining on one, 0 never (the AWS deployment sets it below API Gateway's 2-hour limit)
 */

/**
 * The settings, each with its default when missing or malformed.
 * @param {unknown} v
 * @returns {ServiceConfig}
 */
export function parseConfig(v) {
  const o = v && typeof v === 'object' ? /** @type {Record<string, unknown>} */ (v) : {};
  const age = o.socketMaxAgeMs;
  return {
    wsUrl: typeof o.wsUrl === 'string' && o.wsUrl ? o.wsUrl : null,
    iceTransportPolicy: o.iceTransportPolicy === 'relay' ? 'relay' : 'all',
    socketMaxAgeMs: typeof age === 'number' && Number.isFinite(age) && age > 0 ? age : 0,
  };
}

/**
 * The signalling URL: the settings' `wsUrl`, else /ws on this page's host.
 * @param {ServiceConfig} config
 * @param {{ protocol: string, host: string }} at  the page's location
 */
export function signallingUrl(config, at) {
  return config.wsUrl ?? `${at.protocol === 'https:' ? 'wss' : 'ws'}://${at.host}/ws`;
}

/**
 * Every peer connection's configuration.
 * @param {RTCIceServer[]} iceServers
 * @param {RTCIceTransportPolicy} iceTransportPolicy
 * @returns {RTCConfiguration}
 */
export function connectionConfig(iceServers, iceTransportPolicy) {
  return {
    iceServers,
    iceTransportPolicy,
    // One transport for audio, video and the data channel from the first offer on. The
    // default ('balanced') gathers candidates, signals them and runs ICE checks for each of
    // the three until the answer confirms bundling: three times the work of a join.
    bundlePolicy: 'max-bundle',
  };
}

/**
 * The data channel for chat and state: negotiated (id 0) on both sides, so it needs no
 * signalling of its own.
 * @param {RTCPeerConnection} pc
 */
export function openDataChannel(pc) {
  return pc.createDataChannel('meshcall', { negotiated: true, id: 0 });
}

/** ICE candidates kept while their description has not come (more are dropped). */
export const MAX_EARLY_CANDIDATES = 200;

/** @typedef {'audio' | 'video'} Kind */
/** The kinds we send, in the order of the offer's m-lines. @type {readonly Kind[]} */
export const KINDS = Object.freeze(['audio', 'video']);

/**
 * Send `track` on a transceiver of its own: addTrack (not addTransceiver), so that an offer
 * from the other side that comes first takes it over for its m-line of that kind (no
 * m-lines added, no replaceTrack before answering). The transceiver, or null.
 * @param {RTCPeerConnection} pc
 * @param {MediaStreamTrack} track
 * @param {MediaStream} stream  the stream our tracks are announced in
 */
export function addTrackTransceiver(pc, track, stream) {
  const sender = pc.addTrack(track, stream);
  return pc.getTransceivers().find((t) => t.sender === sender) ?? null;
}

/**
 * A kind we have no track of, in an offer of ours: received only.
 * @param {RTCPeerConnection} pc
 * @param {Kind} kind
 */
export function addReceiveOnly(pc, kind) {
  return pc.addTransceiver(kind, { direction: 'recvonly' });
}

// 720p at up to 30 fps; the microphone's processing on.
const VIDEO = { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30, max: 30 } };
const AUDIO = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };

/** @param {string | null} micId @returns {MediaTrackConstraints} */
export function audioConstraints(micId) {
  return micId ? { ...AUDIO, deviceId: { exact: micId } } : AUDIO;
}

/** @param {string | null} cameraId @returns {MediaTrackConstraints} */
export function videoConstraints(cameraId) {
  return cameraId ? { ...VIDEO, deviceId: { exact: cameraId } } : VIDEO;
}

/**
 * getUserMedia; when a remembered device is gone (or no longer fits), any device.
 * @param {MediaStreamConstraints} c
 * @returns {Promise<MediaStream>}
 */
export async function getUserMediaLoose(c) {
  try {
    return await navigator.mediaDevices.getUserMedia(c);
  } catch (err) {
    if (err instanceof DOMException && (err.name === 'OverconstrainedError' || err.name === 'NotFoundError')) {
      const loose = { audio: c.audio ? AUDIO : false, video: c.video ? VIDEO : false };
      if (JSON.stringify(loose) !== JSON.stringify(c)) return navigator.mediaDevices.getUserMedia(loose);
    }
    throw err;
  }
}

// ------------------------------------------------------------------ what start() hands over

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
 * A peer connection the prelude made and offered on (peer.js adopts it, `early`).
 * @typedef {object} EarlyPeer
 * @property {RTCPeerConnection} pc
 * @property {RTCDataChannel} channel  openDataChannel's
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
 * @property {MediaStream} stream  the stream our tracks are announced in
 * @property {boolean} taken  the app took it over: it starts nothing more
 */

/**
 * @typedef {object} Boot
 * @property {EarlyAsk | null} media  null without getUserMedia (an insecure origin)
 * @property {Promise<unknown>} config  the settings: the page's meshcall-config meta, else
 *   /config.json; null when absent or unreadable
 * @property {Promise<EarlySocket | null>} socket  null on the lobby
 * @property {Promise<void>} appMayLoad  the call's modules may run now (see start)
 * @property {MediaStream | null} stream  the call's own stream, which the prelude's tracks are
 *   announced in (media.js's `stream`; null on the lobby)
 * @property {(() => Prelude) | null} takeOver  the prelude stops and hands over what it made
 *   (null on the lobby)
 */

// ------------------------------------------------------------------ the boot

/** The call's modules may run this long after the page started when the offers are not out. */
const APP_WAIT_MS = 1000;
/** ... and this long after the offers went out, when not every first frame is painted. */
const FRAMES_WAIT_MS = 1500;
/**
 * The call's modules, preloaded all at once rather than import by import (keep in step with
 * call.js's imports; one missing here is still fetched, only later).
 */
const CALL_MODULES = ['early', 'prefs', 'dom', 'icons', 'call', 'callnotices', 'callview', 'media',
  'emitter', 'room', 'peer', 'negotiation', 'peerstats', 'recovery', 'signaling', 'speaking', 'ui', 'tiles'];

/**
 * @param {() => Storage} store @param {string} key
 * @returns {string | null}
 */
function stored(store, key) {
  try {
    return store().getItem(key);
  } catch {
    return null; // no storage: nothing remembered
  }
}

/**
 * The page's first work, as the HTML is parsed. @returns {Boot}
 */
export function start() {
  // The camera and microphone: the remembered devices, no camera when the person chose to
  // join with it off. A failure is kept as a value for media.js to judge.
  /** @type {EarlyAsk | null} */
  let media = null;
  // (No mediaDevices on an insecure origin.)
  const devices = /** @type {MediaDevices | undefined} */ (navigator.mediaDevices);
  if (devices && typeof devices.getUserMedia === 'function') {
    const camOff = stored(() => sessionStorage, STORAGE_KEYS.camOff) === '1';
    /** @type {MediaStreamConstraints} */
    const constraints = { audio: audioConstraints(stored(() => localStorage, STORAGE_KEYS.mic)) };
    if (!camOff) constraints.video = videoConstraints(stored(() => localStorage, STORAGE_KEYS.camera));
    const result = getUserMediaLoose(constraints).then((stream) => ({ stream }), (error) => ({ error }));
    media = { constraints, result };
  }

  // The app's settings: from the page (the meshcall-config meta) when its server wrote them
  // in, else /config.json (null when absent or unreadable).
  const written = (() => {
    const meta = /** @type {HTMLMetaElement | null} */ (document.querySelector('meta[name="meshcall-config"]'));
    try {
      return meta && meta.content ? /** @type {unknown} */ (JSON.parse(meta.content)) : undefined;
    } catch {
      return undefined;
    }
  })();
  /** @type {Promise<unknown>} */
  const config = written !== undefined
    ? Promise.resolve(written)
    : fetch('/config.json').then((res) => (res.ok ? res.json() : null)).catch(() => null);

  // A call page (/r/<room> with a valid name) opens its socket now.
  const path = roomPath(location.pathname);
  const roomId = path && path.id !== null && isRoomId(path.id) ? path.id : null;

  // The prelude: the first offers, made here while the app loads. Once `joined` came on this
  // socket and the camera answered, a peer connection per participant listed, made as
  // peer.js makes an initiator's (connectionConfig, openDataChannel, addTrackTransceiver
  // for each track, addReceiveOnly for video without a camera), its offer (round 1) and ICE
  // candidates sent, the answer and candidates that come for it applied, and each one's
  // video shown as soon as it comes (video first, below). Only until the app takes over
  // (takeOver, from call.js): room.js then adopts each connection as its Peer (peer.js
  // `early`) and its video as the tile's (tiles.js) and does everything else; the prelude
  // never starts after that. It makes nothing when the camera failed or nobody else is here.
  /** @type {Prelude} */
  const prelude = { stream: new MediaStream(), selfId: null, peers: new Map(), taken: false };
  // The call's modules are fetched and compiled once the offers are out (modulepreload; at
  // the page's start, their dozens of ms of fetching and compiling held up the camera's
  // answer and the socket's events), and run only once the prelude is done (`appMayLoad`,
  // main.js): running them and building the call page takes this thread for a hundred ms and
  // more, and the answers and first frames would wait behind that (docs/web.md, "The
  // prelude" and "Video first"). They run once every participant's first frame is
  // painted (or they send no video, or their connection failed), or there is nothing to offer
  // (alone, no camera, no socket, a refusal), or FRAMES_WAIT_MS after the offers went out (a
  // slow network), or APP_WAIT_MS after the page started when the offers are not out by then
  // (a camera prompt, a slow camera): whichever comes first.
  let preloaded = roomId === null; // the lobby imports its own
  const preloadApp = () => {
    if (preloaded) return;
    preloaded = true;
    for (const name of CALL_MODULES) {
      const link = document.createElement('link');
      link.rel = 'modulepreload';
      link.href = `/js/${name}.js`;
      document.head.append(link);
    }
  };
  /** @type {() => void} */
  let appGo = () => {};
  /** @type {Promise<void>} */
  const appMayLoad = new Promise((resolve) => {
    appGo = resolve;
  });
  const letAppLoad = () => {
    preloadApp();
    appGo();
  };
  const appTimer = roomId === null ? undefined : setTimeout(letAppLoad, APP_WAIT_MS);
  if (roomId === null) letAppLoad(); // the lobby: nothing to wait for
  // Video first: each participant's video, when it comes, plays in a bare <video> on a stage
  // of its own (#boot-stage, over the still empty page) until the app runs; the tile made for
  // that participant takes the element over (tiles.js), and the stage goes when the call page
  // shows (ui.js). p.settled: nothing more to wait for from that participant before the app
  // may run.
  /** @type {HTMLDivElement | null} */
  let stage = null;
  /** @param {EarlyPeer} p */
  const settle = (p) => {
    if (p.settled) return;
    p.settled = true;
    if ([...prelude.peers.values()].every((q) => q.settled)) letAppLoad();
  };
  /** @param {string} id @param {EarlyPeer} p */
  const showVideo = (id, p) => {
    if (!document.body) return settle(p);
    const v = document.createElement('video');
    v.muted = true; // the tile turns the sound on (muted, autoplay is never refused)
    v.autoplay = true;
    v.playsInline = true;
    v.dataset.peer = id;
    v.srcObject = p.stream;
    if ('requestVideoFrameCallback' in v) v.requestVideoFrameCallback(() => settle(p));
    else /** @type {HTMLVideoElement} */ (v).addEventListener('loadeddata', () => settle(p), { once: true });
    if (!stage) {
      stage = document.createElement('div');
      stage.id = 'boot-stage';
      document.body.append(stage);
    }
    stage.append(v);
    p.video = v;
  };
  const takeOver = () => {
    prelude.taken = true;
    return prelude;
  };
  /** @type {RTCIceTransportPolicy} */
  let iceTransportPolicy = 'all';
  /**
   * Whether the prelude took the frame (the app is not to see it).
   * @param {WebSocket} ws @param {string} text
   */
  const preludeTakes = (ws, text) => {
    /** @type {any} */
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return false;
    }
    if (!msg || typeof msg !== 'object') return false;
    if (msg.type === 'joined' && prelude.selfId === null && typeof msg.connectionId === 'string') {
      prelude.selfId = msg.connectionId;
      /** @type {string[]} */
      const ids = Array.isArray(msg.participants)
        ? msg.participants.filter((/** @type {unknown} */ id) => typeof id === 'string' && id !== msg.connectionId)
        : [];
      /** @type {RTCIceServer[]} */
      const iceServers = Array.isArray(msg.iceServers) ? msg.iceServers : [];
      if (ids.length > 0 && media) {
        void media.result.then((r) => offerAll(ws, ids, iceServers, 'stream' in r ? r.stream : null));
      } else {
        letAppLoad();
      }
      return false; // the app handles it too
    }
    if (msg.type === 'participantLeft') {
      const gone = prelude.peers.get(msg.participantConnectionId);
      if (gone) {
        gone.video?.remove();
        settle(gone);
      }
      return false;
    }
    const p = msg.type === 'signal' ? prelude.peers.get(msg.from) : undefined;
    const data = p && msg.data && typeof msg.data === 'object' ? msg.data : null;
    if (!p || !data) return false;
    const pc = p.pc;
    if (data.description && data.description.type === 'answer' && data.round === 1) {
      p.chain = p.chain.then(async () => {
        await pc.setRemoteDescription(data.description);
        // Their answer sends no video (no camera): nothing to show before the app.
        if (!p.stream.getVideoTracks().length) settle(p);
        for (const c of p.candidates.splice(0)) await pc.addIceCandidate(c).catch(() => {});
      }).catch(() => settle(p)); // the app's Peer makes its offer again when no answer took
      return true;
    }
    if (data.candidate && typeof data.candidate === 'object') {
      p.chain = p.chain.then(() => {
        if (pc.remoteDescription) return pc.addIceCandidate(data.candidate);
        if (p.candidates.length < MAX_EARLY_CANDIDATES) p.candidates.push(data.candidate); // came before the answer
      }).catch(() => {});
      return true;
    }
    return false;
  };
  /**
   * @param {WebSocket} ws @param {string[]} ids @param {RTCIceServer[]} iceServers
   * @param {MediaStream | null} stream
   */
  const offerAll = (ws, ids, iceServers, stream) => {
    if (prelude.taken || !stream) return letAppLoad();
    const audio = stream.getAudioTracks()[0];
    const video = stream.getVideoTracks()[0];
    if (!audio) return letAppLoad();
    // Joining muted: silent before anyone could hear it (media.js does the same on start).
    if (stored(() => sessionStorage, STORAGE_KEYS.micOff) === '1') audio.enabled = false;
    for (const t of [audio, video]) if (t) prelude.stream.addTrack(t);
    /** @param {string} to @param {unknown} data */
    const signal = (to, data) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ action: 'signal', to, data }));
    };
    /** @type {Promise<void>[]} */
    const offers = [];
    for (const id of ids) {
      /** @type {RTCPeerConnection} */
      let pc;
      try {
        pc = new RTCPeerConnection(connectionConfig(iceServers, iceTransportPolicy));
      } catch {
        break; // the app makes the rest
      }
      /** @type {EarlyPeer} */
      const p = { pc, channel: openDataChannel(pc), chain: Promise.resolve(), candidates: [], tracks: [],
        offeredAt: Date.now(), stream: new MediaStream(), video: null, settled: false };
      prelude.peers.set(id, p);
      pc.ontrack = ({ track }) => {
        p.tracks.push(track);
        // One track per kind, as peer.js keeps them; p.stream becomes the Peer's remoteStream.
        if (p.stream.getTracks().some((t) => t.kind === track.kind)) return;
        p.stream.addTrack(track);
        if (track.kind === 'video' && !prelude.taken) showVideo(id, p);
      };
      pc.onconnectionstatechange = () => {
        if (pc.connectionState === 'failed' || pc.connectionState === 'closed') settle(p);
      };
      pc.onicecandidate = ({ candidate }) => {
        if (candidate) signal(id, { candidate: candidate.toJSON() });
      };
      // peer.js's initiator layout (addLocalTransceivers): each kind's track, else receive only.
      addTrackTransceiver(pc, audio, prelude.stream);
      if (video) addTrackTransceiver(pc, video, prelude.stream);
      else addReceiveOnly(pc, 'video');
      p.chain = pc.setLocalDescription().then(() => {
        p.offeredAt = Date.now();
        signal(id, { description: pc.localDescription?.toJSON(), round: 1 });
      }).catch(() => settle(p));
      offers.push(p.chain);
    }
    void Promise.all(offers).then(() => {
      performance.mark('meshcall:prelude-offers', { detail: prelude.peers.size });
      preloadApp();
      clearTimeout(appTimer);
      setTimeout(letAppLoad, FRAMES_WAIT_MS);
      if (prelude.peers.size === 0) letAppLoad();
    });
  };

  /** @type {Promise<EarlySocket | null>} */
  const socket = roomId === null ? Promise.resolve(null) : config.then((raw) => {
    const settings = parseConfig(raw);
    const url = signallingUrl(settings, location);
    iceTransportPolicy = settings.iceTransportPolicy;
    /** @type {WebSocket} */
    let ws;
    try {
      ws = new WebSocket(url);
    } catch {
      letAppLoad();
      return null;
    }
    /** @type {EarlySocket} */
    const early = { ws, url, openedAt: undefined, received: [] };
    ws.onopen = () => {
      ws.send(JSON.stringify({ action: 'joinRoom', roomId }));
      early.openedAt = performance.now();
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data === 'string' && !preludeTakes(ws, ev.data)) early.received.push(ev.data);
      if (prelude.selfId === null) letAppLoad(); // not joined (a refusal): nothing to offer
    };
    ws.onclose = letAppLoad;
    return early;
  });

  return Object.freeze({
    media, config, socket, appMayLoad, stream: roomId === null ? null : prelude.stream,
    takeOver: roomId === null ? null : takeOver,
  });
}

// Inline (a classic script) this is the page's boot; imported as a module, nothing runs.
if (typeof document !== 'undefined' && document.currentScript) /** @type {any} */ (window).meshcallBoot = start();
