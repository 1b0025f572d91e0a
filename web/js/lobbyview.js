// The lobby page's DOM (#lobby): the room and name fields, the camera preview with the
// microphone meter, the mic and camera toggles, the device pickers and the join button.
// It renders what it is told and reports what the person does through callbacks; the
// lobby's logic is in lobby.js.

import { byId, fillSelect, setIcon } from './dom.js';
import { icons, logo } from './icons.js';

/** How often the microphone meter is read. */
const METER_MS = 80;

/**
 * What the person does; lobby.js fills these in.
 * @typedef {object} LobbyActions
 * @property {() => void} shuffle  suggest another room name
 * @property {() => void} toggleMic
 * @property {() => void} toggleCam
 * @property {(deviceId: string) => void} pickCamera
 * @property {(deviceId: string) => void} pickMic
 * @property {(room: string, name: string) => void} join
 * @property {() => void} gesture  any click: a chance to resume audio
 */

/**
 * What the preview and toggles show.
 * @typedef {object} LobbyState
 * @property {boolean} micOff  join muted
 * @property {boolean} camOff  join with the camera off
 * @property {boolean} camLive  the camera is running
 * @property {string | null} cameraTrouble  why there is no picture, in words
 */

export class LobbyView {
  /** @param {{ actions: LobbyActions }} opts */
  constructor(opts) {
    const a = opts.actions;
    this.root = byId('lobby', HTMLElement);
    this.form = byId('lobby-form', HTMLFormElement);
    this.room = byId('lobby-room', HTMLInputElement);
    this.name = byId('lobby-name', HTMLInputElement);
    this.join = byId('lobby-join', HTMLButtonElement);
    this.preview = byId('lobby-preview', HTMLVideoElement);
    this.empty = byId('lobby-preview-empty', HTMLDivElement);
    this.emptyText = byId('lobby-preview-text', HTMLSpanElement);
    this.camera = byId('lobby-camera', HTMLSelectElement);
    this.mic = byId('lobby-mic', HTMLSelectElement);
    this.level = byId('lobby-level', HTMLMeterElement);
    this.micToggle = byId('lobby-mic-toggle', HTMLButtonElement);
    this.camToggle = byId('lobby-cam-toggle', HTMLButtonElement);
    const shuffle = byId('lobby-shuffle', HTMLButtonElement);

    byId('brand-logo', HTMLSpanElement).innerHTML = logo;
    byId('brand-logo-top', HTMLSpanElement).innerHTML = logo;
    setIcon(shuffle, icons.shuffle);
    byId('lobby-meter-icon', HTMLSpanElement).innerHTML = icons.mic;
    const emptyIcon = this.empty.querySelector('.preview-empty-icon');
    if (emptyIcon) emptyIcon.innerHTML = icons.camOff;

    shuffle.addEventListener('click', () => a.shuffle());
    this.room.addEventListener('input', () => this.room.setCustomValidity(''));
    this.micToggle.addEventListener('click', () => a.toggleMic());
    this.camToggle.addEventListener('click', () => a.toggleCam());
    this.camera.addEventListener('change', () => a.pickCamera(this.camera.value));
    this.mic.addEventListener('change', () => a.pickMic(this.mic.value));
    document.addEventListener('pointerdown', () => a.gesture());
    this.form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      a.join(this.room.value, this.name.value);
    });
  }

  /** Fill the fields and show the lobby. @param {{ room: string, name: string }} values */
  show(values) {
    this.room.value = values.room;
    this.name.value = values.name;
    this.root.hidden = false;
    (this.name.value ? this.join : this.name).focus();
  }

  /** @param {string} room */
  setRoom(room) {
    this.room.value = room;
    this.room.setCustomValidity('');
  }

  /** The room name can't be used: say so at the field. @param {string} why */
  refuseRoom(why) {
    this.room.setCustomValidity(why);
    this.room.reportValidity();
  }

  /** @param {LobbyState} s */
  render(s) {
    const { micToggle, camToggle } = this;
    micToggle.setAttribute('aria-pressed', String(!s.micOff));
    micToggle.classList.toggle('off', s.micOff);
    micToggle.title = s.micOff ? 'You will join muted' : 'Microphone on';
    micToggle.setAttribute('aria-label', micToggle.title);
    micToggle.innerHTML = s.micOff ? icons.micOff : icons.mic;
    camToggle.setAttribute('aria-pressed', String(!s.camOff));
    camToggle.classList.toggle('off', s.camOff);
    camToggle.title = s.camOff ? 'You will join with the camera off' : 'Camera on';
    camToggle.setAttribute('aria-label', camToggle.title);
    camToggle.innerHTML = s.camOff ? icons.camOff : icons.cam;
    this.empty.hidden = s.camLive && !s.camOff;
    this.emptyText.textContent = s.camOff ? 'Camera is off' : (s.cameraTrouble ?? 'Starting camera…');
  }

  /** Preview this camera track, or nothing. @param {MediaStreamTrack | null} track */
  setPreview(track) {
    this.preview.srcObject = track ? new MediaStream([track]) : null;
    if (track) this.preview.play().catch(() => {});
  }

  /**
   * @param {MediaDeviceInfo[]} cameras
   * @param {MediaDeviceInfo[]} mics
   * @param {string | null} cameraId
   * @param {string | null} micId
   */
  setDevices(cameras, mics, cameraId, micId) {
    fillSelect(this.camera, cameras, cameraId, 'Camera');
    fillSelect(this.mic, mics, micId, 'Microphone');
  }

  /**
   * Show the microphone level (0..1) a dozen times a second while the lobby is shown; only
   * changes touch the page.
   * @param {() => number} level
   */
  meter(level) {
    let shown = -1;
    const timer = setInterval(() => {
      if (this.root.hidden) {
        clearInterval(timer);
        return;
      }
      const v = Math.round(level() * 100) / 100;
      if (v !== shown) this.level.value = shown = v;
    }, METER_MS);
  }
}
