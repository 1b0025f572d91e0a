// Media through a real TURN relay (coturn, lib/coturn.js) with meshcall's per-join TURN
// credentials (`--turn`, `--turn-secret`, `--force-relay`):
//
// - right secret: a 3-person call forms, every tile the right colour, frames and audio keep
//   coming; every peer connection has policy `relay`, gathered only relay candidates, and
//   its selected pair's local end is a coturn relay address; collectStats says `relayed`
//   and every remote tile shows the "Relayed (TURN)" badge. coturn's log shows an
//   allocation for every connection id, and, once the call ends, relayed traffic;
// - wrong secret (the negative control): coturn refuses every allocation (its log says
//   so), no peer connects and no frame arrives within 15 s, and both pages say `peerFailed`
//   (the app's 20 s connect timeout);
// - Firefox too: a 2-person Firefox call through the same coturn, relayed media flowing,
//   the badge on both tiles.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './lib/server.js';
import { startCoturn } from './lib/coturn.js';
import { callBrowsers, launchBrowser, pollUntil, roomName, withCall, writeArtifact } from './lib/call.js';
import { launchFirefox } from './lib/firefox.js';

/** @type {import('playwright-core').Browser} */
let browser;
/** @type {import('./lib/coturn.js').Coturn} */
let turn;
/** @type {import('./lib/server.js').Server[]} */
const servers = [];

before(async () => {
  turn = await startCoturn();
  console.log(`coturn: ${turn.commandLine}`);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  for (const s of servers) await s.stop();
  if (turn) {
    writeArtifact('coturn.log', `${turn.commandLine}\n\n${turn.log.join('\n')}\n`);
    await turn.stop();
  }
});

/** meshcall with TURN only, using `secret` (the right one or not). @param {string} secret */
async function meshcall(secret) {
  const server = await startServer({ args: ['--stun', 'none', '--turn', turn.url, '--turn-secret', secret, '--force-relay'] });
  servers.push(server);
  const cfg = await (await fetch(`${server.origin}/config.json`)).json();
  assert.equal(cfg.iceTransportPolicy, 'relay', `/config.json with --force-relay: ${JSON.stringify(cfg)}`);
  return server;
}

/**
 * Runs in every page before the app: remember each RTCPeerConnection it makes, so the test
 * can read its configuration and every candidate (collectStats boils them down).
 */
function pcRecorder() {
  const Orig = window.RTCPeerConnection;
  /** @type {RTCPeerConnection[]} */
  const pcs = [];
  Object.defineProperty(window, '__pcs', { value: pcs });
  window.RTCPeerConnection = class extends Orig {
    /** @param {RTCConfiguration} [cfg] */
    constructor(cfg) {
      super(cfg);
      pcs.push(this);
    }
  };
}

/** The browser, with pcRecorder in every new context (Call.join only calls newContext). */
function recordingBrowser() {
  return /** @type {import('playwright-core').Browser} */ (/** @type {unknown} */ ({
    /** @param {import('playwright-core').BrowserContextOptions} [o] */
    async newContext(o) {
      const ctx = await browser.newContext(o);
      await ctx.addInitScript(pcRecorder);
      return ctx;
    },
  }));
}

/**
 * Runs in the page: every open peer connection's policy, ICE servers (user names only),
 * state, local candidate types, and its selected pair's ends and bytes.
 */
async function iceReport() {
  const out = [];
  for (const pc of /** @type {RTCPeerConnection[]} */ (/** @type {any} */ (window).__pcs)) {
    if (pc.connectionState === 'closed') continue;
    const cfg = pc.getConfiguration();
    const report = await pc.getStats();
    /** @type {any} */
    let sel = null;
    /** @type {string[]} */
    const localTypes = [];
    report.forEach((/** @type {any} */ r) => {
      if (r.type === 'transport' && r.selectedCandidatePairId) sel = report.get(r.selectedCandidatePairId) ?? sel;
      if (r.type === 'local-candidate') localTypes.push(r.candidateType);
    });
    const l = sel && report.get(sel.localCandidateId);
    const rm = sel && report.get(sel.remoteCandidateId);
    out.push({
      policy: cfg.iceTransportPolicy,
      servers: (cfg.iceServers ?? []).map((s) => ({ urls: s.urls, username: s.username })),
      state: pc.connectionState,
      localTypes,
      local: l ? { type: l.candidateType, address: l.address, port: l.port, relayProtocol: l.relayProtocol, url: l.url } : null,
      remote: rm ? { type: rm.candidateType, address: rm.address, port: rm.port } : null,
      bytesSent: sel?.bytesSent ?? 0,
      bytesReceived: sel?.bytesReceived ?? 0,
    });
  }
  return out;
}

/** @param {string} s  a connection id (base64: `+` and `/`), for a RegExp */
const esc = (s) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

/** coturn log lines for successful allocations (one per TURN session). @param {string[]} lines */
const allocations = (lines) => lines.filter((l) => /ALLOCATE processed, success/.test(l));

/** coturn log lines refusing a request that carried credentials (the first, anonymous
 * request of every allocation gets a 401 challenge with `user <>`: not counted).
 * @param {string[]} lines */
const refusals = (lines) => lines.filter((l) => /user <[^>]+>: incoming packet \S+ processed, error 401/.test(l));

test('3-person call with --force-relay: all media goes through coturn with per-join credentials', { timeout: 120_000 }, async () => {
  const server = await meshcall(turn.secret);
  const from = turn.log.length;
  const n = 3;
  /** @type {string[]} */
  let ids = [];
  let leastBytes = Infinity;
  await withCall(recordingBrowser(), server, roomName('turn'), async (call) => {
    try {
      for (let i = 0; i < n; i++) await call.join(`P${i}`);
      ids = call.all.map((p) => p.id);
      await call.waitForMesh();
      await call.waitForColours();

      // Frames and audio keep coming from every other participant, over a relayed pair.
      await call.waitForMediaFlow({ relayed: true });
      call.lap('relayed media flowing');

      // Every connection: relay policy, meshcall's per-join user name, nothing but relay
      // candidates, the selected pair's local end a relay of our coturn.
      for (const p of call.live) {
        const pcs = await p.page.evaluate(iceReport);
        const what = `${p.name} (${p.id}): ${JSON.stringify(pcs)}`;
        assert.equal(pcs.length, n - 1, `open peer connections of ${what}`);
        for (const pc of pcs) {
          assert.equal(pc.state, 'connected', what);
          assert.equal(pc.policy, 'relay', what);
          assert.equal(pc.servers.length, 1, what);
          assert.deepEqual([pc.servers[0].urls].flat(), [turn.url], what);
          assert.match(pc.servers[0].username ?? '', new RegExp(`^\\d+:${esc(p.id)}$`), `TURN user name is <expiry>:<own id>: ${what}`);
          assert.ok(pc.localTypes.length > 0 && pc.localTypes.every((t) => t === 'relay'), `only relay candidates: ${what}`);
          assert.equal(pc.local?.type, 'relay', what);
          assert.equal(pc.local?.address, '127.0.0.1', what);
          assert.equal(pc.local?.relayProtocol, 'udp', what);
          assert.ok(pc.local?.port !== turn.port, what);
          // The remote end is the other's relay address: learnt from its candidate, or
          // peer-reflexive when its check came through before the candidate did.
          assert.ok(['relay', 'prflx'].includes(pc.remote?.type ?? ''), what);
          // ICE checks alone are about 100 bytes each.
          assert.ok(pc.bytesSent > 10_000 && pc.bytesReceived > 10_000, `bytes on the relayed pair: ${what}`);
          leastBytes = Math.min(leastBytes, pc.bytesSent, pc.bytesReceived);
        }
        // The badge on every remote tile.
        await call.waitFor(p, 'no "Relayed (TURN)" badge on every remote tile', (ids) => ids.every((id) => {
          const b = document.querySelector(`#grid .tile[data-peer="${id}"] .tile-relay`);
          return b instanceof HTMLElement && !b.hidden && b.textContent === 'Relayed (TURN)';
        }), call.others(p).map((q) => q.id), { timeout: 10_000, polling: 100 });
      }
      await call.assertNoErrors();
      console.log(`least bytes one way on a selected pair: ${leastBytes}`);

      // coturn: an allocation for every participant, under meshcall's user name for it.
      const allocs = allocations(turn.since(from));
      for (const p of call.live) {
        const mine = allocs.filter((l) => new RegExp(`user <\\d+:${esc(p.id)}>:`).test(l));
        assert.ok(mine.length >= n - 1, `coturn allocations for ${p.name} (${p.id}): ${mine.length} of ${allocs.length}:\n${allocs.join('\n')}`);
      }
      const refused = refusals(turn.since(from));
      assert.deepEqual(refused, [], 'coturn refused meshcall\'s credentials');
    } catch (e) {
      const err = /** @type {Error} */ (e);
      err.message += `\n--- coturn log tail ---\n${turn.tail(40)}`;
      throw err;
    }
  });

  // The call is over (every context closed, so every allocation refreshed to 0): coturn
  // reports each session's traffic, `peer usage` being what it relayed to and from the
  // other participants' relays. Each participant's n-1 used allocations carried media
  // (ICE checks alone are a few hundred bytes).
  /** @type {Map<string, { user: string, rb: number, sb: number }>} session id -> its latest report */
  const relayed = new Map();
  /** @param {string} id */
  const carried = (id) => [...relayed.values()].filter((u) => u.user === id && u.rb > 10_000 && u.sb > 10_000);
  await pollUntil(() => {
    for (const line of turn.since(from)) {
      const m = /session (\d+): peer usage: realm=<meshcall>, username=<\d+:([^>]*)>, rp=\d+, rb=(\d+), sp=\d+, sb=(\d+)/.exec(line);
      if (m) relayed.set(m[1], { user: m[2], rb: Number(m[3]), sb: Number(m[4]) });
    }
    return ids.every((id) => carried(id).length >= n - 1);
  }, 15_000, () => `coturn "peer usage" over 10 kB each way in ${n - 1} sessions for each of ${ids.join(', ')}: ${JSON.stringify([...relayed])}\n--- coturn log tail ---\n${turn.tail(40)}`);
  const used = ids.flatMap(carried);
  console.log(`coturn relayed ${used.reduce((a, u) => a + u.rb, 0)} bytes from peers in ${used.length} sessions (least ${Math.min(...used.map((u) => Math.min(u.rb, u.sb)))} bytes one way)`);
});

test('Firefox, with --force-relay: a 2-person call through coturn', { timeout: 90_000, skip: !callBrowsers().includes('firefox') }, async () => {
  const server = await meshcall(turn.secret);
  const firefox = await launchFirefox();
  try {
    await withCall(firefox, server, roomName('turnff'), async (call) => {
      await call.join('F0');
      await call.join('F1');
      await call.waitForMesh();
      await call.waitForColours();
      await call.waitForMediaFlow({ relayed: true });
      for (const p of call.live) {
        await call.waitFor(p, 'no "Relayed (TURN)" badge', (id) => {
          const b = document.querySelector(`#grid .tile[data-peer="${id}"] .tile-relay`);
          return b instanceof HTMLElement && !b.hidden;
        }, call.others(p)[0].id, { timeout: 10_000, polling: 100 });
      }
      await call.assertNoErrors();
    });
  } finally {
    await firefox.close();
  }
});

test('negative control: a TURN secret coturn does not know: no connection, peerFailed', { timeout: 90_000 }, async () => {
  const server = await meshcall(`wrong-${turn.secret}`);
  const from = turn.log.length;
  await withCall(recordingBrowser(), server, roomName('turnbad'), async (call) => {
    const p0 = await call.join('P0');
    const p1 = await call.join('P1');
    const start = Date.now();
    // Both have a tile for the other (signalling works) ...
    await Promise.all([p0, p1].map((p) => p.page.waitForFunction((id) => !!document.querySelector(`#grid .tile[data-peer="${id}"]`),
      call.others(p)[0].id, { timeout: 10_000, polling: 100 })));
    // ... coturn refuses the allocation of each of them, under meshcall's user name ...
    await pollUntil(() => [p0, p1].every((p) => refusals(turn.since(from)).some((l) => new RegExp(`user <\\d+:${esc(p.id)}>`).test(l))), 15_000,
      () => `coturn refusing the allocations of ${p0.id} and ${p1.id} (error 401):\n${turn.tail(40)}`);
    // ... and for 15 s nothing connects, gathers a candidate or paints a frame.
    while (Date.now() - start < 15_000) {
      for (const p of [p0, p1]) {
        const stats = await call.stats(p);
        const pcs = await p.page.evaluate(iceReport);
        const what = `${p.name} after ${Date.now() - start} ms: ${JSON.stringify(stats)} ${JSON.stringify(pcs)}`;
        assert.equal(Object.keys(stats).length, 1, what);
        assert.equal(pcs.length, 1, what);
        for (const s of Object.values(stats)) {
          assert.notEqual(s.connectionState, 'connected', what);
          assert.equal(s.pair, null, what);
          assert.equal(s.framesDecoded, 0, what);
        }
        for (const pc of pcs) {
          assert.equal(pc.policy, 'relay', what);
          assert.deepEqual(pc.localTypes, [], `no candidate without a TURN allocation: ${what}`);
        }
        assert.deepEqual(await p.page.evaluate(() => window.T.firstFrameAt), {}, what);
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    assert.equal(allocations(turn.since(from)).length, 0, `coturn allocated for a wrong secret:\n${turn.tail(40)}`);
    // The app gives up waiting (20 s) and says so.
    await Promise.all([p0, p1].map((p) => call.waitFor(p, 'no peerFailed notice', () => window.T.notices.includes('peerFailed')
      && document.querySelector('#notice')?.getAttribute('data-kind') === 'peerFailed', null, { timeout: 30_000, polling: 100 })));
    for (const p of [p0, p1]) {
      const status = await p.page.evaluate((id) => document.querySelector(`#grid .tile[data-peer="${id}"] .tile-status`)?.textContent, call.others(p)[0].id);
      assert.equal(status, 'Can’t connect, retrying…', `${p.name}: tile status`);
    }
    await call.assertNoErrors();
    console.log(`wrong secret: peerFailed on both ${Date.now() - start} ms after the second join`);
  });
});
