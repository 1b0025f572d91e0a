// In-call controls as the others see them: mute, camera off (buttons and keyboard
// shortcuts), chat with the unread badge, screen share and back to the camera; in Chromium
// and in Firefox (where the headless browser has no screen of its own to share, only the
// canvas stand-in is shared, and its one fake camera leaves only the microphone to switch).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SCREEN_HUE, SECOND_CAMERA_HUE, callBrowsers, hueRgb, roomName, serverAndBrowser, withCall } from './lib/call.js';

const fx = serverAndBrowser(undefined, { firefox: true });

const SHOWN_MS = 10_000;

/**
 * On every other page, the tile of `subject` has (or lacks) `attr`.
 * @param {import('./lib/call.js').Call} call
 * @param {import('./lib/call.js').Participant} subject
 * @param {string} attr
 * @param {boolean} present
 */
async function waitTileFlag(call, subject, attr, present) {
  await Promise.all(call.others(subject).map((p) => call.waitFor(p, `tile of ${subject.name} ${present ? 'lacks' : 'still has'} ${attr}`, ({ id, attr, present }) => {
    const tile = document.querySelector(`#grid .tile[data-peer="${id}"]`);
    return !!tile && tile.hasAttribute(attr) === present;
  }, { id: subject.id, attr, present }, { timeout: SHOWN_MS, polling: 50 })));
}

for (const kind of callBrowsers()) {
  test(`mute, camera off, chat and screen share show on the other side (${kind})`, { timeout: 120_000 }, async () => {
    await withCall(kind === 'firefox' ? fx.firefox : fx.browser, fx.server, roomName('controls'), async (call) => {
      const p0 = await call.join('P0', { realScreen: kind === 'chromium' });
      const p1 = await call.join('P1');
      // A name that is also HTML: it must show as text everywhere, never run.
      const p2 = await call.join('P2 <img src=x onerror=window.__xss=1>');
      await call.waitForMesh();
      await call.waitForColours();

      // Names travel: every remote tile is labelled with its sender's name.
      for (const viewer of call.live) {
        for (const s of call.others(viewer)) {
          const label = await viewer.page.textContent(`#grid .tile[data-peer="${s.id}"] .tile-name`);
          assert.ok(label?.includes(s.name), `${viewer.name} labels ${s.name}'s tile "${label}"`);
        }
      }

      // Microphone: button, then the M shortcut.
      await p0.page.click('#btn-mic');
      await waitTileFlag(call, p0, 'data-mic-off', true);
      assert.equal(await p0.page.getAttribute('#btn-mic', 'aria-pressed'), 'false');
      await p0.page.click('#btn-mic');
      await waitTileFlag(call, p0, 'data-mic-off', false);
      await p1.page.keyboard.press('m');
      await waitTileFlag(call, p1, 'data-mic-off', true);
      await p1.page.keyboard.press('m');
      await waitTileFlag(call, p1, 'data-mic-off', false);
      call.lap('mic ok');

      // Camera: button, then the V shortcut; the colour comes back each time.
      assert.equal(await call.liveCameras(p0), 1);
      await p0.page.click('#btn-cam');
      await waitTileFlag(call, p0, 'data-cam-off', true);
      assert.equal(await call.liveCameras(p0), 0, 'camera off releases the camera');
      await p0.page.click('#btn-cam');
      await waitTileFlag(call, p0, 'data-cam-off', false);
      await p2.page.keyboard.press('v');
      await waitTileFlag(call, p2, 'data-cam-off', true);
      await p2.page.keyboard.press('v');
      await waitTileFlag(call, p2, 'data-cam-off', false);
      await call.waitForColours();
      call.lap('camera ok');

      // Chat: P1 writes with its panel open; P0 and P2 have theirs closed and see the badge.
      const text = `hello from P1 ${Date.now()}`;
      await p1.page.click('#btn-chat');
      await p1.page.fill('#chat-input', text);
      await p1.page.click('#chat-send');
      for (const p of call.live) {
        await call.waitFor(p, 'did not get the chat message', (text) => [...document.querySelectorAll('#chat-log .chat-msg')].some((m) => m.textContent?.includes(text)),
          text, { timeout: SHOWN_MS, polling: 50 });
      }
      assert.equal(await p1.page.inputValue('#chat-input'), '', 'the input is cleared after sending');
      for (const p of [p0, p2]) {
        assert.equal(await p.page.isVisible('#chat-badge'), true, `${p.name} shows the unread badge`);
        assert.equal((await p.page.textContent('#chat-badge'))?.trim(), '1', `${p.name} badge count`);
      }
      assert.equal(await p1.page.isVisible('#chat-badge'), false, 'no badge for the sender with the panel open');
      // Opening the panel reads the message: the badge goes.
      await p0.page.click('#btn-chat');
      await p0.page.waitForFunction(() => /** @type {HTMLElement} */ (document.querySelector('#chat-badge')).hidden, null, { timeout: SHOWN_MS });
      // A second message, from P0 by Enter, reaches P1 (panel open: no badge) and P2 (badge 2).
      // It is HTML too, and must arrive as text.
      const text2 = `reply <img src=x onerror=window.__xss=2> <b>bold</b> from P0 ${Date.now()}`;
      await p0.page.fill('#chat-input', text2);
      await p0.page.press('#chat-input', 'Enter');
      for (const p of [p1, p2]) {
        await p.page.waitForFunction((text) => [...document.querySelectorAll('#chat-log .chat-msg')].some((m) => m.textContent?.includes(text)),
          text2, { timeout: SHOWN_MS, polling: 50 });
      }
      assert.equal((await p2.page.textContent('#chat-badge'))?.trim(), '2');
      for (const p of call.live) {
        const html = await p.page.evaluate(() => ({
          xss: /** @type {any} */ (window).__xss ?? null,
          tags: document.querySelectorAll('#chat-log img, #chat-log b, #grid img').length,
        }));
        assert.deepEqual(html, { xss: null, tags: 0 }, `${p.name}: chat text or a name was parsed as HTML`);
      }
      assert.equal(await p1.page.isVisible('#chat-badge'), false);
      await p0.page.click('#btn-chat');
      await p1.page.click('#btn-chat');
      call.lap('chat ok');

      // Screen share (canvas stand-in for getDisplayMedia, magenta): others see it, then the camera again.
      const screen = hueRgb(SCREEN_HUE);
      await p2.page.click('#btn-screen');
      await waitTileFlag(call, p2, 'data-screen', true);
      await call.waitForColours(20_000, (s) => (s === p2 ? screen : s.rgb));
      await p2.page.click('#btn-screen');
      await waitTileFlag(call, p2, 'data-screen', false);
      await call.waitForColours();
      call.lap('screen share (canvas) ok');

      // Screen share through Chromium's own getDisplayMedia (its fake 1280x720 screen): the
      // others get a 16:9 picture instead of the 4:3 camera, and the camera again after.
      if (kind === 'chromium') {
        await p0.page.click('#btn-screen');
        await waitTileFlag(call, p0, 'data-screen', true);
        for (const p of call.others(p0)) {
          await call.waitFor(p, 'no 16:9 screen picture from P0', (id) => {
            const v = /** @type {HTMLVideoElement | null} */ (document.querySelector(`video[data-peer="${id}"]`));
            return !!v && v.videoHeight > 0 && Math.abs(v.videoWidth / v.videoHeight - 16 / 9) < 0.05;
          }, p0.id, { timeout: 20_000, polling: 100 });
        }
        await p0.page.click('#btn-screen');
        await waitTileFlag(call, p0, 'data-screen', false);
        await call.waitForColours();
        call.lap('screen share (chromium) ok');
      }

      await call.waitForMediaFlow();
      await call.assertNoErrors();
    });
  });
}

test('a late joiner sees the state set before it came: muted, camera off, sharing', { timeout: 120_000 }, async () => {
  await withCall(fx.browser, fx.server, roomName('late'), async (call) => {
    const p0 = await call.join('P0');
    const p1 = await call.join('P1');
    await call.waitForMesh();
    await p0.page.click('#btn-mic');
    await p0.page.click('#btn-cam');
    await p1.page.click('#btn-screen');
    await waitTileFlag(call, p0, 'data-cam-off', true);
    await waitTileFlag(call, p1, 'data-screen', true);

    const p2 = await call.join('P2');
    const sendsVideo = (/** @type {import('./lib/call.js').Participant} */ s) => s !== p0;
    await call.waitForMesh({ video: sendsVideo });
    await call.waitFor(p2, 'the late joiner does not see the others\' state', ({ a, b }) => {
      const t0 = document.querySelector(`#grid .tile[data-peer="${a}"]`);
      const t1 = document.querySelector(`#grid .tile[data-peer="${b}"]`);
      return !!t0 && !!t1 && t0.hasAttribute('data-mic-off') && t0.hasAttribute('data-cam-off') && t1.hasAttribute('data-screen');
    }, { a: p0.id, b: p1.id }, { timeout: SHOWN_MS, polling: 50 });
    const screen = hueRgb(SCREEN_HUE);
    await call.waitForColours(20_000, (s) => (s === p0 ? null : s === p1 ? screen : s.rgb));
    await call.assertNoErrors();
  });
});

test('switching camera and microphone mid-call: the others see the other camera, audio goes on', { timeout: 120_000 }, async () => {
  await withCall(fx.browser, fx.server, roomName('devices'), async (call) => {
    const p0 = await call.join('P0');
    await call.join('P1');
    await call.waitForMesh();
    await call.waitForColours();
    await p0.page.click('#btn-devices');
    await p0.page.waitForSelector('#room-camera', { state: 'visible', timeout: SHOWN_MS });
    const cams = await p0.page.$$eval('#room-camera option', (os) => os.map((o) => /** @type {HTMLOptionElement} */ (o).value));
    const mics = await p0.page.$$eval('#room-mic option', (os) => os.map((o) => /** @type {HTMLOptionElement} */ (o).value));
    assert.equal(cams.length, 2, `two fake cameras listed: ${cams}`);
    assert.ok(mics.length >= 2, `fake microphones listed: ${mics}`);
    const first = await p0.page.inputValue('#room-camera');
    const other = cams.find((c) => c !== first);
    assert.ok(other);

    await p0.page.selectOption('#room-camera', other);
    const cyan = hueRgb(SECOND_CAMERA_HUE);
    await call.waitForColours(20_000, (s) => (s === p0 ? cyan : s.rgb));
    assert.equal(await call.liveCameras(p0), 1, 'the first camera was released');
    await p0.page.selectOption('#room-camera', first);
    await call.waitForColours();

    const micNow = await p0.page.inputValue('#room-mic');
    await p0.page.selectOption('#room-mic', /** @type {string} */ (mics.find((m) => m !== micNow)));
    await call.waitForMediaFlow();
    await call.assertNoErrors();
  });
});
