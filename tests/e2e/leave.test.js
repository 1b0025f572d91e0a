// Departures: the leave button, a closed tab and a closed browser window (context) each
// shrink everyone else's grid promptly. All three send a WebSocket close frame, so they are
// clean departures for the server (no resume grace).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { callBrowsers, roomName, serverAndBrowser, withCall } from './lib/call.js';

const fx = serverAndBrowser(undefined, { firefox: true });

/** Gone within this long (the server tells the room at once; the app removes the tile). */
const GONE_MS = 5_000;

for (const kind of callBrowsers()) {
  test(`leave button, closed tab and closed window each shrink the others' grids (${kind})`, { timeout: 120_000 }, async () => {
    await withCall(kind === 'firefox' ? fx.firefox : fx.browser, fx.server, roomName('leave'), async (call) => {
      for (let i = 0; i < 4; i++) await call.join(`P${i}`);
      await call.waitForMesh();
      const [p0, p1, p2, p3] = call.all;
      for (const p of call.all) assert.equal(await call.tileCount(p), 4);

      // 1. The leave button.
      await p3.page.click('#btn-leave');
      p3.closed = true; // no longer in the call (its page stays open, showing "you left")
      const byButton = await call.waitForDeparture(p3, GONE_MS);
      // The leaver's own page shows it left and holds no peers any more.
      await p3.page.waitForFunction(() => {
        const ended = document.querySelector('#ended');
        return !!ended && !(/** @type {HTMLElement} */ (ended).hidden) && document.querySelectorAll('video[data-peer]').length === 0;
      }, null, { timeout: GONE_MS });

      // 2. An abrupt tab close.
      await call.close(p2, 'page');
      const byTab = await call.waitForDeparture(p2, GONE_MS);

      // 3. The whole browser window (context) closed.
      await call.close(p1, 'context');
      const byWindow = await call.waitForDeparture(p1, GONE_MS);

      assert.equal(await call.tileCount(p0), 1);

      // The one who pressed Leave can rejoin from its "you left" card: a fresh id, and the
      // call with P0 comes back.
      const oldId = p3.id;
      const leftAt = Date.now();
      await p3.page.click('#ended-rejoin');
      p3.closed = false;
      await call.waitJoined(p3, { since: leftAt });
      assert.notEqual(p3.id, oldId);
      await call.waitForMesh();
      await call.waitForColours();
      await call.assertNoErrors();
      console.log(`grid shrank after: leave button ${byButton} ms, tab closed ${byTab} ms, window closed ${byWindow} ms`);
    });
  });
}

test('a reload is a leave and a join: the others keep one tile for it, with the new id', { timeout: 120_000 }, async () => {
  await withCall(fx.browser, fx.server, roomName('reload'), async (call) => {
    for (let i = 0; i < 3; i++) await call.join(`P${i}`);
    await call.waitForMesh();
    const p2 = call.all[2];
    const oldId = p2.id;
    const since = Date.now();
    await p2.page.reload();
    await call.waitJoined(p2, { since });
    assert.notEqual(p2.id, oldId);
    await call.waitForMesh(); // exactly 3 tiles everywhere: the old id is gone
    await call.waitForColours();
    await call.assertNoErrors();
  });
});
