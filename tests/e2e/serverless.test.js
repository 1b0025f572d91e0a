// A 3-person call through the serverless path, all on this machine: the app's signalling
// goes through meshcall-gateway (a local API Gateway WebSocket) to the real Lambda bootstrap,
// which keeps its state in moto's DynamoDB and answers through @connections. Everyone sees
// everyone in the right colour with media flowing; one leaves and its tile goes from the
// other two, whose call goes on.
//
// Also measures what the call costs on AWS: the gateway's counters (GET /_gateway/stats:
// invocations by route, @connections posts, bytes) when all three are connected, when media
// flows and after one left, into artifacts/e2e/serverless-stats.json, with a one-line
// summary. Counts vary with ICE, so only their sanity is asserted.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, pollUntil, roomName, withCall, writeArtifact } from './lib/call.js';
import { startGateway, startMoto } from './lib/serverless.js';

/** @type {import('playwright-core').Browser} */
let browser;
/** @type {import('./lib/serverless.js').Moto} */
let moto;
/** @type {import('./lib/serverless.js').Gateway} */
let gateway;

before(async () => {
  moto = await startMoto();
  gateway = await startGateway(moto);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await gateway?.stop();
  await moto?.stop();
});

/** The routes the function serves (crates/gateway's event::ROUTES), plus connect and disconnect. */
const MESSAGE_ROUTES = ['joinRoom', 'sendMsgToRoom', 'signal', 'leaveRoom', 'ping', 'resume'];
// 'sqs': a batch from the expiry queue (a participant's grace ended).
const KNOWN = new Set(['$connect', '$disconnect', 'sweep', 'sqs', ...MESSAGE_ROUTES]);

/** Gone within this long: the leaver's leaveRoom goes through a Lambda invocation and DynamoDB. */
const GONE_MS = 10_000;

/**
 * @param {import('./lib/serverless.js').GatewayStats} s
 * @param {string} phase
 */
function checkSane(s, phase) {
  const where = `${phase}: ${JSON.stringify(s)}`;
  for (const route of Object.keys(s.invocations)) assert.ok(KNOWN.has(route), `unknown route ${route} (${where})`);
  assert.equal(s.invocations.$connect, 3, `$connect (${where})`);
  assert.equal(s.invocationsFailed, 0, `failed invocations (${where})`);
  const messages = MESSAGE_ROUTES.reduce((n, r) => n + (s.invocations[r] ?? 0), 0);
  assert.equal(s.received.frames, messages, `every frame received is one message invocation (${where})`);
  assert.ok((s.invocations.joinRoom ?? 0) >= 3, `joinRoom (${where})`);
  assert.ok((s.invocations.signal ?? 0) >= 6, `signal: at least an offer and an answer per pair (${where})`);
  assert.ok(s.posts.delivered >= 6, `posts delivered (${where})`);
}

/**
 * b - a, field by field (numbers only), dropping zeros.
 * @param {any} a @param {any} b
 * @returns {any}
 */
function delta(a, b) {
  if (typeof b === 'number') return b - (typeof a === 'number' ? a : 0);
  /** @type {Record<string, any>} */
  const out = {};
  for (const [k, v] of Object.entries(b)) {
    const d = delta(a?.[k], v);
    if (typeof d === 'number' ? d !== 0 : Object.keys(d).length) out[k] = d;
  }
  return out;
}

test('3-person call through meshcall-gateway, the Lambda bootstrap and DynamoDB (moto)', { timeout: 120_000 }, async () => {
  const room = roomName('serverless');
  /** @type {Record<string, { at: number, time: string, ms: number, idle: boolean, stats: import('./lib/serverless.js').GatewayStats }>} */
  const phases = {};
  const initial = await gateway.stats();
  await withCall(browser, gateway, room, async (call) => {
    const start = call.started;
    /** Snapshot the gateway's counters once it is idle (no invocation or $disconnect pending). @param {string} name @param {number} at */
    const phase = async (name, at) => {
      const idle = await gateway.idle();
      phases[name] = { at, time: new Date(at).toISOString(), ms: at - start, idle, stats: await gateway.stats() };
      call.lap(`${name}: ${JSON.stringify(phases[name].stats)}`);
      return phases[name].stats;
    };

    for (let i = 0; i < 3; i++) await call.join(`P${i}`);
    // All three see two remote videos with a painted frame, each from the right peer.
    await call.waitForMesh();
    const connected = await phase('connected', Date.now());
    checkSane(connected, 'connected');
    assert.equal(connected.posts.gone, 0, `no post to a gone connection while everyone is here: ${JSON.stringify(connected)}`);

    await call.waitForColours();
    await call.waitForMediaFlow();
    await call.assertNoErrors();
    const flowing = await phase('flowing', Date.now());
    checkSane(flowing, 'flowing');
    assert.equal(flowing.posts.gone, 0, `no post to a gone connection while everyone is here: ${JSON.stringify(flowing)}`);

    // P2 leaves with the leave button (leaveRoom, then a clean close: $disconnect).
    const leaver = call.all[2];
    await leaver.page.click('#btn-leave');
    leaver.closed = true;
    await call.waitForDeparture(leaver, GONE_MS);
    const leftAt = Date.now();
    // The two who stay keep their call.
    await call.waitForMesh();
    await call.waitForMediaFlow();
    await call.assertNoErrors();
    const left = await phase('left', leftAt);
    checkSane(left, 'left');
    assert.ok((left.invocations.leaveRoom ?? 0) >= 1, `leaveRoom: ${JSON.stringify(left)}`);
    assert.ok((left.invocations.$disconnect ?? 0) >= 1, `$disconnect: ${JSON.stringify(left)}`);
  });

  // What one 3-person call cost, from the start to one leaving (the sweep runs on its own
  // schedule, every second here; it is listed apart).
  const c = phases.connected.stats, f = phases.flowing.stats, l = phases.left.stats;
  const call = delta(initial, l);
  writeArtifact('serverless-stats.json', {
    what: '3-person call through meshcall-gateway + Lambda bootstrap + moto DynamoDB; counters from GET /_gateway/stats',
    room,
    table: gateway.table,
    initial,
    phases: {
      connected: { ...phases.connected, note: 'all three see two remote videos with a painted frame' },
      flowing: { ...phases.flowing, note: 'right colours, frames and audio keep coming on every page' },
      left: { ...phases.left, note: 'P2 clicked leave; the other two show 2 tiles and their media still flows' },
    },
    deltas: { toConnected: delta(initial, c), connectedToFlowing: delta(c, f), flowingToLeft: delta(f, l) },
    call,
  });
  const inv = Object.entries(call.invocations ?? {}).map(([k, v]) => `${k} ${v}`).join(', ');
  console.log(`serverless 3-person call (connected ${phases.connected.ms} ms, flowing ${phases.flowing.ms} ms, one left ${phases.left.ms} ms): `
    + `invocations ${inv}; posts delivered ${call.posts?.delivered ?? 0} gone ${call.posts?.gone ?? 0}; deletes ${call.deletes?.deleted ?? 0}; `
    + `bytes received ${call.received?.bytes ?? 0} in ${call.received?.frames ?? 0} frames, posted ${call.posts?.bytes ?? 0} (artifacts/e2e/serverless-stats.json)`);
});

// API Gateway ends every connection after 2 hours. The app moves to a fresh socket before
// that (config.json's socketMaxAgeMs, which the gateway derives from its connection limit):
// it resumes on the new socket, the function closes the old one, and the call never
// notices. Here the limit is 8 s, so the app moves every 6 s.
test('sockets are replaced before the connection limit without the call noticing', { timeout: 120_000 }, async () => {
  const limited = await startGateway(moto, { args: ['--max-connection-age', '8s'] });
  try {
    const config = await (await fetch(`${limited.origin}/config.json`)).json();
    assert.equal(config.socketMaxAgeMs, 6000, JSON.stringify(config));
    const room = roomName('rotate');
    await withCall(browser, limited, room, async (call) => {
      for (let i = 0; i < 2; i++) await call.join(`P${i}`);
      await call.waitForMesh();
      await call.waitForMediaFlow();
      const ids = await Promise.all(call.all.map((p) => p.page.evaluate(() => window.T.selfId)));
      const joinedAt = Date.now();
      // Both have moved at least once, and the first sockets would have hit the limit.
      await pollUntil(async () => {
        const s = await limited.stats();
        return (s.deletes?.deleted ?? 0) >= 2 && Date.now() - joinedAt > 9_000 ? s : undefined;
      }, 30_000, 'two sockets replaced and the first limit passed', 250);
      await limited.idle();
      const s = await limited.stats();
      assert.equal(s.invocations.joinRoom, 2, `no fresh join, only resumes: ${JSON.stringify(s)}`);
      assert.ok((s.invocations.resume ?? 0) >= 2, `resumes: ${JSON.stringify(s)}`);
      // Same ids, same tiles, media still flowing.
      const after = await Promise.all(call.all.map((p) => p.page.evaluate(() => window.T.selfId)));
      assert.deepEqual(after, ids);
      for (const p of call.all) assert.equal(await call.tileCount(p), 2, await call.describe(p));
      await call.waitForMediaFlow();
      await call.assertNoErrors();
    });
  } finally {
    await limited.stop();
  }
});
