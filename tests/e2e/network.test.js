// Calls on real-world links (issue 21): browsers in network namespaces of their own, joined
// by veth links to the server's (lib/netns.js), one person's link shaped or cut.
//
// - A thin, lossy uplink: in a 4-person call, one person's uplink is 1 Mbit/s with 2 %
//   loss and a busy camera (a noisy y4m that wants about 2 Mbit/s). From getStats, watched
//   in every page: the others keep decoding that person's frames (no gap over 2 s) and
//   hearing them, and that person still sees and hears everyone.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BASE_ARGS, CHROMIUM, FAKE_UI, roomName, withCall, writeArtifact } from './lib/call.js';
import { Host, SERVER_ADDR, secureOriginArg, writeBusyY4m } from './lib/netns.js';
import { startServer } from './lib/server.js';
import { pcRecorder, rawVideoStats, readWatch, startWatch } from './lib/watch.js';

/** Longest time without a decoded frame (or an audio packet) that still counts as flowing. */
const MAX_GAP_MS = 2_000;
/** How long the shaped call is watched. */
const WINDOW_MS = Number(process.env.E2E_NETWORK_WINDOW_MS || 20_000);

/**
 * A test's network: the server on the bridge, a namespace with one Chromium for the
 * unconstrained participants, and one for the person whose link is shaped or cut.
 * @param {import('node:test').TestContext} t
 * @param {{ busyCamera?: boolean }} o
 */
async function network(t, { busyCamera = false } = {}) {
  const fast = new Host('fast');
  const slow = new Host('slow');
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'meshcall-net-'));
  /** @type {{ close: () => Promise<void> }[]} */
  const open = [];
  // One hook, in order: browsers and server first, then their namespaces.
  t.after(async () => {
    for (const o of open.reverse()) await o.close().catch(() => {});
    fast.remove();
    slow.remove();
    rmSync(tmp, { recursive: true, force: true });
  });
  const server = await startServer({ host: SERVER_ADDR });
  open.push({ close: () => server.stop() });
  const fastBrowser = await fast.launchChromium(CHROMIUM, [...BASE_ARGS, FAKE_UI, secureOriginArg(server.port)]);
  open.push(fastBrowser);
  const extra = [...BASE_ARGS, FAKE_UI, secureOriginArg(server.port)];
  if (busyCamera) {
    const y4m = path.join(tmp, 'busy.y4m');
    writeBusyY4m(y4m);
    extra.push(`--use-file-for-fake-video-capture=${y4m}`);
  }
  const slowBrowser = await slow.launchChromium(CHROMIUM, extra);
  open.push(slowBrowser);
  return { fast, slow, server, fastBrowser, slowBrowser };
}

test('4-person call, one uplink 1 Mbit/s with 2 % loss: that person keeps being seen and heard, and sees everyone', { timeout: 150_000 }, async (t) => {
  const net = await network(t, { busyCamera: true });
  await withCall(net.fastBrowser, net.server, roomName('thin'), async (call) => {
    const setup = (/** @type {import('playwright-core').BrowserContext} */ ctx) => ctx.addInitScript(pcRecorder);
    for (let i = 0; i < 3; i++) await call.join(`P${i}`, { setup });
    const slow = await call.join('Slow', { browser: net.slowBrowser, realCamera: true, setup });
    await call.waitForMesh();
    net.slow.shape({ rateKbit: 1000, lossPct: 2 });
    call.lap('shaped');
    for (const p of call.live) await p.page.evaluate(startWatch, call.others(p).map((q) => q.id));
    // Watched for the window, then read (a poll for the window's end, not a sleep: the
    // call must still hold at the end).
    const end = Date.now() + WINDOW_MS;
    /** @type {Record<string, Record<string, { videoGapMs: number, audioGapMs: number, widths: number[], fps: number }>>} */
    const seen = {};
    while (Date.now() < end) {
      await new Promise((r) => setTimeout(r, 1_000));
      for (const p of call.live) seen[p.name] = await p.page.evaluate(readWatch);
      // Stop early once a gap is already too long: the verdict cannot change.
      if (call.others(slow).some((p) => seen[p.name][slow.id].videoGapMs > MAX_GAP_MS)) break;
    }
    for (const p of call.live) seen[p.name] = await p.page.evaluate(readWatch);
    /** @type {Record<string, unknown>} */
    const raw = {};
    for (const p of call.live) raw[p.name] = await p.page.evaluate(rawVideoStats);
    writeArtifact('network-thin-uplink.json', { ids: Object.fromEntries(call.live.map((p) => [p.name, p.id])), seen, raw });
    const problems = [];
    for (const p of call.others(slow)) {
      const w = seen[p.name][slow.id];
      if (w.videoGapMs > MAX_GAP_MS) problems.push(`${p.name} had no frame from Slow for ${w.videoGapMs} ms`);
      if (w.audioGapMs > MAX_GAP_MS) problems.push(`${p.name} had no audio from Slow for ${w.audioGapMs} ms`);
    }
    for (const q of call.others(slow)) {
      const w = seen.Slow[q.id];
      if (w.videoGapMs > MAX_GAP_MS) problems.push(`Slow had no frame from ${q.name} for ${w.videoGapMs} ms`);
      if (w.audioGapMs > MAX_GAP_MS) problems.push(`Slow had no audio from ${q.name} for ${w.audioGapMs} ms`);
    }
    console.log(`thin uplink, Slow as the others see it: ${call.others(slow).map((p) => `${p.name} ${JSON.stringify(seen[p.name][slow.id])}`).join('; ')}`);
    assert.deepEqual(problems, [], JSON.stringify(seen));
  });
});
