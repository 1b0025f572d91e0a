// The lobby at `/`: pick a room (a random, hard-to-guess name is suggested, roomname.js), a
// display name (remembered), check the camera and microphone (preview, level meter,
// pickers), choose to join muted or with the camera off, and join, which goes to
// `/r/<room>`. The page itself is lobbyview.js; this is what it does.

import { earlyMedia } from './early.js';
import { LobbyView } from './lobbyview.js';
import { Media } from './media.js';
import { prefs } from './prefs.js';
import { isRoomId } from './boot.js';
import { cleanName } from './protocol.js';
import { randomRoomName } from './roomname.js';

/** @typedef {import('./notices.js').Notices} Notices */
/** @typedef {import('./media.js').MediaProblem} MediaProblem */

/** Why the preview has no picture, for a problem with the camera. */
/** @type {Partial<Record<MediaProblem, string>>} */
const CAMERA_TROUBLE = {
  cameraDenied: 'Camera blocked',
  noCamera: 'No camera found',
  cameraBusy: 'Camera unavailable',
  insecureContext: 'Camera needs https',
};

/**
 * Run the lobby page.
 * @param {{ notices: Notices }} ctx
 */
export function startLobby(ctx) {
  const { notices } = ctx;
  const media = new Media({ early: earlyMedia });
  let micOff = prefs.joinMicOff;
  let camOff = prefs.joinCamOff;
  /** @type {string | null} */
  let cameraTrouble = null;

  const view = new LobbyView({
    actions: {
      shuffle: () => view.setRoom(randomRoomName()),
      toggleMic: () => {
        media.resumeAudio();
        micOff = !micOff;
        prefs.joinMicOff = micOff;
        if (media.micTrack) media.micTrack.enabled = !micOff;
        render();
      },
      toggleCam: async () => {
        camOff = !camOff;
        prefs.joinCamOff = camOff;
        render();
        await media.setCam(!camOff);
        await refreshDevices();
      },
      pickCamera: async (id) => {
        prefs.cameraId = id || null;
        await media.switchCamera(id);
        if (!camOff && !media.camTrack) await media.setCam(true);
      },
      pickMic: async (id) => {
        prefs.micId = id || null;
        await media.switchMic(id);
        if (media.micTrack) media.micTrack.enabled = !micOff;
      },
      join,
      gesture: () => media.resumeAudio(),
    },
  });
  const wanted = new URLSearchParams(location.search).get('room');
  view.show({ room: wanted && isRoomId(wanted) ? wanted : randomRoomName(), name: cleanName(prefs.name) });

  const render = () => view.render({ micOff, camOff, camLive: media.state.cam, cameraTrouble });
  const refreshDevices = async () => {
    try {
      const { cameras, mics } = await media.devices();
      view.setDevices(cameras, mics, media.currentDeviceId('video'), media.currentDeviceId('audio'));
    } catch {
      // No device list: the pickers stay empty.
    }
  };

  media.on('problem', (p) => {
    notices.show(p);
    cameraTrouble = CAMERA_TROUBLE[p] ?? cameraTrouble;
    render();
  });
  media.on('state', render);
  media.on('devices', () => void refreshDevices());
  media.on('outgoing', ({ kind, track }) => {
    if (kind === 'video') view.setPreview(track);
  });
  render();
  void media
    .start({ audio: true, video: !camOff, cameraId: prefs.cameraId, micId: prefs.micId })
    .then(async () => {
      if (media.micTrack) media.micTrack.enabled = !micOff;
      await refreshDevices();
      render();
    });
  view.meter(() => (micOff ? 0 : media.level()));

  /** @param {string} roomValue @param {string} nameValue */
  function join(roomValue, nameValue) {
    const roomId = roomValue.trim();
    if (!isRoomId(roomId)) {
      view.refuseRoom('Use 1 to 64 letters, digits, - or _.');
      notices.show('invalidRoomId');
      return;
    }
    const who = cleanName(nameValue);
    prefs.name = who;
    media.stop();
    const url = new URL(`/r/${encodeURIComponent(roomId)}`, location.origin);
    // Without storage the name would be lost on the way; carry it in the link instead.
    if (who && prefs.name !== who) url.searchParams.set('name', who);
    location.assign(url.href);
  }
}
