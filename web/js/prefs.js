// What the browser remembers between visits: the display name and the chosen devices
// (localStorage), and "join with mic/camera off" for the next join only (sessionStorage).
// Storage can be unavailable (private modes, blocked cookies): then nothing is remembered.
// The keys are boot.js's: the boot script reads the devices and "camera off"/"mic off"
// itself before the app loads.

import { STORAGE_KEYS as KEY } from './boot.js';

/** @param {Storage | null} store @param {string} key */
function read(store, key) {
  try {
    return store ? store.getItem(key) : null;
  } catch {
    return null;
  }
}

/** @param {Storage | null} store @param {string} key @param {string | null} value */
function write(store, key, value) {
  try {
    if (!store) return;
    if (value === null) store.removeItem(key);
    else store.setItem(key, value);
  } catch {
    // Not remembered; fine.
  }
}

/** @param {() => Storage} get */
function storage(get) {
  try {
    return get();
  } catch {
    return null;
  }
}

const local = storage(() => window.localStorage);
const session = storage(() => window.sessionStorage);

export const prefs = {
  /** The display name last used (as given: callers clean it, protocol.js cleanName). */
  get name() {
    return read(local, KEY.name) ?? '';
  },
  set name(v) {
    write(local, KEY.name, v || null);
  },
  get cameraId() {
    return read(local, KEY.camera);
  },
  set cameraId(v) {
    write(local, KEY.camera, v);
  },
  get micId() {
    return read(local, KEY.mic);
  },
  set micId(v) {
    write(local, KEY.mic, v);
  },
  /** Join the next call muted / with the camera off (chosen in the lobby). */
  get joinMicOff() {
    return read(session, KEY.micOff) === '1';
  },
  set joinMicOff(v) {
    write(session, KEY.micOff, v ? '1' : null);
  },
  get joinCamOff() {
    return read(session, KEY.camOff) === '1';
  },
  set joinCamOff(v) {
    write(session, KEY.camOff, v ? '1' : null);
  },
};
