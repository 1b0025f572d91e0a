// The server dies mid-call (SIGKILL: no close frames, all state lost) and a new one starts
// on the same port. Every page says the server is unreachable, reconnects by itself, joins
// afresh (its resume token means nothing to the new server) and the mesh is rebuilt with the
// new ids: right colours everywhere, no stale tiles.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './lib/server.js';
import { launchBrowser, roomName, withCall } from './lib/call.js';

/** @type {import('playwright-core').Browser} */
let browser;
/** @type {import('./lib/server.js').Server[]} */
const servers = [];

before(async () => {
  servers.push(await startServer());
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  for (const s of servers) await s.stop();
});

test('server killed and restarted on the same port: the call recovers', { timeout: 120_000 }, async () => {
  const first = servers[0];
  await withCall(browser, first, roomName('restart'), async (call) => {
    for (let i = 0; i < 3; i++) await call.join(`P${i}`);
    await call.waitForMesh();
    await call.waitForColours();
    const before = await Promise.all(call.live.map((p) => p.page.evaluate(() => window.T.joinedAt)));
    const oldIds = call.live.map((p) => p.id);

    await first.kill('SIGKILL');
    const killedAt = Date.now();
    call.lap('server killed');

    // Every page tells its user, in words.
    await Promise.all(call.live.map((p) => call.waitFor(p, 'no serverUnreachable notice', () => {
      const n = document.querySelector('#notice[data-kind="serverUnreachable"]');
      return !!n && !(/** @type {HTMLElement} */ (n).hidden) && !!n.textContent?.trim();
    }, null, { timeout: 20_000, polling: 100 })));
    const noticeMs = Date.now() - killedAt;
    call.lap('serverUnreachable shown everywhere');

    const second = await startServer({ port: first.port });
    servers.push(second);
    call.server = second;
    const restartedAt = Date.now();

    // Each page joins again, with a new id.
    await Promise.all(call.live.map((p, i) => call.waitJoined(p, { since: before[i] })));
    for (const [i, p] of call.live.entries()) assert.notEqual(p.id, oldIds[i], `${p.name} got a fresh id`);
    call.lap('rejoined');

    await call.waitForMesh();
    const meshMs = Date.now() - restartedAt;
    await call.waitForColours();
    await call.waitForMediaFlow();
    // No tile of an old id is left behind, and the notice is gone.
    for (const p of call.live) {
      const stale = await p.page.evaluate((ids) => ids.filter((id) => document.querySelector(`#grid .tile[data-peer="${id}"]`)), oldIds);
      assert.deepEqual(stale, [], `${p.name} still shows old ids`);
      const notice = await p.page.evaluate(() => document.querySelector('#notice')?.getAttribute('data-kind') ?? null);
      assert.notEqual(notice, 'serverUnreachable', `${p.name} still says the server is unreachable`);
    }
    await call.assertNoErrors();
    console.log(`serverUnreachable shown ${noticeMs} ms after the kill; full mesh again ${meshMs} ms after the restart`);
  });
});
