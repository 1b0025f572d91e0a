// The lobby at `/`: pick a room (a random, hard-to-guess name is suggested), a display
// name (remembered), check the camera and microphone (preview, level meter, pickers), and
// join, which goes to `/r/<room>`.

import { byId, setIcon } from './dom.js';
import { icons, logo } from './icons.js';
import { Media } from './media.js';
import { prefs, cleanName } from './prefs.js';
import { isRoomId } from './protocol.js';
import { fillSelect } from './ui.js';

/** @typedef {import('./notices.js').Notices} Notices */

// Word lists for room names. Two adjectives, a noun and four digits: about 2^33
// combinations, so a room is not found by guessing while it is in use.
const ADJECTIVES = (
  'amber ancient azure bold bouncy brave breezy bright calm candid cheery clever coral cosmic cozy crimson crisp ' +
  'dapper daring dreamy dusty eager electric emerald fancy fearless fluffy frosty fuzzy gentle giant glossy golden ' +
  'grand happy hazy hearty hidden humble icy indigo jade jolly keen kind lively loyal lucky lunar magic marble ' +
  'mellow merry mighty minty misty mossy neon nimble noble olive peachy plucky polar proud quick quiet rapid rosy ' +
  'royal rugged rustic sandy scarlet secret serene sharp shiny silent silver sleepy sly smooth snowy solar sparkly ' +
  'spicy spry steady stellar stormy sturdy sunny sweet swift teal tender thrifty tidy tiny upbeat vast velvet ' +
  'vivid wandering warm whimsical wild windy wise witty young zesty zippy'
).split(' ');
const NOUNS = (
  'acorn anchor apricot badger beacon biscuit bison bramble breeze cactus canyon castle cedar cloud clover comet ' +
  'compass cricket crystal dolphin dragon ember falcon fern fjord forest fox galaxy garden geyser glacier harbor ' +
  'hedgehog heron island jaguar kettle kite lagoon lantern lemur lighthouse lotus lynx mango maple marmot meadow ' +
  'meteor mountain muffin nebula nectar noodle oasis orchid otter owl panda parrot pebble pepper phoenix pine ' +
  'pinecone planet prairie pretzel puffin quartz rabbit raven reef river robin rocket saffron salmon sparrow ' +
  'spruce squirrel summit thistle thunder tiger tulip tundra turtle valley violet volcano voyage waffle walrus ' +
  'whale willow wombat yak zebra'
).split(' ');

/** @param {number} n  a uniformly random integer in [0, n) */
function randomBelow(n) {
  const buf = new Uint32Array(1);
  const limit = Math.floor(0x1_0000_0000 / n) * n;
  for (;;) {
    crypto.getRandomValues(buf);
    if (buf[0] < limit) return buf[0] % n;
  }
}

/** A fresh room name like "misty-coral-otter-4821" (only characters room ids allow). */
export function randomRoomName() {
  const a = ADJECTIVES[randomBelow(ADJECTIVES.length)];
  let b = ADJECTIVES[randomBelow(ADJECTIVES.length)];
  while (b === a) b = ADJECTIVES[randomBelow(ADJECTIVES.length)];
  const noun = NOUNS[randomBelow(NOUNS.length)];
  const digits = String(randomBelow(10_000)).padStart(4, '0');
  return `${a}-${b}-${noun}-${digits}`;
}

/**
 * Run the lobby page.
 * @param {{ notices: Notices }} ctx
 */
export function startLobby(ctx) {
  const root = byId('lobby', HTMLElement);
  const form = byId('lobby-form', HTMLFormElement);
  const room = byId('lobby-room', HTMLInputElement);
  const name = byId('lobby-name', HTMLInputElement);
  const join = byId('lobby-join', HTMLButtonElement);
  const preview = byId('lobby-preview', HTMLVideoElement);
  const empty = byId('lobby-preview-empty', HTMLDivElement);
  const emptyText = byId('lobby-preview-text', HTMLSpanElement);
  const camera = byId('lobby-camera', HTMLSelectElement);
  const mic = byId('lobby-mic', HTMLSelectElement);
  const level = byId('lobby-level', HTMLMeterElement);
  const micToggle = byId('lobby-mic-toggle', HTMLButtonElement);
  const camToggle = byId('lobby-cam-toggle', HTMLButtonElement);
  const shuffle = byId('lobby-shuffle', HTMLButtonElement);

  byId('brand-logo', HTMLSpanElement).innerHTML = logo;
  byId('brand-logo-top', HTMLSpanElement).innerHTML = logo;
  setIcon(shuffle, icons.shuffle);
  byId('lobby-meter-icon', HTMLSpanElement).innerHTML = icons.mic;
  const emptyIcon = empty.querySelector('.preview-empty-icon');
  if (emptyIcon) emptyIcon.innerHTML = icons.camOff;

  const params = new URLSearchParams(location.search);
  const wanted = params.get('room');
  room.value = wanted && isRoomId(wanted) ? wanted : randomRoomName();
  name.value = prefs.name;
  root.hidden = false;
  (name.value ? join : name).focus();

  const media = new Media();
  let micOff = prefs.joinMicOff;
  let camOff = prefs.joinCamOff;
  /** @type {string | null} */
  let emptyReason = null;

  const render = () => {
    const s = media.state;
    micToggle.setAttribute('aria-pressed', String(!micOff));
    micToggle.classList.toggle('off', micOff);
    micToggle.title = micOff ? 'You will join muted' : 'Microphone on';
    micToggle.setAttribute('aria-label', micToggle.title);
    micToggle.innerHTML = micOff ? icons.micOff : icons.mic;
    camToggle.setAttribute('aria-pressed', String(!camOff));
    camToggle.classList.toggle('off', camOff);
    camToggle.title = camOff ? 'You will join with the camera off' : 'Camera on';
    camToggle.setAttribute('aria-label', camToggle.title);
    camToggle.innerHTML = camOff ? icons.camOff : icons.cam;
    const showVideo = s.cam && !camOff;
    empty.hidden = showVideo;
    emptyText.textContent = camOff ? 'Camera is off' : (emptyReason ?? 'Starting camera…');
  };

  const refreshDevices = async () => {
    try {
      const { cameras, mics } = await media.devices();
      fillSelect(camera, cameras, media.currentDeviceId('video'), 'Camera');
      fillSelect(mic, mics, media.currentDeviceId('audio'), 'Microphone');
    } catch {
      // No device list: the pickers stay empty.
    }
  };

  media.on('problem', (p) => {
    ctx.notices.show(p);
    if (p === 'cameraDenied') emptyReason = 'Camera blocked';
    else if (p === 'noCamera') emptyReason = 'No camera found';
    else if (p === 'cameraBusy') emptyReason = 'Camera unavailable';
    else if (p === 'insecureContext') emptyReason = 'Camera needs https';
    render();
  });
  media.on('state', render);
  media.on('devices', () => void refreshDevices());

  media.on('outgoing', ({ kind, track }) => {
    if (kind !== 'video') return;
    preview.srcObject = track ? new MediaStream([track]) : null;
    if (track) preview.play().catch(() => {});
  });
  render();
  void media
    .start({ audio: true, video: !camOff, cameraId: prefs.cameraId, micId: prefs.micId })
    .then(async () => {
      if (media.micTrack) media.micTrack.enabled = !micOff;
      await refreshDevices();
      render();
    });

  const meter = () => {
    if (root.hidden) return;
    level.value = micOff ? 0 : media.level();
    requestAnimationFrame(meter);
  };
  requestAnimationFrame(meter);

  shuffle.addEventListener('click', () => {
    room.value = randomRoomName();
    room.setCustomValidity('');
  });
  room.addEventListener('input', () => room.setCustomValidity(''));
  micToggle.addEventListener('click', () => {
    media.resumeAudio();
    micOff = !micOff;
    prefs.joinMicOff = micOff;
    if (media.micTrack) media.micTrack.enabled = !micOff;
    render();
  });
  camToggle.addEventListener('click', async () => {
    camOff = !camOff;
    prefs.joinCamOff = camOff;
    render();
    await media.setCam(!camOff);
    await refreshDevices();
  });
  camera.addEventListener('change', async () => {
    prefs.cameraId = camera.value || null;
    await media.switchCamera(camera.value);
    if (!camOff && !media.camTrack) await media.setCam(true);
  });
  mic.addEventListener('change', async () => {
    prefs.micId = mic.value || null;
    await media.switchMic(mic.value);
    if (media.micTrack) media.micTrack.enabled = !micOff;
  });
  document.addEventListener('pointerdown', () => media.resumeAudio());

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const roomId = room.value.trim();
    if (!isRoomId(roomId)) {
      room.setCustomValidity('Use 1 to 64 letters, digits, - or _.');
      room.reportValidity();
      ctx.notices.show('invalidRoomId');
      return;
    }
    const who = cleanName(name.value);
    prefs.name = who;
    media.stop();
    const url = new URL(`/r/${encodeURIComponent(roomId)}`, location.origin);
    // Without storage the name would be lost on the way; carry it in the link instead.
    if (who && prefs.name !== who) url.searchParams.set('name', who);
    location.assign(url.href);
  });
}
