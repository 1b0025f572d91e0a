// The call-quality benchmark of issue 21, beside the join-speed one: meshcall's app against
// the same minimal reference mesh page (reference.html), interleaved (app, reference, then
// reference, app in the next run, ...), medians over the runs. scripts/bench-quality starts
// this inside a loopback-only namespace; the browsers get namespaces of their own
// (tests/e2e/lib/netns.js), linked to the servers' by veth.
//
// Each run, for each page kind: a 4-person call; three people share one Chromium on an
// unconstrained link, the fourth ("Slow") has a Chromium of its own, a busy camera (a noisy
// 480x270 y4m that wants well over 1 Mbit/s) and an uplink shaped to 1 Mbit/s with 2 % loss. Then:
// - a WINDOW-second watch, inside every page: for Slow's video at each of the others, the
//   decoded frame rate, the frame size, the longest freeze and the freezes' total, the share
//   of Slow's audio concealed; for Slow, the longest freeze of anyone's video;
// - Slow's link cut for CUT seconds, then restored (with --new-address, with another
//   address): the time from the link's return until every other page decodes Slow's video
//   again and Slow decodes everyone's (or never, within 40 s).
// Figures come from getStats inside the pages (tests/e2e/lib/watch.js: every peer connection
// keyed by its remote end's address and port, so neither page's code is touched; freezes by
// the receiver's own counters).
//
// Usage (inside the namespace): node tests/bench-join/quality.js [--runs 3] [--window 20]
//   [--cut 5] [--new-address] [--out FILE] [--verbose]

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { REPO, startServer } from '../e2e/lib/server.js';
import { Host, SERVER_ADDR, secureOriginArg, writeBusyY4m } from '../e2e/lib/netns.js';
import { readWatch, recorder, startWatch } from '../e2e/lib/watch.js';
import { startRefServer } from './refserver.js';
import { ARGS, CHROMIUM, SERVER_ARGS, VIEWPORT } from './setup.js';

const { values: opt } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
    window: { type: 'string', default: '20' },
    cut: { type: 'string', default: '5' },
    // The link comes back with a new address (Wi-Fi to mobile data): only an ICE restart
    // brings media back then.
    'new-address': { type: 'boolean', default: false },
    out: { type: 'string' },
    verbose: { type: 'boolean', default: false },
  },
});
const RUNS = Number(opt.runs);
const WINDOW_MS = Number(opt.window) * 1000;
const CUT_MS = Number(opt.cut) * 1000;
const BACK_TIMEOUT_MS = 40_000;
const KINDS = /** @type {('app' | 'ref')[]} */ (['app', 'ref']);
const log = (/** @type {string} */ s) => { if (opt.verbose) console.error(`[${new Date().toISOString().slice(11, 23)}] ${s}`); };

/** @param {number[]} xs */
function median(xs) {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return NaN;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

/**
 * One call of one page kind; its figures.
 * @param {'app' | 'ref'} kind
 * @param {{ fast: import('playwright-core').Browser, slow: import('playwright-core').Browser, slowHost: Host,
 *   appOrigin: string, refOrigin: string }} env
 * @param {string} room
 */
async function oneCall(kind, env, room) {
  const url = (/** @type {string} */ name) => (kind === 'app'
    ? `${env.appOrigin}/r/${room}?name=${name}`
    : `${env.refOrigin}/r/${room}`);
  /** @type {{ name: string, ctx: import('playwright-core').BrowserContext, page: import('playwright-core').Page }[]} */
  const parts = [];
  try {
    for (const name of ['P0', 'P1', 'P2', 'Slow']) {
      const ctx = await (name === 'Slow' ? env.slow : env.fast).newContext({ viewport: VIEWPORT });
      await ctx.addInitScript(recorder);
      const page = await ctx.newPage();
      parts.push({ name, ctx, page });
      await page.goto(url(name), { waitUntil: 'domcontentloaded' });
      // Joined and connected to everyone before it: as many remote ends with frames.
      const want = parts.length - 1;
      await page.waitForFunction(async (n) => {
        const s = await /** @type {any} */ (window).__q?.();
        return !!s && Object.values(s).filter((r) => /** @type {any} */ (r).frames > 0).length >= n;
      }, want, { timeout: 30_000, polling: 250 }).catch(() => { throw new Error(`${kind} ${name}: not ${want} remote videos in 30 s`); });
      log(`${kind}: ${name} in`);
    }
    // Everyone sees everyone, then the link is shaped and watched.
    await Promise.all(parts.map((p) => p.page.waitForFunction(async () => {
      const s = await /** @type {any} */ (window).__q();
      return Object.values(s).filter((r) => /** @type {any} */ (r).frames > 0).length >= 3;
    }, null, { timeout: 30_000, polling: 250 })));
    env.slowHost.shape({ rateKbit: 1000, lossPct: 2 });
    for (const p of parts) await p.page.evaluate(startWatch);
    await sleep(WINDOW_MS); // a measurement window, not a wait for something
    const seen = await Promise.all(parts.map((p) => p.page.evaluate(readWatch)));
    const slowKey = (/** @type {string} */ k) => k.startsWith(`${env.slowHost.addr}:`);
    const ofSlow = seen.slice(0, 3).map((s) => Object.entries(s).find(([k]) => slowKey(k))?.[1]);
    if (ofSlow.some((x) => !x)) throw new Error(`${kind}: a page had no connection to Slow: ${JSON.stringify(seen)}`);
    const slowSees = Object.values(seen[3]);
    const figures = {
      fps: median(ofSlow.map((x) => /** @type {any} */ (x).fps)),
      height: median(ofSlow.map((x) => /** @type {any} */ (x).height)),
      width: median(ofSlow.map((x) => /** @type {any} */ (x).width)),
      freezeMs: Math.max(...ofSlow.map((x) => /** @type {any} */ (x).longestFreezeMs)),
      freezesMs: median(ofSlow.map((x) => /** @type {any} */ (x).freezesMs)),
      concealedPct: median(ofSlow.map((x) => /** @type {any} */ (x).concealedPct)),
      slowSeesFreezeMs: Math.max(...slowSees.map((x) => x.longestFreezeMs)),
      backMs: NaN,
    };
    log(`${kind}: window ${JSON.stringify(figures)}`);

    // The network drop: Slow's link down, then up; time until media flows both ways again.
    /** @type {Record<string, number>[]} */
    const frames0 = [];
    env.slowHost.cut(true);
    await sleep(CUT_MS); // the length of the outage, by definition
    for (const p of parts) {
      const s = /** @type {Record<string, { frames: number }>} */ (await p.page.evaluate(() => /** @type {any} */ (window).__q()));
      frames0.push(Object.fromEntries(Object.entries(s).map(([k, r]) => [k, r.frames])));
    }
    if (opt['new-address']) env.slowHost.move();
    env.slowHost.cut(false);
    const upAt = Date.now();
    const back = await Promise.all(parts.map(async (p, i) => {
      const isSlow = p.name === 'Slow';
      const ok = await p.page.waitForFunction(async ({ before, isSlow, slowAddr }) => {
        const s = await /** @type {any} */ (window).__q();
        // A new pair after an ICE restart has a new key: count frames per remote address.
        /** @type {Record<string, number>} */
        const byAddr = {};
        for (const [k, r] of Object.entries(s)) {
          const a = k.slice(0, k.lastIndexOf(':'));
          byAddr[a] = Math.max(byAddr[a] ?? 0, /** @type {any} */ (r).frames - (before[k] ?? 0));
        }
        if (isSlow) return Object.keys(s).length >= 3 && Object.values(s).every((r) => /** @type {any} */ (r).frames > 0)
          && Object.entries(s).every(([k, r]) => /** @type {any} */ (r).frames > (before[k] ?? 0));
        return (byAddr[slowAddr] ?? 0) > 0;
      }, { before: frames0[i], isSlow, slowAddr: env.slowHost.addr }, { timeout: BACK_TIMEOUT_MS, polling: 100 }).then(() => true, () => false);
      return ok ? Date.now() - upAt : Infinity;
    }));
    figures.backMs = Math.max(...back);
    log(`${kind}: back ${JSON.stringify(back)}`);
    return { figures, seen, back };
  } finally {
    for (const p of parts) await p.ctx.close().catch(() => {});
    env.slowHost.cut(false);
    env.slowHost.unshape();
  }
}

async function main() {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'meshcall-quality-'));
  const fastHost = new Host('qfast');
  const slowHost = new Host('qslow');
  /** @type {{ close: () => Promise<unknown> }[]} */
  const open = [];
  try {
    const server = await startServer({ host: SERVER_ADDR, args: SERVER_ARGS });
    open.push({ close: () => server.stop() });
    const ref = await startRefServer(`ws://${SERVER_ADDR}:${server.port}/ws`, 0, SERVER_ADDR);
    open.push(ref);
    const y4m = path.join(tmp, 'busy.y4m');
    writeBusyY4m(y4m, { width: 480, height: 270 }); // as tests/e2e/network.test.js
    const secure = secureOriginArg(server.port, Number(new URL(ref.origin).port));
    const fast = await fastHost.launchChromium(CHROMIUM, [...ARGS, secure]);
    open.push(fast);
    const slow = await slowHost.launchChromium(CHROMIUM, [...ARGS, secure, `--use-file-for-fake-video-capture=${y4m}`]);
    open.push(slow);
    const env = { fast, slow, slowHost, appOrigin: server.origin, refOrigin: ref.origin };
    /** @type {Record<string, any[]>} */
    const results = { app: [], ref: [] };
    for (let run = 0; run < RUNS; run++) {
      const order = run % 2 ? [...KINDS].reverse() : KINDS;
      for (const kind of order) {
        const room = `q${run}${kind}${Date.now().toString(36)}`;
        try {
          results[kind].push(await oneCall(kind, env, room));
        } catch (e) {
          console.error(`run ${run + 1} ${kind}: ${/** @type {Error} */ (e).message}`);
          results[kind].push({ error: String(e) });
        }
        console.error(`run ${run + 1}/${RUNS} ${kind}: ${JSON.stringify(results[kind].at(-1).figures ?? 'failed')}`);
      }
    }
    const rows = [
      ['received frame rate of Slow (fps)', 'fps', 1],
      ['received picture of Slow (lines)', 'height', 0],
      ['longest freeze of Slow, at any receiver (ms)', 'freezeMs', 0],
      ['freezes of Slow in the window, in all (ms)', 'freezesMs', 0],
      ['audio of Slow concealed (%)', 'concealedPct', 1],
      ['longest freeze Slow saw (ms)', 'slowSeesFreezeMs', 0],
      ['network back to media, both ways (ms)', 'backMs', 0],
    ];
    const fig = (/** @type {string} */ kind, /** @type {string} */ k) => results[kind].filter((r) => r.figures).map((r) => r.figures[k]);
    const fmt = (/** @type {number} */ x, /** @type {number} */ d) => (Number.isFinite(x) ? x.toFixed(d) : (x === Infinity ? 'never' : '-'));
    const lines = [
      `4 people, Slow's uplink 1 Mbit/s + 2 % loss, busy camera; ${RUNS} interleaved runs, ${WINDOW_MS / 1000} s window, ${CUT_MS / 1000} s cut${opt['new-address'] ? ', back with a new address' : ''}; medians (all runs)`,
      '',
      '| figure | meshcall | reference |',
      '|---|---|---|',
      ...rows.map(([label, k, d]) => `| ${label} | ${fmt(median(fig('app', /** @type {string} */ (k))), /** @type {number} */ (d))} (${fig('app', /** @type {string} */ (k)).map((x) => fmt(x, /** @type {number} */ (d))).join(', ')}) | ${fmt(median(fig('ref', /** @type {string} */ (k))), /** @type {number} */ (d))} (${fig('ref', /** @type {string} */ (k)).map((x) => fmt(x, /** @type {number} */ (d))).join(', ')}) |`),
    ];
    console.log(lines.join('\n'));
    const out = opt.out ?? path.join(REPO, 'artifacts/bench-quality', `bench-quality-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    mkdirSync(path.dirname(out), { recursive: true });
    writeFileSync(out, `${JSON.stringify({ runs: RUNS, windowMs: WINDOW_MS, cutMs: CUT_MS, results }, null, 2)}\n`);
    console.error(`raw figures: ${path.relative(REPO, out)}`);
  } finally {
    for (const o of open.reverse()) await o.close().catch(() => {});
    fastHost.remove();
    slowHost.remove();
    rmSync(tmp, { recursive: true, force: true });
  }
}

await main();
