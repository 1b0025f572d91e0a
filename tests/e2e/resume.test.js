// A blip is not a departure: every signalling socket is cut without a close frame (a relay
// in front of the server drops its TCP connections). Each page resumes with its token: same
// id, same room, nobody's tile goes away, and the call carries on.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Relay } from './lib/proxy.js';
import { callBrowsers, pollUntil, roomName, serverAndBrowser, withCall } from './lib/call.js';

const fx = serverAndBrowser(undefined, { firefox: true });

for (const kind of callBrowsers()) {
  test(`signalling sockets cut without a close frame (${kind}): everyone resumes, nobody leaves`, { timeout: 120_000 }, async (t) => {
    const relay = await new Relay(fx.server.port).start();
    t.after(() => relay.stop());
    const room = roomName('resume');
    const before0 = await fx.server.metrics();
    /** @param {Record<string, number>} m @param {string} k */
    const delta = (m, k) => (m[k] ?? 0) - (before0[k] ?? 0);
    await withCall(kind === 'firefox' ? fx.firefox : fx.browser, fx.server, room, async (call) => {
      for (let i = 0; i < 3; i++) await call.join(`P${i}`, { url: `${relay.origin}/r/${room}?name=P${i}` });
      await call.waitForMesh();
      await call.waitForColours();

      // From now on, record every remote tile that leaves a grid.
      const before = [];
      for (const p of call.live) {
        before.push(await p.page.evaluate(() => {
          const w = /** @type {any} */ (window);
          w.__removedTiles = [];
          new MutationObserver((records) => {
            for (const r of records) {
              for (const n of r.removedNodes) {
                if (n instanceof HTMLElement && n.matches('.tile[data-peer]')) w.__removedTiles.push(n.dataset.peer);
              }
            }
          }).observe(/** @type {Node} */ (document.querySelector('#grid')), { childList: true, subtree: true });
          return window.T.joinedAt;
        }));
      }

      const cut = relay.cut();
      call.lap(`cut ${cut} connections`);
      assert.ok(cut >= 3, `expected at least the 3 signalling sockets, cut ${cut}`);

      // Each page gets `joined` again (resumed), with the same id.
      await Promise.all(call.live.map((p, i) => call.waitFor(p, 'did not resume', (t) => window.T.joinedAt > t, before[i], { timeout: 30_000, polling: 100 })));
      call.lap('resumed');
      for (const p of call.live) {
        assert.equal(await p.page.evaluate(() => window.T.selfId), p.id, `${p.name} kept its id`);
      }

      await call.waitForMesh();
      await call.waitForColours();
      await call.waitForMediaFlow();
      for (const p of call.live) {
        const st = await p.page.evaluate(() => ({ removed: /** @type {any} */ (window).__removedTiles, notices: window.T.notices }));
        assert.deepEqual(st.removed, [], `${p.name}: tiles left the grid during the blip`);
        assert.ok(!st.notices.includes('resumeFailed'), `${p.name}: resume failed (${st.notices})`);
      }
      // The server saw no departure: nobody was told `participantLeft`, no token was refused,
      // and all three are still members of the room.
      const m = await fx.server.metrics();
      assert.equal(delta(m, 'meshcall_messages_delivered_total{kind="participantLeft"}'), 0, 'participantLeft delivered');
      assert.equal(delta(m, 'meshcall_errors_total{code="resumeFailed"}'), 0, 'resumeFailed answered');
      assert.equal(m.meshcall_room_members, 3);
      assert.equal(delta(m, 'meshcall_messages_delivered_total{kind="joined"}'), 6, '3 joins and 3 resumes');
      await call.assertNoErrors();
    });
    // The room empties before the next browser's test (its participants' closes are clean).
    await pollUntil(async () => (await fx.server.metrics()).meshcall_room_members === 0, 10_000, 'room members back to 0');
  });
}
