// The lobby at `/`: a suggested room name, the camera preview (our colour) with the level
// meter and device pickers, a bad room name refused, a remembered display name, Join going
// to /r/<room>, and the invite link copied from the room. Screenshots at desktop and phone
// width.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { ARTIFACTS, colourMatches, pollUntil, serverAndBrowser, withCall } from './lib/call.js';

const fx = serverAndBrowser();

test('lobby: preview, meter, pickers, remembered name, join, invite link', { timeout: 120_000 }, async () => {
  const { browser, server } = fx;
  // No room to join yet: the page opens the lobby at `/`; 'lobby' names the failure screenshots.
  await withCall(browser, server, 'lobby', async (call) => {
    const p = await call.join('L0', { url: `${server.origin}/`, waitJoined: false });
    const { page } = p;
    await page.waitForSelector('#lobby:not([hidden])', { timeout: 10_000 });

    // A suggested room name that the server accepts, different on every visit.
    const suggested = await page.inputValue('#lobby-room');
    assert.match(suggested, /^[A-Za-z0-9_-]{1,64}$/);

    // The preview plays our camera (its colour), the pickers list the fake devices, and the
    // meter moves with the fake microphone's beep.
    await page.waitForFunction(() => {
      const v = /** @type {HTMLVideoElement} */ (document.querySelector('#lobby-preview'));
      return v.readyState >= 2 && v.videoWidth > 0;
    }, null, { timeout: 15_000 });
    const colour = await page.evaluate(() => {
      const v = /** @type {HTMLVideoElement} */ (document.querySelector('#lobby-preview'));
      const c = document.createElement('canvas');
      c.width = v.videoWidth; c.height = v.videoHeight;
      const g = /** @type {CanvasRenderingContext2D} */ (c.getContext('2d'));
      g.drawImage(v, 0, 0);
      return [...g.getImageData(4, 4, 1, 1).data.slice(0, 3)];
    });
    assert.ok(colourMatches(colour, p.rgb), `preview shows our camera: ${colour} vs ${p.rgb}`);
    await page.waitForFunction(() => /** @type {HTMLSelectElement} */ (document.querySelector('#lobby-camera')).options.length > 0
      && /** @type {HTMLSelectElement} */ (document.querySelector('#lobby-mic')).options.length > 0, null, { timeout: 10_000 });
    await pollUntil(() => page.evaluate(() => /** @type {HTMLMeterElement} */ (document.querySelector('#lobby-level')).value > 0.01),
      10_000, 'the microphone level meter never moved', 50);

    await page.screenshot({ path: path.join(ARTIFACTS, 'lobby-1280x720.png') });
    await page.setViewportSize({ width: 390, height: 844 });
    await page.screenshot({ path: path.join(ARTIFACTS, 'lobby-390x844.png'), fullPage: true });
    await page.setViewportSize({ width: 1280, height: 720 });

    // A room name the service would refuse: told in words, and still in the lobby.
    await page.fill('#lobby-room', 'bad room!');
    await page.click('#lobby-join');
    await call.waitFor(p, 'no invalidRoomId notice for a bad room name',
      () => document.querySelector('#notice')?.getAttribute('data-kind') === 'invalidRoomId', null, { timeout: 5_000 });
    assert.equal(new URL(page.url()).pathname, '/');

    // Join with a name: the room URL, and a call joined under that name.
    const room = `lobby-${Date.now().toString(36)}`;
    await page.fill('#lobby-room', room);
    await page.fill('#lobby-name', 'Ada Lovelace');
    await Promise.all([page.waitForURL((u) => u.pathname === `/r/${room}`, { timeout: 10_000 }), page.click('#lobby-join')]);
    await call.waitJoined(p);
    assert.match((await page.textContent('#grid .tile[data-self] .tile-name')) ?? '', /Ada Lovelace/);

    // The invite link: copied to the clipboard, it is the room's address.
    await p.ctx.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.origin });
    await page.click('#btn-copy-link');
    let copied = '';
    await pollUntil(async () => {
      copied = await page.evaluate(() => navigator.clipboard.readText());
      return copied.includes(`/r/${room}`);
    }, 5_000, () => `clipboard has "${copied}"`);
    assert.equal(new URL(copied).pathname, `/r/${room}`);
    assert.ok(!new URL(copied).searchParams.has('name'), `the invite link does not carry our name: ${copied}`);

    // A second participant following the link joins the same call.
    await withCall(browser, server, room, async (friend) => {
      const f = await friend.join('F1', { url: copied });
      await page.waitForFunction((id) => !!document.querySelector(`#grid .tile[data-peer="${id}"]`), f.id, { timeout: 15_000 });
    });

    // Leave, back to the lobby: the name is remembered, the room suggestion is fresh.
    await page.click('#btn-leave');
    await page.goto(`${server.origin}/`);
    await page.waitForSelector('#lobby:not([hidden])', { timeout: 10_000 });
    assert.equal(await page.inputValue('#lobby-name'), 'Ada Lovelace');
    assert.notEqual(await page.inputValue('#lobby-room'), suggested);
    assert.deepEqual(p.pageErrors, []);
    // The boot script ran on both pages under the server's policy (it is allowed by its
    // hash): nothing was refused.
    assert.deepEqual(p.console.filter((m) => /Content.Security.Policy/i.test(m)), []);
  });
});
