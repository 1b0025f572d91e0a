// The video grid: one tile per participant, laid out to fill the stage.
//
// Layout: for n tiles in a W x H stage, try every column count and a few tile shapes and
// keep the one showing the most picture. Video fills its tile (object-fit: cover), so a
// tile far from the camera's 16:9 crops it; a shape's score is its area times the square
// root of the share of a 16:9 picture it shows. Wide stages use 16:9 and 4:3 tiles only;
// a phone held upright may also get square and 3:4 tiles.
//
// DOM contract used by the browser tests: `.tile[data-peer=<id>]` (remote) and
// `.tile[data-self]`; remote <video data-peer=<id>>; `data-mic-off`, `data-cam-off`,
// `data-screen` on a tile; the name in `.tile-name`.

import { icons } from './icons.js';

const GAP = 10;
const CAMERA_ASPECT = 16 / 9;
const WIDE_SHAPES = [16 / 9, 4 / 3];
const ALL_SHAPES = [16 / 9, 4 / 3, 1, 3 / 4];

/**
 * @param {number} n
 * @param {number} width
 * @param {number} height
 * @param {number} gap
 * @returns {{ cols: number, w: number, h: number }}
 */
export function bestLayout(n, width, height, gap) {
  let best = { cols: 1, w: 0, h: 0, score: -1 };
  const shapes = height > width ? ALL_SHAPES : WIDE_SHAPES;
  for (const aspect of shapes) {
    const shown = Math.min(aspect, CAMERA_ASPECT) / Math.max(aspect, CAMERA_ASPECT);
    const weight = Math.sqrt(shown);
    for (let cols = 1; cols <= Math.max(1, n); cols++) {
      const rows = Math.ceil(n / cols);
      const maxW = (width - gap * (cols - 1)) / cols;
      const maxH = (height - gap * (rows - 1)) / rows;
      const w = Math.min(maxW, maxH * aspect);
      if (w <= 0) continue;
      const h = w / aspect;
      const score = w * h * weight;
      if (score > best.score) best = { cols, w, h, score };
    }
  }
  return { cols: best.cols, w: Math.floor(best.w), h: Math.floor(best.h) };
}

/** A pleasant colour per participant, stable for an id. @param {string} id */
function hue(id) {
  let h = 0;
  for (let i = 0; i < id.length; i++) h = (h * 31 + id.charCodeAt(i)) % 360;
  return h;
}

/** @param {string} name */
function initials(name) {
  const parts = name.trim().split(/\s+/).filter(Boolean);
  if (parts.length === 0) return '?';
  const first = [...parts[0]][0] ?? '';
  const last = parts.length > 1 ? ([...parts[parts.length - 1]][0] ?? '') : '';
  return (first + last).toUpperCase();
}

/**
 * @typedef {object} TileHooks
 * @property {(video: HTMLVideoElement) => void} [firstFrame]  the first frame was painted (asked
 *   for by the test hooks only: nothing watches for it otherwise)
 * @property {(tile: Tile) => void} [autoplayBlocked]  sound needs a click
 */

export class Tile {
  /**
   * @param {{ id: string | null, name: string, video?: HTMLVideoElement | null, hooks?: TileHooks }} opts
   *   id null: our own tile; video: the boot stage's element already playing this participant
   *   (video first), taken over as it is: same stream, no reload, no blank frame
   */
  constructor(opts) {
    this.id = opts.id;
    this.hooks = opts.hooks ?? {};
    this.self = opts.id === null;
    this.needsSound = false;
    this.framed = false;
    this.removed = false;
    /** @type {number | null} the pending requestVideoFrameCallback, until the first frame */
    this.frameRequest = null;
    /** play() calls aborted in a row; the retries after an abort are bounded by it */
    this.aborts = 0;
    /** @type {WeakSet<MediaStreamTrack>} */
    this.watched = new WeakSet();

    const el = document.createElement('div');
    el.className = 'tile';
    if (opts.id === null) el.dataset.self = '';
    else el.dataset.peer = opts.id;
    el.style.setProperty('--hue', String(hue(opts.id ?? 'self')));

    const video = opts.video ?? document.createElement('video');
    if (opts.video) {
      video.muted = false; // the boot stage played it muted; play() below asks for sound
      el.dataset.early = ''; // already on screen: no fade-in
    }
    video.autoplay = true;
    video.playsInline = true;
    if (this.self) {
      video.muted = true;
      video.classList.add('mirrored');
    } else {
      video.dataset.peer = /** @type {string} */ (opts.id);
    }

    const avatar = document.createElement('div');
    avatar.className = 'tile-avatar';
    const initialsEl = document.createElement('span');
    avatar.append(initialsEl);

    const status = document.createElement('div');
    status.className = 'tile-status';
    status.hidden = true;

    const badges = document.createElement('div');
    badges.className = 'tile-badges';
    const relay = document.createElement('span');
    relay.className = 'badge tile-relay';
    relay.textContent = 'Relayed (TURN)';
    relay.title = 'A direct connection was not possible; media goes through a TURN relay server.';
    relay.hidden = true;
    const presenting = document.createElement('span');
    presenting.className = 'badge tile-presenting';
    presenting.textContent = this.self ? 'You are presenting' : 'Presenting';
    badges.append(presenting, relay);

    const footer = document.createElement('div');
    footer.className = 'tile-footer';
    const micIcon = document.createElement('span');
    micIcon.className = 'tile-mic';
    micIcon.innerHTML = icons.micOff;
    micIcon.title = 'Muted';
    const nameEl = document.createElement('span');
    nameEl.className = 'tile-name';
    // The connection's quality (setQuality): three bars, hidden until known.
    const quality = document.createElement('span');
    quality.className = 'tile-quality';
    quality.setAttribute('role', 'img');
    quality.hidden = true;
    for (let i = 0; i < 3; i++) quality.append(document.createElement('i'));
    footer.append(micIcon, nameEl, quality);

    el.append(video, avatar, status, badges, footer);
    this.el = el;
    this.video = video;
    // Playback must not stay stopped: whatever paused or aborted it, play again once there
    // is something to play; and look for the first frame whenever playback (re)starts.
    video.addEventListener('loadedmetadata', () => this.ensurePlaying());
    video.addEventListener('playing', () => {
      this.aborts = 0;
      this.armFrame();
    });
    // We never pause a video ourselves, so a pause came from elsewhere (the stream went
    // inactive for a moment, the browser); ensurePlaying leaves an inactive stream alone.
    video.addEventListener('pause', () => setTimeout(() => this.ensurePlaying(), 0));
    this.nameEl = nameEl;
    this.initialsEl = initialsEl;
    this.statusEl = status;
    this.relayEl = relay;
    this.qualityEl = quality;
    this.setName(opts.name);
  }

  /** @param {string} name */
  setName(name) {
    const shown = name || 'Guest';
    this.nameEl.textContent = this.self ? `${shown} (you)` : shown;
    this.initialsEl.textContent = initials(shown);
    this.el.setAttribute('aria-label', this.self ? `${shown} (you)` : shown);
  }

  /** Show a remote stream (the same object again when its tracks changed). @param {MediaStream} stream */
  attach(stream) {
    const v = this.video;
    if (v.srcObject !== stream) v.srcObject = stream;
    for (const track of stream.getTracks()) {
      if (this.watched.has(track)) continue;
      this.watched.add(track);
      // Media starts (or comes back) on this track: make sure it is being played.
      track.addEventListener('unmute', () => this.ensurePlaying());
    }
    this.play();
    this.armFrame();
  }

  /** Our own tile: show this local video track, or nothing. @param {MediaStreamTrack | null} track */
  showLocal(track) {
    const current = this.video.srcObject instanceof MediaStream ? this.video.srcObject.getVideoTracks()[0] : null;
    if (current === track) return;
    this.video.srcObject = track ? new MediaStream([track]) : null;
    if (track) this.play();
  }

  play() {
    const v = this.video;
    v.play().catch((err) => {
      if (!(err instanceof DOMException)) return;
      if (err.name === 'NotAllowedError' && !v.muted) {
        // Autoplay with sound refused: play muted now, offer sound on a click.
        v.muted = true;
        this.needsSound = true;
        this.hooks.autoplayBlocked?.(this);
        v.play().catch(() => {});
      } else if (err.name === 'AbortError' && this.aborts < 5) {
        // A new srcObject, a pause or the stream ending took over. Whoever did may not play
        // it again: look once more shortly (a few times at most; the events above and the
        // next attach try again after that).
        this.aborts += 1;
        setTimeout(() => this.ensurePlaying(), 200 * this.aborts);
      }
    });
  }

  /** Play if there is something to play and nothing plays it; watch for the first frame. */
  ensurePlaying() {
    const v = this.video;
    const stream = v.srcObject;
    if (this.removed || !(stream instanceof MediaStream) || !stream.active) return;
    if (v.paused) this.play();
    this.armFrame();
  }

  /**
   * Ask for a callback at the next painted frame, until the first one is recorded (when a
   * `firstFrame` hook wants it: remote tiles in a test). Asked afresh each time playback (re)starts: a request made before a
   * reload of the player can be lost with it.
   */
  armFrame() {
    const v = this.video;
    if (!this.hooks.firstFrame || this.framed || this.removed || !('requestVideoFrameCallback' in v)) return;
    if (this.frameRequest !== null) v.cancelVideoFrameCallback(this.frameRequest);
    this.frameRequest = v.requestVideoFrameCallback(() => {
      this.frameRequest = null;
      if (this.framed) return;
      this.framed = true;
      this.hooks.firstFrame?.(v);
    });
  }

  /** After a user gesture: turn the sound on that autoplay refused. */
  enableSound() {
    if (!this.needsSound) return;
    this.needsSound = false;
    this.video.muted = false;
    this.play();
  }

  /** @param {string} attr @param {boolean} on */
  flag(attr, on) {
    if (on) this.el.setAttribute(attr, '');
    else this.el.removeAttribute(attr);
  }

  /** @param {boolean} off */
  setMicOff(off) {
    this.flag('data-mic-off', off);
  }

  /** @param {boolean} off */
  setCamOff(off) {
    this.flag('data-cam-off', off);
  }

  /** @param {boolean} on */
  setScreen(on) {
    this.flag('data-screen', on);
    if (this.self) this.video.classList.toggle('mirrored', !on);
  }

  /** @param {boolean} on */
  setSpeaking(on) {
    this.el.classList.toggle('speaking', on);
  }

  /** @param {boolean} on */
  setRelayed(on) {
    this.relayEl.hidden = !on;
  }

  /**
   * How the connection to this participant is doing (quality.js), as bars by the name and
   * `data-quality` on the tile; null hides them.
   * @param {import('./quality.js').Quality | null} q
   */
  setQuality(q) {
    this.qualityEl.hidden = q === null;
    if (q === null) {
      delete this.el.dataset.quality;
      return;
    }
    this.el.dataset.quality = q;
    const words = { good: 'Good connection', weak: 'Weak connection', reconnecting: 'Reconnecting…' }[q];
    this.qualityEl.title = words;
    this.qualityEl.setAttribute('aria-label', words);
  }

  /** A line over the tile ("Connecting…"), or null to hide it. @param {string | null} text */
  setStatus(text) {
    this.statusEl.hidden = text === null;
    this.statusEl.textContent = text ?? '';
  }

  remove() {
    this.removed = true;
    this.video.srcObject = null;
    this.el.remove();
  }
}

export class Grid {
  /** @param {HTMLElement} el  the #grid element; its parent is measured */
  constructor(el) {
    this.el = el;
    /** @type {Map<string, Tile>} key: peer id, or "" for our own tile */
    this.tiles = new Map();
    const stage = el.parentElement ?? el;
    this.stage = stage;
    /** @type {number | null} a layout waiting for the next frame */
    this.pending = null;
    /**
     * The stage's content box, as its ResizeObserver last saw it (null: not laid out yet).
     * @type {{ width: number, height: number } | null}
     */
    this.size = null;
    /**
     * Tiles added while the grid is held (see hold), not yet in the page.
     * @type {DocumentFragment | null}
     */
    this.held = null;
    /**
     * Tiles made but kept out of the page for now (addWaiting, until show): events reach
     * them (get), they are not laid out.
     * @type {Map<string, Tile>}
     */
    this.waiting = new Map();
    /** What layout() set last, so that an unchanged layout touches nothing. */
    this.shown = '';
    this.observer = new ResizeObserver((entries) => {
      const box = entries[entries.length - 1].contentRect;
      this.size = { width: box.width, height: box.height };
      this.layout();
    });
    this.observer.observe(stage);
  }

  /**
   * Lay the grid out before the next frame is drawn: once however many tiles came and went
   * meanwhile, and without forcing a layout of the page in the middle of a task (the stage
   * is measured when the browser has laid it out anyway).
   */
  relayout() {
    this.pending ??= requestAnimationFrame(() => {
      this.pending = null;
      this.layout();
    });
  }

  /**
   * A tile that goes into the page only at show(id): until then it gets what happens to its
   * participant (get) and plays detached, and the page is not laid out again for it.
   * @param {Tile} tile
   */
  addWaiting(tile) {
    const key = tile.id ?? '';
    this.remove(key);
    this.waiting.set(key, tile);
  }

  /** Drop the waiting tile of this id, if any. @param {string} id */
  dropWaiting(id) {
    this.waiting.get(id)?.remove();
    this.waiting.delete(id);
  }

  /** Put a waiting tile into the page (nothing if it is there already, or gone). @param {string} id */
  show(id) {
    const tile = this.waiting.get(id);
    if (!tile) return;
    this.waiting.delete(id);
    this.add(tile);
  }

  /** @param {Tile} tile */
  add(tile) {
    const key = tile.id ?? '';
    this.dropWaiting(key); // one tile per participant: a waiting one shown later would replace this
    this.tiles.get(key)?.remove();
    this.tiles.set(key, tile);
    (this.held ?? this.el).append(tile.el);
    this.relayout();
    return tile;
  }

  /** Keep the tiles added from now on out of the page until release (a hidden page). */
  hold() {
    this.held ??= document.createDocumentFragment();
  }

  /** Put the tiles held back into the page, in the order they came. */
  release() {
    if (!this.held) return;
    this.el.append(this.held);
    this.held = null;
    this.relayout();
  }

  /** @param {string} id */
  get(id) {
    return this.tiles.get(id) ?? this.waiting.get(id) ?? null;
  }

  /** @param {string} id */
  remove(id) {
    this.dropWaiting(id);
    const tile = this.tiles.get(id);
    if (!tile) return;
    this.tiles.delete(id);
    tile.remove();
    this.relayout();
  }

  /** Remove every tile, ours included. */
  clear() {
    for (const tile of [...this.tiles.values(), ...this.waiting.values()]) tile.remove();
    this.tiles.clear();
    this.waiting.clear();
  }

  /**
   * Size the tiles for the stage. The stage's size comes from its ResizeObserver, so this
   * never makes the browser lay the page out to measure it.
   */
  layout() {
    const n = this.tiles.size;
    if (!this.size || n === 0) return; // the observer calls again once the stage has a size
    const { width, height } = this.size;
    if (width <= 0 || height <= 0) return;
    // A phone held upright: our own tile floats small in a corner, the others share the stage.
    const pip = n >= 2 && width < 560 && height > width && this.tiles.has('');
    const { cols, w, h } = bestLayout(pip ? n - 1 : n, width, height, GAP);
    const key = `${n} ${pip} ${cols} ${w} ${h}`;
    if (key === this.shown) return;
    this.shown = key;
    this.el.classList.toggle('pip', pip);
    this.el.style.setProperty('--tile-w', `${w}px`);
    this.el.style.setProperty('--tile-h', `${h}px`);
    this.el.style.setProperty('--gap', `${GAP}px`);
    this.el.style.maxWidth = `${cols * w + (cols - 1) * GAP}px`;
    this.el.dataset.count = String(n);
  }
}
