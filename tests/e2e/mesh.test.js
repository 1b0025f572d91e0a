// 2-, 3- and 4-person calls: everyone sees everyone, in the right colour, media keeps
// flowing over loopback, and no errors. Records the last joiner's time from opening the
// room URL to its first remote frame; screenshots the 4-person room at desktop and phone width.
// Firefox too: a 3-person Firefox call, and a mixed Chromium/Firefox call of 3 whose leavers
// go from every grid.

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { ARTIFACTS, callBrowsers, roomName, serverAndBrowser, withCall, writeArtifact } from './lib/call.js';

const fx = serverAndBrowser(undefined, { firefox: true });
/** @type {{ n: number, firstRemoteFrameMs: number, allRemoteFramesMs: number, joinedMs: number, steps: Record<string, number> }[]} */
const timings = [];

after(() => {
  if (timings.length) {
    const rows = timings.map((t) => `| ${t.n} | ${t.joinedMs} | ${t.firstRemoteFrameMs} | ${t.allRemoteFramesMs} | ${Object.entries(t.steps).map(([k, v]) => `${k} ${v}`).join(', ')} |`);
    console.log(['', 'last joiner, ms from page.goto(room URL):', '| N | joined | first remote frame | all remote frames | steps |', '|---|---|---|---|---|', ...rows].join('\n'));
    writeArtifact('timings.json', timings);
  }
});

/** @type {[number, 'chromium' | 'firefox'][]} */
const cases = [[2, 'chromium'], [3, 'chromium'], [4, 'chromium'], [3, 'firefox']];
for (const [n, kind] of cases.filter(([, k]) => callBrowsers().includes(k))) {
  test(`${n}-person call in ${kind}: every participant sees every other in the right colour`, { timeout: 120_000 }, async () => {
    const browser = kind === 'firefox' ? fx.firefox : fx.browser;
    await withCall(browser, fx.server, roomName(`mesh${n}${kind[0]}`), async (call) => {
      for (let i = 0; i < n; i++) await call.join(`P${i}`);
      const last = call.all[n - 1];
      await call.waitForMesh();

      // Timing: goto -> joined, goto -> first and all remote frames, for the last joiner.
      const t = await last.page.evaluate(() => {
        // Where the time went: navigation timing and the app's own marks, as epoch ms.
        const nav = /** @type {PerformanceNavigationTiming} */ (performance.getEntriesByType('navigation')[0]);
        /** @type {Record<string, number>} */
        const at = {};
        if (nav) {
          at.response = performance.timeOrigin + nav.responseEnd;
          at.domContentLoaded = performance.timeOrigin + nav.domContentLoadedEventEnd;
        }
        for (const m of performance.getEntriesByType('mark')) at[m.name.replace(/^meshcall:/, '')] = performance.timeOrigin + m.startTime;
        return { joinedAt: window.T.joinedAt, frames: window.T.firstFrameAt, at };
      });
      const frames = Object.values(t.frames);
      assert.equal(frames.length, n - 1, `last joiner firstFrameAt ${JSON.stringify(t.frames)}`);
      if (kind === 'chromium') timings.push({
        n,
        joinedMs: t.joinedAt - last.t0,
        firstRemoteFrameMs: Math.min(...frames) - last.t0,
        allRemoteFramesMs: Math.max(...frames) - last.t0,
        steps: Object.fromEntries(Object.entries(t.at).map(([k, v]) => [k, Math.round(v - last.t0)])),
      });

      await call.waitForColours();
      await call.waitForMediaFlow();
      await call.assertNoErrors();

      if (n === 4 && kind === 'chromium') {
        await last.page.screenshot({ path: path.join(ARTIFACTS, 'room-4-1280x720.png') });
        await last.page.setViewportSize({ width: 390, height: 844 });
        // The grid re-lays itself out; wait until every remote video is still painted.
        await call.waitForMesh();
        await last.page.screenshot({ path: path.join(ARTIFACTS, 'room-4-390x844.png') });
      }
    });
  });
}

if (callBrowsers().length === 2) {
  test('mixed Chromium/Firefox call of 3: every tile is the right person, leavers are gone', { timeout: 120_000 }, async () => {
    await withCall(fx.browser, fx.server, roomName('mixed3'), async (call) => {
      const c0 = await call.join('C0');
      const f1 = await call.join('F1', { browser: fx.firefox });
      const c2 = await call.join('C2');
      await call.waitForMesh();
      await call.waitForColours();
      await call.waitForMediaFlow();
      // A Firefox participant leaves by the button, then a Chromium one by closing its tab;
      // a late Firefox joiner meets the one left.
      await f1.page.click('#btn-leave');
      f1.closed = true;
      await call.waitForDeparture(f1, 5_000);
      const f3 = await call.join('F3', { browser: fx.firefox });
      await call.waitForMesh();
      await call.waitForColours();
      await call.close(c2, 'page');
      await call.waitForDeparture(c2, 5_000);
      await call.waitForMediaFlow();
      assert.deepEqual(call.live.map((p) => p.kind), ['chromium', 'firefox']);
      assert.ok(c0 && f3);
      await call.assertNoErrors();
    });
  });
}
