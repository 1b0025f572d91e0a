// The call page at `/r/<room>`: makes the parts (local media, the signalling socket, the
// mesh, the page) and joins them. Each joint lives in its own module: callview.js (media and
// mesh on the page), callnotices.js (trouble in words), speaking.js (who is speaking). This
// is the only module that knows every part.
//
// A join runs everything at once: the camera was asked for, /config.json fetched and the
// socket opened and joined as the page started (the boot script, boot.js, handed over by
// early.js), while the app loaded, and when the camera answered first, the boot script's
// prelude made the first offers too; here the socket and those connections are taken over
// and the page built; otherwise the peers we offer to make their offers once our tracks
// are there.

import { explainProblems, refusalCard, reportSignaling } from './callnotices.js';
import { showMedia, showMesh } from './callview.js';
import { earlyConfig, earlyMedia, earlySocket, earlyStream, takeOverPrelude } from './early.js';
import { Media } from './media.js';
import { prefs } from './prefs.js';
import { cleanName } from './protocol.js';
import { Room } from './room.js';
import { Signaling, loadConfig } from './signaling.js';
import { watchSpeaking } from './speaking.js';
import { RoomView } from './ui.js';

/** @typedef {import('./notices.js').Notices} Notices */
/** @typedef {import('./hooks.js').TestHooks} TestHooks */
/** @typedef {import('./hooks.js').StatsSummary} StatsSummary */

/**
 * The longest our first offers wait for the camera and microphone (a permission prompt,
 * a slow device). Shorter than the 3 s the others wait for our offer before making their own.
 */
const MEDIA_WAIT_MS = 2_500;
/**
 * The longest the page stays hidden while our first offers are being made (see below): a
 * camera prompt, or a machine so busy that the offers take long.
 */
const SHOW_WAIT_MS = 1_500;
/** How long after the microphone starts our level meter is made (see Media.meter). */
const METER_DELAY_MS = 3_000;

/**
 * @param {{ roomId: string, notices: Notices, hooks: TestHooks | null }} ctx
 */
export function startCall(ctx) {
  const { roomId, notices, hooks } = ctx;
  const params = new URLSearchParams(location.search);
  const name = cleanName(params.get('name') ?? '') || cleanName(prefs.name) || `Guest ${100 + Math.floor(Math.random() * 900)}`;
  const inviteUrl = `${location.origin}/r/${encodeURIComponent(roomId)}`;

  // The level meter (our speaking highlight, the mic bar) waits until the join is done.
  const media = new Media({ early: earlyMedia, stream: earlyStream, meterDelayMs: METER_DELAY_MS });
  const signaling = new Signaling({ url: '', roomId });
  const room = new Room({ signaling, media, localState: () => ({ name, ...pick(media.state) }) });
  let ended = false;
  /** The prelude made our first offers (before this module ran). */
  let preludeOffered = false;

  // ---------------------------------------------------------------- join

  void Promise.all([loadConfig(earlyConfig), earlySocket]).then(([config, early]) => {
    signaling.url = config.url;
    signaling.socketMaxAgeMs = config.socketMaxAgeMs;
    room.iceTransportPolicy = config.iceTransportPolicy;
    // The socket, with the first offers the prelude made on it (room.js adopts them when it
    // handles the `joined` the socket received).
    const prelude = takeOverPrelude?.() ?? null;
    if (!ended) {
      room.prelude = prelude;
      preludeOffered = !!prelude && prelude.peers.size > 0;
      signaling.start(early); // joining already, most likely
    } else {
      for (const p of prelude?.peers.values() ?? []) p.pc.close();
      early?.ws.close();
    }
  });

  let starting = true;
  media.on('problem', (p) => {
    if (!starting) notices.show(p);
  });
  const waited = setTimeout(() => room.mediaSettled(), MEDIA_WAIT_MS);
  performance.mark('meshcall:media-start');
  void media
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
      clearTimeout(waited);
      room.mediaSettled();
      if (ended) {
        media.stop(); // refused or left while the camera was starting
        return;
      }
      explainProblems(notices, problems);
      void refreshDevices();
    });

  // ---------------------------------------------------------------- the page

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
  view.setCount(1);
  // Shown once the offers to everyone already here are out, at the next idle moment (their
  // ICE candidates follow them first), or after SHOW_WAIT_MS. Its first style, layout and
  // paint take the main thread for tens of ms (hundreds on a machine busy with a call); done
  // while we wait for the answers, they cost the join nothing, while done earlier they held
  // up the camera's start and the offers (measured: docs/web.md, "Join speed benchmark").
  // When the prelude made them, before any of this ran, it is shown at once.
  const show = () => {
    clearTimeout(showTimer);
    view.show();
  };
  const showTimer = setTimeout(show, SHOW_WAIT_MS);
  room.on('offersOut', () => {
    if (preludeOffered) show();
    else if ('requestIdleCallback' in window) requestIdleCallback(show, { timeout: 150 });
    else setTimeout(show, 50);
  });

  const selfTile = showMedia({ media, view, name });
  media.on('state', (s) => {
    if (s.cam) notices.clear('cameraDenied');
    room.broadcastState();
  });
  media.on('devices', () => void refreshDevices());

  const { enableSound } = showMesh({ room, view, notices, hooks });
  room.on('joined', ({ selfId }) => {
    performance.mark('meshcall:joined');
    hooks?.joined(selfId);
  });

  reportSignaling(signaling, notices);
  signaling.on('fatal', (err) => {
    // Said once, on the card in the middle; the notice bar would only repeat it, and the
    // notices from joining (camera, server) no longer matter.
    notices.clearAll();
    view.showEnded(refusalCard(err));
    end();
  });

  const stopSpeaking = watchSpeaking({
    level: () => media.level(), // 0 while muted
    speaking: (on) => {
      selfTile.setSpeaking(on);
      room.setSpeaking(on); // the others show it
    },
    showLevel: (level) => view.setMicLevel(level),
  });

  if (hooks) {
    hooks.exposeStats(async () => {
      /** @type {Record<string, StatsSummary>} */
      const out = {};
      for (const [id, s] of Object.entries(await room.summaries())) {
        const { connectionState, framesDecoded, frameWidth, audioPackets, pair, relayed } = s;
        out[id] = { connectionState, framesDecoded, frameWidth, audioPackets, pair, relayed };
      }
      return out;
    });
  }

  // ---------------------------------------------------------------- the window

  window.addEventListener('pagehide', () => {
    if (!ended) room.leave();
  });
  // Back/forward cache: the call ended when the page was hidden; start a fresh one.
  window.addEventListener('pageshow', (ev) => {
    if (ev.persisted) location.reload();
  });
  // Back online, perhaps on another network: reconnect the socket now and restart ICE.
  window.addEventListener('online', () => {
    signaling.probe(); // the socket may be bound to an address that has gone
    signaling.reconnectNow();
    room.networkChanged();
  });

  // ---------------------------------------------------------------- helpers

  /** The call is over for us: devices released, tiles gone. */
  function end() {
    ended = true;
    stopSpeaking();
    media.stop();
    view.grid.clear();
  }

  function leave() {
    if (ended) return;
    room.leave();
    end();
    for (const kind of ['serverUnreachable', 'peerFailed', 'autoplayBlocked']) notices.clear(kind);
    view.showEnded({
      kind: 'left',
      title: 'You left the call',
      text: 'Your camera and microphone are off. Rejoin, or start a new call.',
      canRejoin: true,
      rejoinLabel: 'Rejoin',
    });
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
