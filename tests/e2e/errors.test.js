// When things go wrong the user is told in words, and the call goes on where it can:
// a full room, a camera the user blocked, no camera at all, nothing to send.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { ARTIFACTS, launchBrowser, roomName, serverAndBrowser, withCall } from './lib/call.js';

const fx = serverAndBrowser({ args: ['--max-room-size', '2'] });

/**
 * The notice of this kind is on screen, with words.
 * @param {import('./lib/call.js').Call} call
 * @param {import('./lib/call.js').Participant} p
 * @param {string[]} kinds  any of these
 */
async function waitNotice(call, p, kinds, timeout = 15_000) {
  await call.waitFor(p, `no notice ${kinds.join('|')}`, (kinds) => {
    const n = /** @type {HTMLElement | null} */ (document.querySelector('#notice'));
    return !!n && !n.hidden && kinds.includes(n.dataset.kind ?? '') && !!n.textContent?.trim();
  }, kinds, { timeout, polling: 50 });
  return p.page.evaluate(() => document.querySelector('#notice .notice-text')?.textContent?.trim());
}

test('room full: the third participant is told, the two inside are undisturbed', { timeout: 120_000 }, async () => {
  await withCall(fx.browser, fx.server, roomName('full'), async (call) => {
    await call.join('P0');
    await call.join('P1');
    await call.waitForMesh();
    const third = await call.join('P2', { waitJoined: false });
    // Said once: on the card in the middle, not also in the notice bar.
    await call.waitFor(third, 'no room-full card', () => {
      const card = /** @type {HTMLElement | null} */ (document.querySelector('#ended[data-kind="roomFull"]'));
      return !!card && !card.hidden && !!card.textContent?.trim();
    }, null, { timeout: 15_000, polling: 50 });
    const words = await third.page.evaluate(() => document.querySelector('#ended-title')?.textContent?.trim());
    console.log(`roomFull card: "${words}"`);
    assert.equal(await third.page.evaluate(() => /** @type {HTMLElement} */ (document.querySelector('#notice')).hidden), true,
      'the notice bar does not repeat the card');
    await third.page.screenshot({ path: path.join(ARTIFACTS, 'room-full.png') });
    assert.equal(await third.page.evaluate(() => document.querySelectorAll('video[data-peer]').length), 0);
    // The two inside never see the third.
    third.closed = true;
    await call.waitForMesh();
    for (const p of call.live) assert.equal(await call.tileCount(p), 2);
    await call.waitForColours();
    await call.assertNoErrors();
  });
});

test('an invalid room name in the link: told in words, back in the lobby', { timeout: 60_000 }, async () => {
  await withCall(fx.browser, fx.server, 'invalid', async (call) => {
    const p = await call.join('P0', { url: `${fx.server.origin}/r/${encodeURIComponent('bad room!')}`, waitJoined: false });
    const words = await waitNotice(call, p, ['invalidRoomId']);
    console.log(`invalidRoomId notice: "${words}"`);
    await p.page.waitForSelector('#lobby:not([hidden])', { timeout: 10_000 });
    assert.equal(await p.page.evaluate(() => window.T.joinedAt), null);
  });
});

test('no camera: joins with audio only, says so; others get its audio and its tile', { timeout: 120_000 }, async () => {
  await withCall(fx.browser, fx.server, roomName('nocam'), async (call) => {
    await call.join('P0');
    const nocam = await call.join('P1', { videoError: 'NotFoundError' });
    await waitNotice(call, nocam, ['noCamera']);
    const hasVideo = (/** @type {import('./lib/call.js').Participant} */ s) => s !== nocam;
    await call.waitForMesh({ video: hasVideo });
    await call.waitForColours(20_000, (s) => (hasVideo(s) ? s.rgb : null));
    await call.waitForMediaFlow({ video: hasVideo });
    const [p0] = call.all;
    assert.equal(await p0.page.evaluate((id) => document.querySelector(`#grid .tile[data-peer="${id}"]`)?.hasAttribute('data-cam-off'), nocam.id), true,
      'the camera-less participant\'s tile says its camera is off');
    await call.assertNoErrors();
  });
});

test('nothing to send (camera and microphone blocked): joins receive-only and is told', { timeout: 120_000 }, async () => {
  await withCall(fx.browser, fx.server, roomName('recvonly'), async (call) => {
    await call.join('P0');
    const mute = await call.join('P1', { videoError: 'NotAllowedError', audioError: 'NotAllowedError' });
    const words = await waitNotice(call, mute, ['cameraDenied', 'receiveOnly', 'micDenied']);
    console.log(`receive-only notice: "${words}"`);
    const sends = (/** @type {import('./lib/call.js').Participant} */ s) => s !== mute;
    await call.waitForMesh({ video: sends });
    await call.waitForColours(20_000, (s) => (sends(s) ? s.rgb : null));
    await call.waitForMediaFlow({ video: sends, audio: sends });
    const [p0] = call.all;
    const flags = await p0.page.evaluate((id) => {
      const t = document.querySelector(`#grid .tile[data-peer="${id}"]`);
      return { cam: t?.hasAttribute('data-cam-off'), mic: t?.hasAttribute('data-mic-off') };
    }, mute.id);
    assert.deepEqual(flags, { cam: true, mic: true }, 'the receive-only tile says camera and mic are off');
    await call.assertNoErrors();
  });
});

test('camera blocked by the user (real permission, no fake UI): joins with audio, says so', { timeout: 120_000 }, async () => {
  // A browser without the auto-grant flag: each context gets its permissions explicitly, and
  // the camera is simply not granted to P1. (A context with no media permission at all gathers
  // no ICE candidates on loopback, see browser-testing.md, so P1 keeps the microphone.)
  const strict = await launchBrowser({ fakeUi: false });
  try {
    await withCall(strict, fx.server, roomName('denied'), async (call) => {
      await call.join('P0', { permissions: ['camera', 'microphone'] });
      const denied = await call.join('P1', { permissions: ['microphone'] });
      const words = await waitNotice(call, denied, ['cameraDenied']);
      console.log(`cameraDenied notice: "${words}"`);
      const hasVideo = (/** @type {import('./lib/call.js').Participant} */ s) => s !== denied;
      await call.waitForMesh({ video: hasVideo });
      await call.waitForColours(20_000, (s) => (hasVideo(s) ? s.rgb : null));
      await call.waitForMediaFlow({ video: hasVideo });
      await denied.page.screenshot({ path: path.join(ARTIFACTS, 'camera-denied.png') });
      const [p0] = call.all;
      assert.equal(await p0.page.evaluate((id) => document.querySelector(`#grid .tile[data-peer="${id}"]`)?.hasAttribute('data-cam-off'), denied.id), true);
      await call.assertNoErrors();
    });
  } finally {
    await strict.close();
  }
});
