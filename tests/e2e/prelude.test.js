// The first offers of a join (docs/web.md, "The prelude"): index.html's boot script makes
// them while the app loads, and the app adopts those connections; when the camera answers
// only after the app took over, the app makes them itself. Either way one offer per peer,
// and everyone sees everyone. Joining muted is silent from the first packet either way.
// Video first: the boot script shows each participant's video as it comes, the app runs
// after the first frames, and the tiles take those video elements over; on the other side,
// the tile for someone joining goes into the page only once the connection to them is up.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pollUntil, roomName, serverAndBrowser, withCall } from './lib/call.js';

const fx = serverAndBrowser();
/** Total audio energy (WebRTC stats) below this is silence. */
const SILENT = 1e-6;

/**
 * Runs in the page before its scripts: keeps every RTCPeerConnection it makes in
 * `window.__pcs` and counts the offers set as local descriptions in `window.__offers`.
 */
function watchConnections() {
  const w = /** @type {any} */ (window);
  w.__pcs = [];
  w.__offers = 0;
  const Real = RTCPeerConnection;
  w.RTCPeerConnection = function (/** @type {RTCConfiguration} */ c) {
    const pc = new Real(c);
    w.__pcs.push(pc);
    return pc;
  };
  w.RTCPeerConnection.prototype = Real.prototype;
  const setLocal = Real.prototype.setLocalDescription;
  Real.prototype.setLocalDescription = async function (/** @type {any[]} */ ...a) {
    await setLocal.apply(this, /** @type {any} */ (a));
    if (this.localDescription?.type === 'offer') w.__offers += 1;
  };
}

/**
 * Context set-up: the connection watcher, and /js/call.js held back until `release()`,
 * so the app cannot take over before the test lets it.
 */
function holdApp() {
  /** @type {() => void} */
  let release = () => {};
  const released = new Promise((resolve) => { release = () => resolve(undefined); });
  /** @param {import('playwright-core').BrowserContext} ctx */
  const setup = async (ctx) => {
    await ctx.addInitScript(watchConnections);
    await ctx.route('**/js/call.js', async (route) => {
      await released;
      await route.continue();
    });
  };
  return { setup, release };
}

/**
 * `name` joins with its app held back (holdApp), after `setup` if given; `release` lets it run.
 * @param {import('./lib/call.js').Call} call @param {string} name
 * @param {(ctx: import('playwright-core').BrowserContext) => Promise<unknown>} [setup]
 */
async function joinHeld(call, name, setup) {
  const held = holdApp();
  const p = await call.join(name, {
    waitJoined: false,
    setup: async (ctx) => {
      await setup?.(ctx);
      await held.setup(ctx);
    },
  });
  return { p, release: held.release };
}

/** How many offers the prelude made (its mark's detail), null when it made none. @param {import('playwright-core').Page} page */
const preludeOffers = (page) => page.evaluate(() => {
  const m = /** @type {PerformanceMark | undefined} */ (performance.getEntriesByName('meshcall:prelude-offers')[0]);
  return m ? /** @type {number} */ (m.detail) : null;
});

/**
 * Once the prelude's offers are out: how many it made.
 * @param {import('./lib/call.js').Call} call @param {import('./lib/call.js').Participant} p
 */
async function preludeOffered(call, p) {
  await call.waitFor(p, 'no prelude offers', () => performance.getEntriesByName('meshcall:prelude-offers').length > 0,
    null, { timeout: 15_000, polling: 50 });
  return preludeOffers(p.page);
}

test('the boot script makes the first offers while the app loads; the app adopts them', { timeout: 120_000 }, async () => {
  await withCall(fx.browser, fx.server, roomName('prelude'), async (call) => {
    await call.join('P0');
    await call.join('P1');
    const { p: p2, release } = await joinHeld(call, 'P2');
    // Offers to both, made and sent before any of the call's modules could run.
    assert.equal(await preludeOffered(call, p2), 2);
    assert.equal(await p2.page.evaluate(() => window.T.joinedAt), null, 'the app has not joined yet');
    release();
    await call.waitJoined(p2);
    await call.waitForMesh();
    await call.waitForColours();
    await call.waitForMediaFlow();
    // The adopted connections are the app's: one offer each, no second one from the app.
    assert.deepEqual(await p2.page.evaluate(() => [/** @type {any} */ (window).__pcs.length, /** @type {any} */ (window).__offers]), [2, 2]);
    // Made as peer.js makes its own: the same configuration, the data channel it expects.
    const made = await p2.page.evaluate(async () => {
      const { connectionConfig } = await import('/js/boot.js');
      return /** @type {RTCPeerConnection[]} */ (/** @type {any} */ (window).__pcs).map((pc) => {
        const got = /** @type {Record<string, unknown>} */ (/** @type {unknown} */ (pc.getConfiguration()));
        const want = /** @type {Record<string, unknown>} */ (/** @type {unknown} */ (
          connectionConfig(pc.getConfiguration().iceServers ?? [], pc.getConfiguration().iceTransportPolicy ?? 'all')));
        return Object.keys(want).filter((k) => JSON.stringify(got[k]) !== JSON.stringify(want[k]));
      });
    });
    assert.deepEqual(made, [[], []], 'configuration keys the prelude set differently from peer.js');
    // And it drives them: a mute reaches the others over the adopted data channels.
    await p2.page.click('#btn-mic');
    await Promise.all(call.others(p2).map((p) => call.waitFor(p, 'P2 not shown muted', (id) =>
      !!document.querySelector(`#grid .tile[data-peer="${id}"][data-mic-off]`), p2.id, { timeout: 10_000, polling: 50 })));
    await call.assertNoErrors();
  });
});

test('video first: the boot stage shows everyone before the app runs; their tiles take the same elements over', { timeout: 120_000 }, async () => {
  await withCall(fx.browser, fx.server, roomName('videofirst'), async (call) => {
    await call.join('P0');
    await call.join('P1');
    const { p: p2, release } = await joinHeld(call, 'P2');
    // Both others' videos play on the boot stage, the app still held back: each paints a
    // frame with a picture in it. Each element is marked, to be found in its tile later.
    await call.waitFor(p2, 'no boot stage with two videos', () => document.querySelectorAll('#boot-stage video').length === 2,
      null, { timeout: 15_000, polling: 50 });
    const onStage = await p2.page.evaluate(() => Promise.all([...document.querySelectorAll('#boot-stage video')].map((el) => {
      const v = /** @type {HTMLVideoElement} */ (el);
      /** @type {any} */ (v).__fromStage = true;
      return new Promise((resolve) => v.requestVideoFrameCallback(() => resolve({
        peer: v.dataset.peer, width: v.videoWidth, muted: v.muted, paused: v.paused,
        tracks: /** @type {MediaStream} */ (v.srcObject).getTracks().map((t) => t.kind).sort(),
      })));
    })));
    const others = call.others(p2).map((p) => p.id).sort();
    assert.deepEqual(onStage.map((v) => v.peer).sort(), others, 'one video per other participant');
    for (const v of onStage) {
      assert.ok(v.width > 0 && !v.paused && v.muted, `playing a picture, muted until the app: ${JSON.stringify(v)}`);
      assert.deepEqual(v.tracks, ['audio', 'video'], 'their audio and video (the stream the Peer adopts)');
    }
    assert.equal(await p2.page.evaluate(() => window.T.joinedAt), null, 'the app has not run yet');
    release();
    await call.waitJoined(p2);
    await call.waitForMesh();
    await call.waitForColours();
    // Each tile plays the very element the stage did, now with sound; the stage is gone.
    const tiles = await p2.page.evaluate((ids) => ids.map((id) => {
      const v = /** @type {HTMLVideoElement | null} */ (document.querySelector(`#grid .tile[data-peer="${id}"] video`));
      return { id, fromStage: !!(/** @type {any} */ (v))?.__fromStage, muted: v?.muted, paused: v?.paused, early: v?.closest('.tile')?.hasAttribute('data-early') };
    }), others);
    for (const t of tiles) assert.deepEqual(t, { id: t.id, fromStage: true, muted: false, paused: false, early: true });
    assert.equal(await p2.page.evaluate(() => document.getElementById('boot-stage')), null, 'the boot stage is gone');
    await call.assertNoErrors();
  });
});

test('video first: the app runs once the first frames are painted (or FRAMES_WAIT_MS after the offers)', { timeout: 120_000 }, async () => {
  await withCall(fx.browser, fx.server, roomName('videofirstgate'), async (call) => {
    await call.join('P0');
    const p1 = await call.join('P1', {
      setup: (ctx) => ctx.addInitScript(() => {
        // When the boot stage's first video painted its first frame.
        const w = /** @type {any} */ (window);
        new MutationObserver((_, observer) => {
          const v = /** @type {HTMLVideoElement | null} */ (document.querySelector('#boot-stage video'));
          if (!v) return;
          observer.disconnect();
          v.requestVideoFrameCallback(() => { w.__stageFrameAt = performance.now(); });
        }).observe(document, { childList: true, subtree: true });
      }),
    });
    await call.waitForMesh();
    const at = await p1.page.evaluate(() => ({
      frame: /** @type {any} */ (window).__stageFrameAt ?? null,
      offers: performance.getEntriesByName('meshcall:prelude-offers')[0]?.startTime ?? null,
      app: performance.getEntriesByName('meshcall:media-start')[0]?.startTime ?? null,
    }));
    assert.ok(at.offers !== null && at.app !== null, `the prelude offered and the app ran: ${JSON.stringify(at)}`);
    // FRAMES_WAIT_MS (index.html) is 1500 ms; a timer may fire a little early, not 100 ms.
    const waitedOut = at.app - at.offers >= 1400;
    assert.ok(waitedOut || (at.frame !== null && at.app >= at.frame), `the app ran before the first frame: ${JSON.stringify(at)}`);
    await call.assertNoErrors();
  });
});

test('someone joining: the tile for them goes into the page once the connection to them is up', { timeout: 120_000 }, async () => {
  await withCall(fx.browser, fx.server, roomName('tileafter'), async (call) => {
    const p0 = await call.join('P0', {
      setup: (ctx) => ctx.addInitScript(() => {
        // When our first answer went out, when our first connection was up, and when the
        // first remote tile came into the page.
        const w = /** @type {any} */ (window);
        const send = WebSocket.prototype.send;
        WebSocket.prototype.send = function (/** @type {any} */ data) {
          if (w.__answerAt === undefined && typeof data === 'string' && data.includes('"answer"')) w.__answerAt = performance.now();
          return send.call(this, data);
        };
        const Real = RTCPeerConnection;
        w.RTCPeerConnection = function (/** @type {RTCConfiguration} */ c) {
          const pc = new Real(c);
          pc.addEventListener('connectionstatechange', () => {
            if (w.__connectedAt === undefined && pc.connectionState === 'connected') w.__connectedAt = performance.now();
          });
          return pc;
        };
        w.RTCPeerConnection.prototype = Real.prototype;
        new MutationObserver(() => {
          if (w.__tileAt === undefined && document.querySelector('#grid .tile[data-peer]')) w.__tileAt = performance.now();
        }).observe(document, { childList: true, subtree: true });
      }),
    });
    await call.join('P1');
    await call.waitForMesh();
    await call.waitForColours();
    const at = await p0.page.evaluate(() => {
      const w = /** @type {any} */ (window);
      return { answer: w.__answerAt, connected: w.__connectedAt, tile: w.__tileAt };
    });
    assert.ok(typeof at.answer === 'number' && typeof at.connected === 'number' && typeof at.tile === 'number', `answered, connected and shown: ${JSON.stringify(at)}`);
    // Not before: the page's re-layout for it would hold up the answer and the candidates.
    // (At the latest 1 s after they came, TILE_WAIT_MS: a connection this fast on loopback
    // is up well before that.)
    assert.ok(at.tile >= at.connected, `the tile came into the page before the connection was up: ${JSON.stringify(at)}`);
    await call.assertNoErrors();
  });
});

test('a camera slower than the app: the app makes the first offers itself', { timeout: 120_000 }, async () => {
  await withCall(fx.browser, fx.server, roomName('slowcam'), async (call) => {
    await call.join('P0');
    const p1 = await call.join('P1', { holdCamera: true, setup: (ctx) => ctx.addInitScript(watchConnections) });
    // The app has joined (its `joined` handled), the camera has not answered: no offer yet.
    assert.equal(await p1.page.evaluate(() => /** @type {any} */ (window).__offers), 0);
    await p1.page.evaluate(() => /** @type {any} */ (window).__releaseCamera());
    await call.waitForMesh();
    await call.waitForColours();
    assert.equal(await preludeOffers(p1.page), null, 'the prelude stood back');
    assert.deepEqual(await p1.page.evaluate(() => [/** @type {any} */ (window).__pcs.length, /** @type {any} */ (window).__offers]), [1, 1]);
    await call.assertNoErrors();
  });
});

test('joining muted through the prelude: silent from the first packet', { timeout: 120_000 }, async () => {
  await withCall(fx.browser, fx.server, roomName('mutedjoin'), async (call) => {
    const p0 = await call.join('P0', { setup: (ctx) => ctx.addInitScript(watchConnections) });
    // As the lobby leaves it after "join with the microphone off".
    const { p: p1, release } = await joinHeld(call, 'P1', (ctx) => ctx.addInitScript(() => sessionStorage.setItem('meshcall.joinMicOff', '1')));
    assert.equal(await preludeOffered(call, p1), 1);
    release();
    await call.waitJoined(p1);
    await call.waitForMesh();
    /** The audio P0 has received from P1: packets and energy. */
    const heard = () => p0.page.evaluate(async () => {
      for (const pc of /** @type {RTCPeerConnection[]} */ (/** @type {any} */ (window).__pcs)) {
        for (const r of (await pc.getStats()).values()) {
          if (r.type === 'inbound-rtp' && r.kind === 'audio') return { packets: r.packetsReceived ?? 0, energy: r.totalAudioEnergy ?? 0 };
        }
      }
      return { packets: 0, energy: 0 };
    });
    let got = await heard();
    await pollUntil(async () => (got = await heard()).packets >= 100, 20_000, () => `P1's audio at P0: ${JSON.stringify(got)}`);
    // Silence decodes to a little noise (around 1e-9), a beep to far more.
    assert.ok(got.energy < SILENT, `P0 heard P1 before P1 unmuted: ${JSON.stringify(got)}`);
    // Control: unmuted, the fake microphone's beep is heard.
    await p1.page.click('#btn-mic');
    await pollUntil(async () => (got = await heard()).energy > 1000 * SILENT, 20_000, () => `P1's audio at P0 after unmuting: ${JSON.stringify(got)}`);
    console.log(`audio energy at P0 from P1 after unmuting: ${got.energy}`);
    await call.assertNoErrors();
  });
});

test('someone leaves before the app takes over: the adopted mesh lets them go', { timeout: 120_000 }, async () => {
  await withCall(fx.browser, fx.server, roomName('preludeleave'), async (call) => {
    const p0 = await call.join('P0');
    const p1 = await call.join('P1');
    const { p: p2, release } = await joinHeld(call, 'P2');
    assert.equal(await preludeOffered(call, p2), 2);
    // P1 goes while P2's app is still held: P2's socket gets participantLeft before the app
    // has adopted anything (P0 seeing P1 go says the room has told everyone).
    await call.close(p1);
    await call.waitFor(p0, 'still shows P1', (id) => !document.querySelector(`#grid .tile[data-peer="${id}"]`),
      p1.id, { timeout: 15_000, polling: 50 });
    release();
    await call.waitJoined(p2);
    await call.waitForMesh();
    await call.waitForColours();
    assert.deepEqual(await p2.page.evaluate(() => /** @type {RTCPeerConnection[]} */ (/** @type {any} */ (window).__pcs).map((pc) => pc.connectionState).sort()),
      ['closed', 'connected'], 'the connection to P1 was closed, the one to P0 kept');
    await call.assertNoErrors();
  });
});
