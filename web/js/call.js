// The call page at `/r/<room>`: wires local media, the signalling socket, the mesh and the
// page together. The modules it joins know nothing of each other; this is the only place
// that does.

import { T, exposeStats } from './hooks.js';
import { Media } from './media.js';
import { prefs, cleanName } from './prefs.js';
import { Room } from './room.js';
import { Signaling, loadConfig } from './signaling.js';
import { Tile } from './tiles.js';
import { RoomView } from './ui.js';

/** @typedef {import('./notices.js').Notices} Notices */
/** @typedef {import('./media.js').MediaProblem} MediaProblem */

/** Remote audio level (RTP audio level, linear 0..1) counted as speaking. */
const REMOTE_SPEAKING = 0.03;
/** Own microphone level (media.level(), scaled RMS) counted as speaking. */
const LOCAL_SPEAKING = 0.12;
/** A tile stays highlighted this long after the voice drops, so it does not flicker. */
const SPEAKING_HOLD_MS = 600;

/**
 * @param {{ roomId: string, notices: Notices }} ctx
 */
export async function startCall(ctx) {
  const { roomId, notices } = ctx;
  const params = new URLSearchParams(location.search);
  const name = cleanName(params.get('name') ?? '') || prefs.name || `Guest ${100 + Math.floor(Math.random() * 900)}`;
  const inviteUrl = `${location.origin}/r/${encodeURIComponent(roomId)}`;

  const media = new Media();
  const config = loadConfig(); // fetched while the camera starts and the page is wired
  const signaling = new Signaling({ url: '', roomId });
  const room = new Room({
    signaling,
    media,
    localState: () => ({ name, ...pick(media.state) }),
  });

  /** @type {Set<string>} peers currently failing to connect */
  const failing = new Set();
  let ended = false;

  const view = new RoomView({
    roomId,
    actions: {
      toggleMic: () => void media.setMic(!media.state.mic),
      toggleCam: () => void media.setCam(!media.state.cam),
      toggleScreen: () => {
        if (media.state.screen) media.stopScreen();
        else if (!media.canShareScreen) notices.show('screenUnsupported');
        else void media.startScreen();
      },
      leave,
      rejoin: () => location.reload(),
      copyLink: () => void copyLink(),
      sendChat: (text) => room.sendChat(text),
      pickCamera: (id) => {
        prefs.cameraId = id;
        void media.switchCamera(id);
      },
      pickMic: (id) => {
        prefs.micId = id;
        void media.switchMic(id);
      },
      gesture: () => {
        media.resumeAudio();
        if ([...view.grid.tiles.values()].some((t) => t.needsSound)) enableSound();
      },
    },
  });
  view.show();
  view.setCount(1);

  const selfTile = view.grid.add(new Tile({ id: null, name }));
  // Our own tile shows just the outgoing video (a stream without tracks, or with audio
  // only, would hold the page's load event forever).
  media.on('outgoing', ({ kind, track }) => {
    if (kind === 'video') selfTile.showLocal(track);
  });

  // ---------------------------------------------------------------- local media

  let starting = true;
  media.on('problem', (p) => {
    if (!starting) notices.show(p);
  });
  media.on('state', (s) => {
    view.setMic(s.mic, s.hasMic);
    view.setCam(s.cam);
    view.setScreen(s.screen, media.canShareScreen);
    selfTile.setMicOff(!s.mic);
    selfTile.setCamOff(!(s.cam || s.screen));
    selfTile.setScreen(s.screen);
    if (s.cam) notices.clear('cameraDenied');
    room.broadcastState();
  });
  media.on('devices', () => void refreshDevices());

  // The camera and microphone start while the socket opens and joins (below). Peers made
  // before our tracks exist offer to receive only; the tracks are added when they come
  // (Room swaps them in, which renegotiates).
  performance.mark('meshcall:media-start');
  const mediaReady = media
    .start({
      audio: true,
      video: !prefs.joinCamOff,
      micOn: !prefs.joinMicOff,
      cameraId: prefs.cameraId,
      micId: prefs.micId,
    })
    .then((problems) => {
      starting = false;
      performance.mark('meshcall:media-ready');
      if (ended) {
        media.stop(); // refused or left while the camera was starting
        return;
      }
      explainProblems(notices, problems);
      void refreshDevices();
    });

  // ---------------------------------------------------------------- signalling

  /** @type {ReturnType<typeof setInterval> | undefined} */
  let countdown;
  signaling.on('status', (s) => {
    clearInterval(countdown);
    if (s.state === 'joined' || s.state === 'closed') {
      notices.clear('serverUnreachable');
      return;
    }
    if (s.state !== 'waiting' || s.retryAt === null) return;
    // A blip that the first retry fixes is not worth a message.
    if (s.everJoined && s.failures < 2) return;
    const retryAt = s.retryAt;
    const words = () => {
      const secs = Math.max(0, Math.ceil((retryAt - Date.now()) / 1000));
      const lead = s.everJoined
        ? 'Lost the connection to the meshcall server; the call goes on for now.'
        : 'Can’t reach the meshcall server.';
      return secs > 0 ? `${lead} Reconnecting in ${secs} s…` : `${lead} Reconnecting…`;
    };
    if (!notices.has('serverUnreachable')) {
      notices.show('serverUnreachable', words(), {
        action: { label: 'Retry now', run: () => signaling.reconnectNow() },
      });
    } else {
      notices.update('serverUnreachable', words());
    }
    countdown = setInterval(() => notices.update('serverUnreachable', words()), 500);
  });
  signaling.on('resumeFailed', () => notices.show('resumeFailed'));
  signaling.on('fatal', (err) => {
    // Said once, on the card in the middle; the notice bar would only repeat it, and the
    // notices from joining (camera, server) no longer matter.
    notices.clearAll();
    if (err.code === 'roomFull') {
      view.showEnded({
        kind: 'roomFull',
        title: 'This room is full',
        text: 'Every seat in this call is taken (a mesh call stays small so everyone’s upload keeps up). Try again later, or start a new room.',
        canRejoin: true,
        rejoinLabel: 'Try again',
      });
    } else {
      view.showEnded({ kind: err.code, title: 'Can’t join this room', text: err.message, canRejoin: false, rejoinLabel: '' });
    }
    ended = true;
    media.stop();
    view.grid.clear();
  });
  signaling.on('error', (err) => {
    if (err.code === 'rateLimited') notices.show('rateLimited');
    else if (err.code === 'internal') notices.show('serverError', 'The server had a problem with a request; retrying.');
    else if (err.code !== 'peerNotFound') console.warn(`meshcall: server refused a message: ${err.code}`);
  });

  // ---------------------------------------------------------------- the mesh

  room.on('joined', ({ selfId }) => {
    performance.mark('meshcall:joined');
    T.joinedAt = Date.now();
    T.selfId = selfId;
    view.setCount(room.peers.size + 1);
  });
  room.on('peerAdded', (id) => {
    const state = room.stateOf(id);
    const tile = view.grid.add(
      new Tile({
        id,
        name: state?.name ?? 'Joining…',
        hooks: {
          firstFrame: () => {
            T.firstFrameAt[id] ??= Date.now();
          },
          autoplayBlocked: () =>
            notices.show('autoplayBlocked', undefined, { action: { label: 'Turn on sound', run: enableSound } }),
        },
      }),
    );
    tile.setStatus('Connecting…');
    view.setCount(room.peers.size + 1);
  });
  room.on('peerRemoved', (id) => {
    view.grid.remove(id);
    peerRecovered(id);
    view.setCount(room.peers.size + 1);
  });
  room.on('peerStream', ({ id, stream }) => view.grid.get(id)?.attach(stream));
  room.on('peerState', ({ id, state }) => {
    const tile = view.grid.get(id);
    if (!tile) return;
    tile.setName(state.name);
    tile.setMicOff(!state.mic);
    tile.setCamOff(!state.cam && !state.screen);
    tile.setScreen(state.screen);
  });
  room.on('peerConnection', ({ id, state }) => {
    const tile = view.grid.get(id);
    if (state === 'connected') {
      tile?.setStatus(null);
      peerRecovered(id);
    } else if (state === 'disconnected') {
      tile?.setStatus('Reconnecting…');
    } else if (state === 'failed') {
      tile?.setStatus('Connection failed, retrying…');
    }
  });
  room.on('peerFailed', ({ id }) => {
    failing.add(id);
    view.grid.get(id)?.setStatus('Can’t connect, retrying…');
    const names = [...failing].map((p) => room.stateOf(p)?.name || 'someone');
    notices.show(
      'peerFailed',
      `Can’t connect to ${names.join(', ')}. Still trying… (a firewall may block direct connections; a TURN server helps)`,
    );
  });
  room.on('peerRelayed', ({ id, relayed }) => view.grid.get(id)?.setRelayed(relayed));
  room.on('chat', (msg) => view.addChat({ name: msg.name, text: msg.text, at: msg.at, self: msg.from === null }));

  exposeStats(async () => {
    const all = await room.summaries();
    /** @type {Record<string, import('./hooks.js').StatsSummary>} */
    const out = {};
    for (const [id, s] of Object.entries(all)) {
      const { connectionState, framesDecoded, frameWidth, audioPackets, pair, relayed } = s;
      out[id] = { connectionState, framesDecoded, frameWidth, audioPackets, pair, relayed };
    }
    return out;
  });

  // Speaking highlight.
  /** @type {Map<string, number>} tile key -> until when it stays highlighted */
  const speakingUntil = new Map();
  setInterval(() => {
    if (ended) return;
    const now = Date.now();
    const own = media.level(); // 0 while muted
    /** @type {[string, number, number][]} */
    const levels = [['', own, LOCAL_SPEAKING]];
    for (const [id, level] of room.levels()) levels.push([id, level, REMOTE_SPEAKING]);
    for (const [key, level, threshold] of levels) {
      if (level >= threshold) speakingUntil.set(key, now + SPEAKING_HOLD_MS);
      const tile = view.grid.tiles.get(key);
      tile?.setSpeaking((speakingUntil.get(key) ?? 0) > now);
    }
    view.setMicLevel(own);
  }, 120);

  window.addEventListener('pagehide', () => {
    if (!ended) room.leave();
  });
  // Back/forward cache: the call ended when the page was hidden; start a fresh one.
  window.addEventListener('pageshow', (ev) => {
    if (ev.persisted) location.reload();
  });

  // Back online, perhaps on another network: reconnect the socket now and restart ICE.
  window.addEventListener('online', () => {
    signaling.reconnectNow();
    room.networkChanged();
  });
  const { url, iceTransportPolicy, socketMaxAgeMs } = await config;
  signaling.url = url;
  signaling.socketMaxAgeMs = socketMaxAgeMs;
  room.iceTransportPolicy = iceTransportPolicy;
  if (!ended) signaling.start();
  await mediaReady;

  // ---------------------------------------------------------------- helpers

  function leave() {
    if (ended) return;
    ended = true;
    room.leave();
    media.stop();
    view.grid.clear();
    for (const kind of ['serverUnreachable', 'peerFailed', 'autoplayBlocked']) notices.clear(kind);
    view.showEnded({
      kind: 'left',
      title: 'You left the call',
      text: 'Your camera and microphone are off. Rejoin, or start a new call.',
      canRejoin: true,
      rejoinLabel: 'Rejoin',
    });
  }

  /** @param {string} id */
  function peerRecovered(id) {
    if (!failing.delete(id)) return;
    if (failing.size === 0) notices.clear('peerFailed');
  }

  function enableSound() {
    for (const tile of view.grid.tiles.values()) tile.enableSound();
    notices.clear('autoplayBlocked');
  }

  async function refreshDevices() {
    try {
      const { cameras, mics } = await media.devices();
      view.setDevices(cameras, mics, media.currentDeviceId('video'), media.currentDeviceId('audio'));
    } catch {
      // No device list: the pickers stay as they were.
    }
  }

  async function copyLink() {
    try {
      await navigator.clipboard.writeText(inviteUrl);
      notices.show('linkCopied');
      view.flashCopied();
    } catch {
      notices.show('linkNotCopied', `Couldn’t copy automatically. The invite link is ${inviteUrl}`);
    }
  }
}

/** @param {import('./media.js').MediaState} s */
function pick(s) {
  return { mic: s.mic, cam: s.cam, screen: s.screen };
}

/**
 * One notice for what went wrong while getting the camera and microphone.
 * @param {Notices} notices
 * @param {MediaProblem[]} problems
 */
function explainProblems(notices, problems) {
  if (problems.length === 0) return;
  const cam = problems.find((p) => p === 'cameraDenied' || p === 'noCamera' || p === 'cameraBusy');
  const mic = problems.find((p) => p === 'micDenied' || p === 'noMic' || p === 'micBusy');
  if (problems.includes('insecureContext')) {
    notices.show('insecureContext');
  } else if (cam && mic) {
    const denied = cam === 'cameraDenied' || mic === 'micDenied';
    notices.show(
      cam,
      denied
        ? 'Camera and microphone are blocked: you can watch and listen, but others can’t see or hear you. Allow them in your browser’s site settings.'
        : 'No camera or microphone available: you can watch and listen, but others can’t see or hear you.',
    );
  } else if (cam) {
    notices.show(cam);
  } else if (mic) {
    notices.show(mic);
  }
}
