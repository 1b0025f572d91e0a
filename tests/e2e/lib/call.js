// Browser side of the end-to-end tests: one headless Chromium, one context per participant,
// each with its own synthetic camera colour, joined to a room of the real meshcall server.
//
// Follows the project's verified browser-testing recipe (shared/browser-testing.md beside
// the repository): Debian's chromium, fake media, loopback only (scripts/e2e runs all of this
// inside `unshare -n`), waits on state and counters, never on sleeps.

import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before } from 'node:test';
import { chromium } from 'playwright-core';
import { launchFirefox } from './firefox.js';
import { REPO, startServer } from './server.js';

export const ARTIFACTS = path.join(REPO, 'artifacts/e2e');
mkdirSync(ARTIFACTS, { recursive: true });

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

/** The closed-network and media flags of the recipe. */
export const BASE_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--use-fake-device-for-media-stream=device-count=2', // two cameras, two microphones
  '--allow-loopback-in-peer-connection',
  '--autoplay-policy=no-user-gesture-required',
];
/** Auto-grant camera and microphone to every context. */
export const FAKE_UI = '--use-fake-ui-for-media-stream';

/**
 * @param {{ fakeUi?: boolean, extraArgs?: string[] }} [opts]  fakeUi false: permissions come
 *   from each context; extraArgs: more Chromium flags (a certificate to trust, say)
 */
export async function launchBrowser({ fakeUi = true, extraArgs = [] } = {}) {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [...(fakeUi ? [...BASE_ARGS, FAKE_UI] : BASE_ARGS), ...extraArgs],
  });
}

/**
 * What a Call joins participants with: Playwright's Chromium, or lib/firefox.js's adapter
 * (the same methods, as far as the tests use them).
 * @typedef {import('playwright-core').Browser | import('./firefox.js').FirefoxBrowser} AnyBrowser
 */

/** @param {AnyBrowser} b @returns {'chromium' | 'firefox'} */
export function browserKind(b) {
  return 'kind' in b && b.kind === 'firefox' ? 'firefox' : 'chromium';
}

/**
 * What most test files share: one meshcall server (started with `serverOpts`) and one
 * browser, made before the file's tests and closed after them. The tests read `.server`
 * and `.browser`. (Node runs top-level `before` hooks at once, side by side: another hook
 * of the file cannot count on them; what needs the server starts in the test.)
 * With `firefox`, a Firefox too (`.firefox`), unless E2E_BROWSERS leaves it out.
 * @param {Parameters<typeof startServer>[0]} [serverOpts]
 * @param {{ firefox?: boolean }} [o]
 */
export function serverAndBrowser(serverOpts, { firefox = false } = {}) {
  const fx = /** @type {{ server: import('./server.js').Server, browser: import('playwright-core').Browser, firefox: import('./firefox.js').FirefoxBrowser }} */ ({});
  before(async () => {
    fx.server = await startServer(serverOpts);
    fx.browser = await launchBrowser();
    if (firefox && callBrowsers().includes('firefox')) fx.firefox = await launchFirefox();
  });
  after(async () => {
    await fx.firefox?.close();
    await fx.browser?.close();
    await fx.server?.stop();
  });
  return fx;
}

/**
 * The browsers a file's call tests run in: Chromium, and Firefox too unless
 * E2E_BROWSERS names only one (`E2E_BROWSERS=chromium ./scripts/e2e ...`).
 * @returns {('chromium' | 'firefox')[]}
 */
export function callBrowsers() {
  const want = (process.env.E2E_BROWSERS || 'chromium,firefox').split(',').map((s) => s.trim());
  return /** @type {('chromium' | 'firefox')[]} */ (['chromium', 'firefox'].filter((k) => want.includes(k)));
}

// Camera colours, one per participant (hue of hsl(h,100%,50%)): red, green, blue, yellow,
// ... Any two of these and the two below differ by more than TOLERANCE in some channel.
export const HUES = [0, 120, 240, 60, 210, 30, 270, 90];
export const SCREEN_HUE = 300; // magenta: no participant has it
export const SECOND_CAMERA_HUE = 180; // cyan: every participant's second camera (fake_device_1)

/** hsl(h, 100%, 50%) as [r, g, b]. @param {number} h */
export function hueRgb(h) {
  /** @param {number} n */
  const f = (n) => {
    const k = (n + h / 30) % 12;
    return Math.round(255 * (0.5 - 0.5 * Math.max(-1, Math.min(k - 3, 9 - k, 1))));
  };
  return [f(0), f(8), f(4)];
}

/** Largest per-channel difference accepted between sent and decoded colour. */
export const TOLERANCE = 64;

/** @param {number[] | null | undefined} got @param {number[]} want */
export function colourMatches(got, want) {
  return !!got && got.every((v, i) => Math.abs(v - want[i]) <= TOLERANCE);
}

/**
 * Runs in every page before the app (context.addInitScript): replaces the fake camera with a
 * canvas of one solid colour (the participant's own for the first camera, SECOND_CAMERA_HUE
 * for the second) and a running counter, and getDisplayMedia with a canvas of the screen
 * colour; optionally makes camera or microphone requests fail as a denied or missing device
 * does, or holds the camera's answer until the test calls `window.__releaseCamera()` (a slow
 * camera, or a permission prompt). The fake microphone (a beep) is kept.
 * @param {{ label: string, hue: number, altHue: number, screenHue: number, videoError: string | null,
 *   audioError: string | null, realScreen: boolean, holdCamera: boolean, realCamera: boolean }} o
 *   realCamera: keep the browser's own fake camera (a y4m file given to Chromium, say)
 */
function fakeMedia(o) {
  const md = navigator.mediaDevices;
  if (!md) return;
  const realGum = md.getUserMedia.bind(md);
  /** @type {MediaStreamTrack[]} every camera track handed out, so a test can see it stopped */
  const cams = [];
  Object.defineProperty(window, '__liveCameras', { value: () => cams.filter((t) => t.readyState === 'live').length });
  /** @type {() => void} */
  let releaseCamera = () => {};
  const cameraReleased = o.holdCamera ? new Promise((resolve) => { releaseCamera = () => resolve(undefined); }) : null;
  Object.defineProperty(window, '__releaseCamera', { value: () => releaseCamera() });
  /** @param {string} label @param {number} hue */
  const canvasTrack = (label, hue) => {
    const cv = document.createElement('canvas');
    cv.width = 320;
    cv.height = 240;
    const g = /** @type {CanvasRenderingContext2D} */ (cv.getContext('2d'));
    let n = 0;
    const draw = () => {
      g.fillStyle = `hsl(${hue},100%,50%)`;
      g.fillRect(0, 0, 320, 240);
      g.fillStyle = '#000';
      g.font = '40px sans-serif';
      g.fillText(`${label} ${n++}`, 40, 150);
    };
    draw();
    const timer = setInterval(draw, 50);
    const track = cv.captureStream(20).getVideoTracks()[0];
    const stop = track.stop.bind(track);
    track.stop = () => { clearInterval(timer); stop(); };
    return track;
  };
  /** @param {MediaStreamConstraints} [c] */
  md.getUserMedia = async (c) => {
    /** @param {string} name */
    const fail = (name) => new DOMException(name === 'NotFoundError' ? 'Requested device not found' : 'Permission denied', name);
    if (c && c.video && o.videoError) throw fail(o.videoError);
    if (c && c.audio && o.audioError) throw fail(o.audioError);
    if (c && c.video && cameraReleased) await cameraReleased;
    const s = await realGum(c);
    if (!c || !c.video || o.realCamera) return s;
    const real = s.getVideoTracks()[0];
    const settings = real.getSettings();
    const cameras = (await md.enumerateDevices()).filter((d) => d.kind === 'videoinput');
    const second = cameras.findIndex((d) => d.deviceId === settings.deviceId) > 0;
    for (const t of s.getVideoTracks()) { s.removeTrack(t); t.stop(); }
    const cam = canvasTrack(second ? `${o.label} cam2` : o.label, second ? o.altHue : o.hue);
    // Look like the camera it stands for, so the app's device picker sees the right one.
    const own = cam.getSettings.bind(cam);
    cam.getSettings = () => ({ ...own(), deviceId: settings.deviceId, groupId: settings.groupId });
    Object.defineProperty(cam, 'label', { value: real.label });
    cams.push(cam);
    s.addTrack(cam);
    return s;
  };
  if (o.realScreen) return; // Chromium's own fake screen (1280x720, green, pacman)
  md.getDisplayMedia = async () => {
    const s = new MediaStream();
    s.addTrack(canvasTrack(`${o.label} screen`, o.screenHue));
    return s;
  };
}

/**
 * Runs in a page before the app when asked (join option blockIce): while
 * `window.__blockIce` is true, the page's peer connections neither hand out their ICE
 * candidates (trickled, or inside a description: an offer made after gathering carries
 * them) nor take any, so no pair can form: a network where the peers cannot reach each
 * other. Setting it to false lets the next ICE restart through.
 */
function iceBlocker() {
  const w = /** @type {any} */ (window);
  w.__blockIce = true;
  const Native = window.RTCPeerConnection;
  /** @param {string | undefined} sdp */
  const strip = (sdp) => (sdp ?? '').split('\r\n').filter((l) => !l.startsWith('a=candidate:')).join('\r\n');
  class Blocked extends Native {
    /** @param {RTCConfiguration} [cfg] */
    constructor(cfg) {
      super(cfg);
      // Registered before the app's handler: swallow candidates while blocked.
      this.addEventListener('icecandidate', (ev) => { if (w.__blockIce && ev.candidate) ev.stopImmediatePropagation(); });
    }

    /** @param {RTCIceCandidateInit} [c] */
    addIceCandidate(c) {
      return w.__blockIce ? Promise.resolve() : super.addIceCandidate(c);
    }

    /** @param {RTCSessionDescriptionInit} d */
    setRemoteDescription(d) {
      return super.setRemoteDescription(w.__blockIce && d && d.sdp ? { type: d.type, sdp: strip(d.sdp) } : d);
    }

    get localDescription() {
      const d = super.localDescription;
      return w.__blockIce && d ? new RTCSessionDescription({ type: d.type, sdp: strip(d.sdp) }) : d;
    }
  }
  window.RTCPeerConnection = Blocked;
}

/** Runs in the page: mean colour of the top-left corner (clear of the counter text) of every
 * `video[data-peer]`, as {peerId: [r,g,b]} (null while a video has no frame). */
function sampleRemoteColours() {
  /** @type {Record<string, number[] | null>} */
  const out = {};
  for (const v of /** @type {NodeListOf<HTMLVideoElement>} */ (document.querySelectorAll('video[data-peer]'))) {
    const id = /** @type {string} */ (v.dataset.peer);
    if (v.readyState < 2 || !v.videoWidth) { out[id] = null; continue; }
    const c = document.createElement('canvas');
    c.width = v.videoWidth;
    c.height = v.videoHeight;
    const g = /** @type {CanvasRenderingContext2D} */ (c.getContext('2d', { willReadFrequently: true }));
    g.drawImage(v, 0, 0);
    const x = Math.floor(c.width * 0.02), y = Math.floor(c.height * 0.02);
    const w = Math.max(2, Math.floor(c.width * 0.08)), h = Math.max(2, Math.floor(c.height * 0.08));
    const d = g.getImageData(x, y, w, h).data;
    const sum = [0, 0, 0];
    for (let i = 0; i < d.length; i += 4) { sum[0] += d[i]; sum[1] += d[i + 1]; sum[2] += d[i + 2]; }
    const px = d.length / 4;
    out[id] = sum.map((s) => Math.round(s / px));
  }
  return out;
}

/**
 * Poll an async condition from Node (page.waitForFunction does not await async predicates).
 * @param {() => Promise<unknown> | unknown} fn
 * @param {number} timeoutMs
 * @param {string | (() => string | Promise<string>)} what  for the error message
 */
export async function pollUntil(fn, timeoutMs, what, every = 200) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > end) {
      const msg = typeof what === 'function' ? await what() : what;
      throw new Error(`timed out after ${timeoutMs} ms: ${msg}`);
    }
    await new Promise((r) => setTimeout(r, every));
  }
}

/**
 * @typedef {object} Participant
 * @property {string} name
 * @property {number} hue
 * @property {number[]} rgb
 * @property {import('playwright-core').BrowserContext} ctx
 * @property {import('playwright-core').Page} page
 * @property {string} id          its connection id (T.selfId) after the latest join
 * @property {number} t0          Date.now() just before page.goto
 * @property {string[]} console   console errors and uncaught exceptions
 * @property {string[]} pageErrors uncaught exceptions only
 * @property {boolean} closed
 * @property {'chromium' | 'firefox'} kind  the browser it runs in
 */

/** One room: participants join one at a time; helpers check what each of them sees. */
export class Call {
  /**
   * @param {AnyBrowser} browser  where participants join, unless join's `browser` says
   * @param {import('./server.js').Server} server
   * @param {string} room
   */
  constructor(browser, server, room) {
    this.browser = browser;
    this.server = server;
    this.room = room;
    /** @type {Participant[]} */
    this.all = [];
    this.started = Date.now();
  }

  /** With E2E_DEBUG=1, log how long into the call a step ended. @param {string} what */
  lap(what) {
    if (process.env.E2E_DEBUG) console.log(`[${this.room} +${Date.now() - this.started} ms] ${what}`);
  }

  /** Participants still in the page. */
  get live() {
    return this.all.filter((p) => !p.closed);
  }

  /**
   * Open a context and page for a participant and go to the room URL.
   * @param {string} name
   * @param {{ hue?: number, viewport?: {width:number,height:number}, videoError?: string | null, audioError?: string | null,
   *   permissions?: string[], waitJoined?: boolean, url?: string, realScreen?: boolean, blockIce?: boolean,
   *   holdCamera?: boolean, setup?: (ctx: import('playwright-core').BrowserContext) => Promise<void>, browser?: AnyBrowser,
   *   realCamera?: boolean }} [opts]
   *   holdCamera: the camera answers once the page calls `window.__releaseCamera()`;
   *   setup: more set-up of the context before its page opens (init scripts, routes);
   *   browser: join from this browser instead of the call's (a mixed call);
   *   realCamera: send the browser's own fake camera, not the coloured canvas
   * @returns {Promise<Participant>}
   */
  async join(name, opts = {}) {
    const hue = opts.hue ?? HUES[this.all.length % HUES.length];
    const browser = opts.browser ?? this.browser;
    const ctx = /** @type {import('playwright-core').BrowserContext} */ (await browser.newContext({
      viewport: opts.viewport ?? { width: 1280, height: 720 },
      ...(opts.permissions ? { permissions: opts.permissions } : {}),
    }));
    // The app's test hooks (window.T, window.collectStats) are installed only when asked for.
    await ctx.addInitScript(() => { /** @type {any} */ (window).__meshcallTestHooks = true; });
    await ctx.addInitScript(fakeMedia, { label: name, hue, altHue: SECOND_CAMERA_HUE, screenHue: SCREEN_HUE, videoError: opts.videoError ?? null, audioError: opts.audioError ?? null, realScreen: !!opts.realScreen, holdCamera: !!opts.holdCamera, realCamera: !!opts.realCamera });
    if (opts.blockIce) await ctx.addInitScript(iceBlocker);
    await opts.setup?.(ctx);
    const page = await ctx.newPage();
    /** @type {Participant} */
    const p = { name, hue, rgb: hueRgb(hue), ctx, page, id: '', t0: 0, console: [], pageErrors: [], closed: false, kind: browserKind(browser) };
    page.on('console', (m) => { if (m.type() === 'error') p.console.push(m.text()); });
    page.on('pageerror', (e) => { p.console.push(`uncaught: ${e.message}`); p.pageErrors.push(e.message); });
    this.all.push(p);
    p.t0 = Date.now();
    // Not waiting for `load`: the app's own `joined` is the signal that matters (waitJoined).
    // Once, under heavy load from other jobs, a page that had joined and held a working call
    // did not fire `load` within 30 s; a late `load` is reported below, not failed.
    await page.goto(opts.url ?? this.server.roomUrl(this.room, { name }), { waitUntil: 'domcontentloaded' });
    this.lap(`${name}: DOM loaded`);
    if (opts.waitJoined !== false) {
      await this.waitJoined(p);
      this.lap(`${name}: joined as ${p.id}`);
      await page.waitForFunction(() => document.readyState === 'complete', null, { timeout: 10_000 })
        .catch(() => console.log(`WARNING: ${name} joined but its page has not fired load 10 s later`));
    }
    return p;
  }

  /**
   * Wait until the app says it joined (after `since`, epoch ms, if given); remember its id.
   * @param {Participant} p
   */
  async waitJoined(p, { timeout = 30_000, since = 0 } = {}) {
    await p.page.waitForFunction((since) => window.T && window.T.joinedAt && window.T.joinedAt > since && window.T.selfId,
      since, { timeout, polling: 100 });
    p.id = await p.page.evaluate(() => window.T.selfId);
    return p.id;
  }

  /**
   * page.waitForFunction on p's page; a timeout fails naming p, `what` did not happen, and
   * p's state.
   * @param {Participant} p
   * @param {string} what
   * @param {(arg: any) => unknown} fn  runs in the page, on `arg`
   * @param {unknown} arg
   * @param {{ timeout: number, polling?: number | 'raf' }} opts
   */
  async waitFor(p, what, fn, arg, opts) {
    await p.page.waitForFunction(fn, arg, opts).catch(async (e) => {
      throw new Error(`${p.name}: ${what}: ${e.message}\n${await this.describe(p)}`);
    });
  }

  /** Leave the page abruptly. @param {Participant} p @param {'page' | 'context'} how */
  async close(p, how = 'page') {
    p.closed = true;
    if (how === 'page') await p.page.close();
    else await p.ctx.close();
  }

  /** Others than p, still here. @param {Participant} p */
  others(p) {
    return this.live.filter((q) => q !== p);
  }

  /**
   * Every live participant has exactly one tile per other live participant plus its own,
   * and every remote video has painted a frame (of the senders `video` says send video).
   * @param {{ timeout?: number, video?: (sender: Participant) => boolean }} [o]
   */
  async waitForMesh({ timeout = 30_000, video = () => true } = {}) {
    await Promise.all(this.live.map((p) => this.waitFor(p, 'no full mesh', ({ ids, painted }) => {
      const tiles = document.querySelectorAll('#grid .tile');
      const remote = [...document.querySelectorAll('#grid .tile[data-peer]')].map((t) => /** @type {HTMLElement} */ (t).dataset.peer);
      if (tiles.length !== ids.length + 1 || !document.querySelector('#grid .tile[data-self]')) return false;
      if (!ids.every((id) => remote.includes(id))) return false;
      return painted.every((id) => {
        const v = /** @type {HTMLVideoElement | null} */ (document.querySelector(`video[data-peer="${id}"]`));
        return !!v && v.readyState >= 2 && v.videoWidth > 0 && !!window.T.firstFrameAt[id];
      });
    }, { ids: this.others(p).map((q) => q.id), painted: this.others(p).filter(video).map((q) => q.id) },
    { timeout, polling: 100 })));
    this.lap('full mesh');
  }

  /**
   * Every live participant's grid has let `leaver` go (tile and video) and holds one tile per
   * live participant; returns the ms that took.
   * @param {Participant} leaver  marked closed already
   * @param {number} timeout
   */
  async waitForDeparture(leaver, timeout) {
    const start = Date.now();
    const n = this.live.length;
    this.lap(`waiting for ${leaver.name} to go`);
    await Promise.all(this.live.map((p) => this.waitFor(p, `still shows ${leaver.name}`, ({ n, gone }) =>
      document.querySelectorAll('#grid .tile').length === n
        && !document.querySelector(`#grid .tile[data-peer="${gone}"]`)
        && !document.querySelector(`video[data-peer="${gone}"]`),
    { n, gone: leaver.id }, { timeout, polling: 50 })));
    this.lap(`${leaver.name} gone`);
    return Date.now() - start;
  }

  /**
   * Every remote tile on every page shows its sender's colour (or what `expect` says; null:
   * do not look at that tile).
   * @param {(sender: Participant, viewer: Participant) => number[] | null} [expect]
   */
  async waitForColours(timeout = 20_000, expect = (s) => s.rgb) {
    /** @type {Record<string, unknown>} */
    let last = {};
    await pollUntil(async () => {
      let ok = true;
      for (const viewer of this.live) {
        const got = await viewer.page.evaluate(sampleRemoteColours);
        last[viewer.name] = got;
        for (const sender of this.others(viewer)) {
          const want = expect(sender, viewer);
          if (want && !colourMatches(got[sender.id], want)) ok = false;
        }
      }
      return ok;
    }, timeout, () => `remote tile colours. Expected (viewer <- sender: rgb): ${this.live.flatMap((v) => this.others(v).map((s) => `${v.name}<-${s.name}:${expect(s, v)}`)).join(' ')}; got by viewer and peer id: ${JSON.stringify(last)}; ids: ${this.live.map((p) => `${p.name}=${p.id}`).join(' ')}`);
    return last;
  }

  /** @param {Participant} p */
  async stats(p) {
    return /** @type {Record<string, {connectionState:string, framesDecoded:number, frameWidth:number, audioPackets:number, pair:string, relayed:boolean}>} */ (
      await p.page.evaluate(() => window.collectStats()));
  }

  /**
   * Media keeps flowing on every page from every other participant: at least `frames` more
   * decoded frames and `packets` more audio packets per peer; the pair is loopback, not
   * relayed (with `relayed`: a relayed UDP pair, the TURN server being on 127.0.0.1 too).
   * `video` and `audio` say which senders are expected to send each (default: everyone).
   * `pair`: the selected pair's pattern instead (links between namespaces, lib/netns.js).
   * @param {{ frames?: number, packets?: number, timeout?: number, relayed?: boolean,
   *   video?: (sender: Participant) => boolean, audio?: (sender: Participant) => boolean, pair?: RegExp }} [o]
   */
  async waitForMediaFlow({ frames = 30, packets = 50, timeout = 30_000, relayed = false, video = () => true, audio = () => true, pair: pairPattern } = {}) {
    await Promise.all(this.live.map(async (p) => {
      const senders = this.others(p);
      const ids = senders.map((q) => q.id);
      const before = await this.stats(p);
      let now = before;
      await pollUntil(async () => {
        now = await this.stats(p);
        return senders.every((q) => {
          const b = before[q.id], n = now[q.id];
          // A pair known (Firefox has none selected for a moment after an ICE restart).
          return b && n && n.connectionState === 'connected' && !!n.pair && (!relayed || n.relayed)
            && (!video(q) || (n.framesDecoded ?? 0) >= (b.framesDecoded ?? 0) + frames)
            && (!audio(q) || (n.audioPackets ?? 0) >= (b.audioPackets ?? 0) + packets);
        });
      }, timeout, () => `${p.name}: ${relayed ? 'relayed ' : ''}media progress from ${ids.join(',')}; before ${JSON.stringify(before)} now ${JSON.stringify(now)}`);
      for (const id of ids) {
        const s = now[id];
        // Local side loopback (127.0.0.1, or ::1: Firefox gathers it too and may move there
        // on an ICE restart); remote the same, or no address at all when the remote is
        // peer-reflexive (learnt from a check that beat its trickled candidate: Chromium's
        // stats hide prflx addresses). Relayed: 127.0.0.1 at both ends, relay addresses over UDP.
        const pair = pairPattern ?? (relayed ? /^127\.0\.0\.1:\d+\/udp -> (127\.0\.0\.1)?:\d+\/udp$/ : /^(127\.0\.0\.1|::1):\d+\/\w+ -> (127\.0\.0\.1|::1)?:\d+\//);
        if (!pair.test(s.pair ?? '')) {
          throw new Error(`${p.name}: selected pair to ${id} is not ${relayed ? 'relayed UDP' : 'loopback'}: ${s.pair}`);
        }
        if (s.relayed !== relayed) throw new Error(`${p.name}: pair to ${id} says relayed: ${s.relayed}`);
      }
    }));
  }

  /** T.errors and uncaught exceptions of every live page must be empty. */
  async assertNoErrors() {
    for (const p of this.live) {
      const errors = await p.page.evaluate(() => window.T.errors);
      if (errors.length || p.pageErrors.length) {
        throw new Error(`${p.name} has errors: T.errors=${JSON.stringify(errors)} uncaught=${JSON.stringify(p.pageErrors)}`);
      }
    }
  }

  /** How many camera tracks the page holds open (0: the camera light is off). @param {Participant} p */
  liveCameras(p) {
    return p.page.evaluate(() => /** @type {any} */ (window).__liveCameras());
  }

  /** Tile count (own included) on a page. @param {Participant} p */
  tileCount(p) {
    return p.page.evaluate(() => document.querySelectorAll('#grid .tile').length);
  }

  /** A readable dump of one page's state, for failure messages. @param {Participant} p */
  async describe(p) {
    if (p.closed) return `${p.name}: closed`;
    try {
      const s = await p.page.evaluate(async () => {
        const T = window.T || {};
        let stats = null;
        try { stats = window.collectStats ? await window.collectStats() : null; } catch (e) { stats = String(e); }
        const notice = document.querySelector('#notice');
        return {
          url: location.href,
          selfId: T.selfId, joinedAt: T.joinedAt, firstFrameAt: T.firstFrameAt, errors: T.errors, notices: T.notices,
          notice: notice && !notice.hidden ? `${notice.getAttribute('data-kind')}: ${notice.textContent?.trim()}` : null,
          tiles: [...document.querySelectorAll('#grid .tile')].map((t) => {
            const e = /** @type {HTMLElement} */ (t);
            return { peer: e.dataset.peer ?? 'self', attrs: [...e.attributes].map((a) => a.name).filter((n) => n.startsWith('data-')).join(' '), name: e.querySelector('.tile-name')?.textContent };
          }),
          stats,
        };
      });
      return `${p.name} (${p.id}): ${JSON.stringify(s)}\n  console: ${JSON.stringify(p.console.slice(-15))}`;
    } catch (e) {
      return `${p.name}: could not read state: ${e}`;
    }
  }

  /** Screenshots and state of every live page, after a failure. @param {string} label */
  async report(label) {
    const parts = [];
    for (const p of this.live) {
      try { await p.page.screenshot({ path: path.join(ARTIFACTS, `fail-${label}-${p.name}.png`) }); } catch { /* page gone */ }
      parts.push(await this.describe(p));
    }
    parts.push(`server log tail:\n${this.server.tail(20)}`);
    return parts.join('\n');
  }

  /** Close every context. */
  async end() {
    for (const p of this.all) {
      p.closed = true;
      await p.ctx.close().catch(() => {});
      this.lap(`${p.name}: context closed`);
    }
  }
}

/**
 * Run fn with a Call; on failure, attach every page's state and screenshots to the error.
 * @template T
 * @param {AnyBrowser} browser
 * @param {import('./server.js').Server} server
 * @param {string} room
 * @param {(call: Call) => Promise<T>} fn
 * @returns {Promise<T>}
 */
export async function withCall(browser, server, room, fn) {
  const call = new Call(browser, server, room);
  try {
    return await fn(call);
  } catch (e) {
    const err = /** @type {Error} */ (e);
    err.message += `\n--- state at failure ---\n${await call.report(room)}`;
    throw err;
  } finally {
    await call.end();
  }
}

/** A room name no other test uses. @param {string} what */
export function roomName(what) {
  return `${what}-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
}

/** @param {string} name @param {unknown} data */
export function writeArtifact(name, data) {
  writeFileSync(path.join(ARTIFACTS, name), typeof data === 'string' ? data : `${JSON.stringify(data, null, 2)}\n`);
}
