// A peer connection that cannot connect (the two browsers' ICE candidates never reach each
// other) is reported in words and retried with ICE restarts; once the path opens, the
// restart connects and the notice goes. The connect timeout is the app's (20 s), so this
// test takes about half a minute.

import { test } from 'node:test';
import { roomName, serverAndBrowser, withCall } from './lib/call.js';

const fx = serverAndBrowser();

test('a peer that cannot connect is reported, retried, and recovers when the path opens', { timeout: 150_000 }, async () => {
  await withCall(fx.browser, fx.server, roomName('peerfail'), async (call) => {
    const p0 = await call.join('P0');
    const p1 = await call.join('P1', { blockIce: true });
    const start = Date.now();
    // Both sides give up waiting and say so.
    await Promise.all([p0, p1].map((p) => call.waitFor(p, 'no peerFailed notice', () => window.T.notices.includes('peerFailed')
      && document.querySelector('#notice')?.getAttribute('data-kind') === 'peerFailed', null, { timeout: 60_000, polling: 100 })));
    const failedMs = Date.now() - start;
    call.lap('peerFailed shown on both');
    // The tile is there, saying so, but no video came through. (P0's tile for P1, who joined
    // after it, goes into the page once connected or after 1 s: here only the second can.)
    for (const [p, other] of [[p0, p1], [p1, p0]]) {
      const status = await p.page.evaluate((id) => document.querySelector(`#grid .tile[data-peer="${id}"] .tile-status`)?.textContent ?? null, other.id);
      if (!status) throw new Error(`${p.name} shows no tile (or no status) for ${other.name}: ${status}`);
    }
    for (const p of [p0, p1]) {
      const painted = await p.page.evaluate(() => Object.keys(window.T.firstFrameAt).length);
      if (painted !== 0) throw new Error(`${p.name} painted a frame through a blocked path`);
    }

    await p1.page.evaluate(() => { /** @type {any} */ (window).__blockIce = false; });
    const openedAt = Date.now();
    await call.waitForMesh({ timeout: 90_000 });
    const recoveredMs = Date.now() - openedAt;
    await call.waitForColours();
    await call.waitForMediaFlow();
    for (const p of [p0, p1]) {
      await call.waitFor(p, 'still shows peerFailed after recovering',
        () => document.querySelector('#notice')?.getAttribute('data-kind') !== 'peerFailed', null, { timeout: 10_000 });
    }
    await call.assertNoErrors();
    console.log(`peerFailed shown ${failedMs} ms after the join; connected ${recoveredMs} ms after the path opened`);
  });
});
