// The join-speed benchmark of issue 12: meshcall's app against a minimal reference mesh page
// (reference.html), both driven the same way in one headless Chromium with fake media, in a
// loopback-only network namespace (scripts/bench-join starts this inside `unshare -n`).
//
// For each case (N people) and run, each page kind in turn (interleaved: app, reference, then
// reference, app in the next run, ...): N browser contexts join one fresh room one after another;
// the first N-1 are left to settle (joined, camera started, page loaded, full mesh among them);
// then the last one opens the room and we measure from that moment (t0: the navigation start of
// its page, from Navigation Timing) until every participant has painted a video frame from
// every other one. The timestamps come from inside the pages (instrument.js), not from the
// harness noticing.
// In the largest case, the renderer CPU of each page is measured over a steady window.
//
// Usage (inside the namespace; scripts/bench-join does that):
//   node tests/bench-join/bench.js [--runs 5] [--quick] [--cases 2,3,4] [--cpu-settle 5]
//     [--cpu-window 10] [--out FILE] [--app2 BIN] [--delay-ms 0]

import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { chromium } from 'playwright-core';
import { Child } from '../e2e/lib/child.js';
import { BIN, REPO, startServer } from '../e2e/lib/server.js';
import { instrument } from './instrument.js';
import { DelayRelay } from './delay.js';
import { ARGS, CHROMIUM, SERVER_ARGS, VIEWPORT } from './setup.js';

const { values: opt } = parseArgs({
  options: {
    runs: { type: 'string', default: '5' },
    quick: { type: 'boolean', default: false },
    cases: { type: 'string', default: '2,3,4' },
    'cpu-settle': { type: 'string', default: '5' },
    'cpu-window': { type: 'string', default: '10' },
    out: { type: 'string' },
    verbose: { type: 'boolean', default: false },
    // A second meshcall binary (another build of web/), run as a third kind 'app2', interleaved
    // with the other two: compares two versions of the app under the same load.
    app2: { type: 'string' },
    // One-way delay (ms) between the browsers and the servers (pages, files, signalling),
    // through a delaying relay (delay.js); media stays on loopback. 0: none.
    'delay-ms': { type: 'string', default: '0' },
  },
});
const RUNS = opt.quick ? 1 : Number(opt.runs);
const CASES = opt.quick ? [2] : opt.cases.split(',').map(Number);
const CPU_SETTLE_MS = (opt.quick ? Math.min(2, Number(opt['cpu-settle'])) : Number(opt['cpu-settle'])) * 1000;
const CPU_WINDOW_MS = (opt.quick ? Math.min(3, Number(opt['cpu-window'])) : Number(opt['cpu-window'])) * 1000;
if (!(RUNS >= 1) || CASES.some((n) => !(n >= 2 && n <= 8)) || !(CPU_WINDOW_MS > 0) || !(CPU_SETTLE_MS >= 0)) {
  console.error('bench-join: --runs >= 1, --cases from 2..8, --cpu-window > 0, --cpu-settle >= 0');
  process.exit(2);
}
const CPU_CASE = Math.max(...CASES);
const DELAY_MS = Number(opt['delay-ms']);
if (!(DELAY_MS >= 0)) {
  console.error('bench-join: --delay-ms >= 0');
  process.exit(2);
}
const TIMEOUT = 30_000;
const KINDS = /** @type {('app' | 'ref' | 'app2')[]} */ (opt.app2 ? ['app', 'app2', 'ref'] : ['app', 'ref']);
const LABEL = { app: 'app      ', app2: 'app2     ', ref: 'reference' };

const log = (/** @type {string} */ s) => { if (opt.verbose) console.error(`[${new Date().toISOString().slice(11, 23)}] ${s}`); };

// ---------------------------------------------------------------------------------------------
// statistics

/** @param {number[]} xs */
function median(xs) {
  const v = xs.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return null;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}
/** k-th smallest (1-based) of the finite values, or null. @param {number[]} xs @param {number} k */
function kth(xs, k) {
  const v = xs.filter((x) => x > 0).sort((a, b) => a - b);
  return v.length >= k ? v[k - 1] : null;
}

// ---------------------------------------------------------------------------------------------
// processes (/proc): CPU of the browser's process tree

const CLK_TCK = 100; // USER_HZ, 100 on every Linux architecture Chromium runs on here

/** Every process under this node process except `exclude`, with CPU seconds and a role. @param {Set<number>} exclude */
function procTree(exclude) {
  /** @type {Map<number, { ppid: number, cpu: number, role: string }>} */
  const all = new Map();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8');
      const role = (/--type=([\w-]+)/.exec(cmd) ?? [])[1] ?? (cmd.includes('chrom') ? 'browser' : path.basename(cmd.split('\0')[0] || '?'));
      all.set(Number(d), { ppid: Number(f[1]), cpu: (Number(f[11]) + Number(f[12])) / CLK_TCK, role });
    } catch { /* gone meanwhile */ }
  }
  /** @type {Map<number, { cpu: number, role: string }>} */
  const out = new Map();
  const under = (/** @type {number} */ pid) => {
    for (let p = pid, hops = 0; p > 1 && hops < 64; hops++) {
      if (exclude.has(p)) return false;
      const e = all.get(p);
      if (!e) return false;
      if (e.ppid === process.pid) return true;
      p = e.ppid;
    }
    return false;
  };
  for (const [pid, e] of all) if (!exclude.has(pid) && under(pid)) out.set(pid, e);
  return out;
}

/** CPU seconds used between two procTree snapshots, by role. */
function procDelta(/** @type {ReturnType<typeof procTree>} */ a, /** @type {ReturnType<typeof procTree>} */ b) {
  /** @type {Record<string, number>} */
  const byRole = {};
  let total = 0;
  for (const [pid, e] of b) {
    const d = e.cpu - (a.get(pid)?.cpu ?? 0); // a process born in the window counts whole
    byRole[e.role] = (byRole[e.role] ?? 0) + d;
    total += d;
  }
  return { total, byRole };
}

// ---------------------------------------------------------------------------------------------
// one call

/**
 * @typedef {{ name: string, ctx: import('playwright-core').BrowserContext, page: import('playwright-core').Page,
 *   console: string[] }} Part
 */

/**
 * page.waitForFunction on p's page; a timeout fails naming p, what did not happen, what the
 * page recorded and its last console errors.
 * @param {Part} p @param {string} what @param {(arg: any) => unknown} fn @param {unknown} arg
 */
async function waitPage(p, what, fn, arg) {
  await p.page.waitForFunction(fn, arg, { timeout: TIMEOUT, polling: 50 }).catch(async (e) => {
    const state = await p.page.evaluate(() => JSON.stringify(/** @type {any} */ (window).__bench)).catch(() => 'unreadable');
    throw new Error(`${p.name}: ${what}: ${e.message.split('\n')[0]}\nrecorded: ${state}\nconsole: ${JSON.stringify(p.console.slice(-10))}`);
  });
}

/**
 * Wait, without evaluating anything in it, until the page has joined, painted `frames`
 * remote peer connections, started its camera and loaded: from the status instrument.js
 * tells on the console. Start before the page's navigation.
 * @param {Part} p @param {number} frames @param {string} what
 */
function quietlyReady(p, frames, what) {
  let last = 'nothing';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      p.page.off('console', onConsole);
      reject(new Error(`${p.name}: ${what}: no status with ${frames} frames within ${TIMEOUT} ms; last: ${last}\nconsole: ${JSON.stringify(p.console.slice(-10))}`));
    }, TIMEOUT);
    /** @param {import('playwright-core').ConsoleMessage} m */
    const onConsole = (m) => {
      const text = m.text();
      if (!text.startsWith('__bench:status ')) return;
      last = text.slice('__bench:status '.length);
      const s = JSON.parse(last);
      if (s.joined && s.camera && s.loaded && s.frames >= frames) {
        clearTimeout(timer);
        p.page.off('console', onConsole);
        resolve(undefined);
      }
    };
    p.page.on('console', onConsole);
  });
}

/** Wait until every page has joined, painted `frames` remote peer connections, started its camera and loaded. */
async function waitReady(/** @type {Part[]} */ parts, /** @type {number} */ frames, /** @type {string} */ what) {
  await Promise.all(parts.map((p) => waitPage(p, what, (k) => {
    const B = /** @type {any} */ (window).__bench;
    return !!B && B.joinedAt > 0 && B.gum.some((/** @type {any} */ g) => g.ok)
      && B.pcs.filter((/** @type {any} */ pc) => pc.frame).length >= k && document.readyState === 'complete';
  }, frames)));
}

/** Everything a page recorded, its navigation timing, and its clock skew corrected. */
function readPage(/** @type {Part} */ p) {
  return p.page.evaluate(() => {
    const nav = /** @type {PerformanceNavigationTiming | undefined} */ (performance.getEntriesByType('navigation')[0]);
    // performance.timeOrigin is on the renderer's monotonic-derived clock; re-base it on Date.now().
    const origin = Date.now() - performance.now();
    return {
      bench: /** @type {any} */ (window).__bench,
      nav: nav ? {
        start: origin,
        connectStart: origin + nav.connectStart,
        requestStart: origin + nav.requestStart,
        responseStart: origin + nav.responseStart,
        responseEnd: origin + nav.responseEnd,
        domContentLoaded: origin + nav.domContentLoadedEventEnd,
        load: nav.loadEventEnd ? origin + nav.loadEventEnd : 0,
      } : null,
      // The page's own performance marks (the app's meshcall:*; the reference has none).
      marks: Object.fromEntries(performance.getEntriesByType('mark').map((m) => [m.name, origin + m.startTime])),
      // What the page fetched (scripts, styles, config), for the raw figures.
      resources: performance.getEntriesByType('resource').map((e) => {
        const r = /** @type {PerformanceResourceTiming} */ (e);
        return { name: r.name.replace(location.origin, ''), start: origin + r.startTime, requestStart: origin + r.requestStart, responseEnd: origin + r.responseEnd };
      }),
    };
  });
}

/** Receive/send figures of every peer connection of a page (getStats), for the CPU window. */
function pageMediaStats(/** @type {Part} */ p) {
  return p.page.evaluate(async () => {
    const pcs = /** @type {RTCPeerConnection[]} */ (/** @type {any} */ (window).__benchPcs ?? []);
    const out = { inFrames: 0, inDecodeS: 0, outFrames: 0, outEncodeS: 0, inSizes: /** @type {string[]} */ ([]), outSizes: /** @type {string[]} */ ([]), outBytes: 0 };
    for (const pc of pcs) {
      if (pc.connectionState === 'closed') continue;
      (await pc.getStats()).forEach((/** @type {any} */ r) => {
        if (r.kind !== 'video') return;
        if (r.type === 'inbound-rtp') {
          out.inFrames += r.framesDecoded ?? 0;
          out.inDecodeS += r.totalDecodeTime ?? 0;
          if (r.frameWidth) out.inSizes.push(`${r.frameWidth}x${r.frameHeight}`);
        } else if (r.type === 'outbound-rtp') {
          out.outFrames += r.framesEncoded ?? 0;
          out.outEncodeS += r.totalEncodeTime ?? 0;
          out.outBytes += r.bytesSent ?? 0;
          if (r.frameWidth) out.outSizes.push(`${r.frameWidth}x${r.frameHeight}`);
        }
      });
    }
    return out;
  });
}

/**
 * The renderer CPU of every page of a steady call, over CPU_WINDOW_MS after CPU_SETTLE_MS.
 * Per page: Chromium's Performance.getMetrics (ProcessTime: the renderer process's CPU time,
 * all threads; ThreadTime: its main thread's; TaskDuration, ScriptDuration, LayoutDuration,
 * RecalcStyleDuration: main-thread CPU time in tasks, script, layout and style); for the whole
 * browser: /proc, every process of its tree by role.
 * @param {Part[]} parts @param {Set<number>} exclude
 */
async function measureCpu(parts, exclude) {
  const sessions = await Promise.all(parts.map((p) => p.ctx.newCDPSession(p.page)));
  // threadTicks: the durations (TaskDuration, ScriptDuration, ...) are main-thread CPU time,
  // not wall time, so a machine busy with other work does not inflate them.
  await Promise.all(sessions.map((s) => s.send('Performance.enable', { timeDomain: 'threadTicks' })));
  // A measurement window, not a wait for something: let bitrate and resolution settle first.
  await sleep(CPU_SETTLE_MS);
  const stats0 = await Promise.all(parts.map(pageMediaStats));
  const metric = async (/** @type {import('playwright-core').CDPSession} */ s) =>
    Object.fromEntries((await s.send('Performance.getMetrics')).metrics.map((m) => [m.name, m.value]));
  const m0 = await Promise.all(sessions.map(metric));
  const proc0 = procTree(exclude);
  const w0 = performance.now();
  await sleep(CPU_WINDOW_MS);
  const m1 = await Promise.all(sessions.map(metric));
  const proc1 = procTree(exclude);
  const wallS = (performance.now() - w0) / 1000;
  const stats1 = await Promise.all(parts.map(pageMediaStats));
  await Promise.all(sessions.map((s) => s.detach().catch(() => {})));
  const pct = (/** @type {number} */ s) => Math.round((s / wallS) * 1000) / 10;
  const pages = parts.map((p, i) => {
    const d = (/** @type {string} */ k) => (m1[i][k] ?? NaN) - (m0[i][k] ?? NaN);
    return {
      name: p.name,
      processPct: pct(d('ProcessTime')),
      mainThreadPct: pct(d('ThreadTime')),
      taskPct: pct(d('TaskDuration')),
      scriptPct: pct(d('ScriptDuration')),
      layoutStylePct: pct(d('LayoutDuration') + d('RecalcStyleDuration')),
      layouts: d('LayoutCount'),
      styleRecalcs: d('RecalcStyleCount'),
      inFps: Math.round(((stats1[i].inFrames - stats0[i].inFrames) / wallS) * 10) / 10,
      outFps: Math.round(((stats1[i].outFrames - stats0[i].outFrames) / wallS) * 10) / 10,
      decodeWallPct: pct(stats1[i].inDecodeS - stats0[i].inDecodeS),
      encodeWallPct: pct(stats1[i].outEncodeS - stats0[i].outEncodeS),
      outKbps: Math.round(((stats1[i].outBytes - stats0[i].outBytes) * 8) / wallS / 1000),
      inSizes: stats1[i].inSizes,
      outSizes: stats1[i].outSizes,
    };
  });
  const tree = procDelta(proc0, proc1);
  return {
    wallS,
    pages,
    meanPageProcessPct: Math.round((pages.reduce((a, p) => a + p.processPct, 0) / pages.length) * 10) / 10,
    browserTreePct: pct(tree.total),
    browserTreeByRolePct: Object.fromEntries(Object.entries(tree.byRole).map(([k, v]) => [k, pct(v)])),
  };
}

/**
 * One call: N pages of `kind` join a fresh room; returns every raw figure.
 * @param {import('playwright-core').Browser} browser
 * @param {{ roomUrl: (room: string, q?: Record<string, string>) => string }} target
 * @param {'app' | 'ref'} kind @param {number} n @param {number} run @param {boolean} cpu @param {Set<number>} exclude
 */
async function runCall(browser, target, kind, n, run, cpu, exclude) {
  const room = `bench-${kind}-${n}-${run}-${Math.random().toString(36).slice(2, 8)}`;
  /** @type {Part[]} */
  const parts = [];
  try {
    let gotoAt = 0;
    /** @type {Promise<unknown>[]} */
    let meshReady = [];
    for (let i = 0; i < n; i++) {
      const name = `P${i}`;
      const ctx = await browser.newContext({ viewport: VIEWPORT });
      await ctx.addInitScript(instrument);
      const page = await ctx.newPage();
      /** @type {Part} */
      const p = { name, ctx, page, console: [] };
      page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') p.console.push(`${m.type()}: ${m.text()}`); });
      page.on('pageerror', (e) => p.console.push(`uncaught: ${e.message}`));
      parts.push(p);
      if (i === n - 1) {
        // Everyone already there is settled: joined, camera on, loaded, seeing each other.
        await waitReady(parts.slice(0, -1), n - 2, 'not settled before the last join');
        gotoAt = Date.now();
      }
      // From the last join on, every page is watched only through its console (quietlyReady).
      if (i === n - 1) meshReady = parts.map((q) => quietlyReady(q, n - 1, 'no full mesh'));
      await page.goto(kind !== 'ref' ? target.roomUrl(room, { name }) : target.roomUrl(room), { waitUntil: 'commit', timeout: TIMEOUT });
      if (i < n - 1) await waitPage(p, 'not joined', () => /** @type {any} */ (window).__bench?.joinedAt > 0, null);
      log(`${kind} N=${n} run ${run}: ${name} opened`);
    }
    await Promise.all(meshReady);
    log(`${kind} N=${n} run ${run}: full mesh`);
    const pages = await Promise.all(parts.map(readPage));
    // t0: the last page's navigation start (the browser may take a while to act on page.goto
    // when the machine is busy: that lag is kept, but not counted).
    const t0 = pages[n - 1].nav?.start ?? gotoAt;
    const result = { kind, n, run, room, t0, gotoLagMs: Math.round(t0 - gotoAt), ...analyse(pages, n, t0), pages: pages.map((pg, i) => ({ name: parts[i].name, ...pg, console: parts[i].console })) };
    if (cpu) {
      /** @type {any} */ (result).cpu = await measureCpu(parts, exclude);
      log(`${kind} N=${n} run ${run}: cpu ${JSON.stringify(/** @type {any} */ (result).cpu.pages.map((/** @type {any} */ x) => x.processPct))}`);
    }
    return result;
  } finally {
    await Promise.all(parts.map((p) => p.ctx.close().catch(() => {})));
  }
}

/**
 * From the pages' records: the total, and where the last joiner's time went, as ms after t0.
 * @param {any[]} pages @param {number} n @param {number} t0
 */
function analyse(pages, n, t0) {
  const rel = (/** @type {number | null | undefined} */ t) => (t ? Math.round(t - t0) : null);
  // When each page had painted a frame from n-1 peer connections.
  const seesAll = pages.map((pg) => kth(pg.bench.pcs.map((/** @type {any} */ pc) => pc.frame), n - 1));
  const totalMs = rel(Math.max(.../** @type {number[]} */ (seesAll)));
  const last = pages[n - 1];
  const B = last.bench;
  /** First t per peer of the ws records matching `f`, keyed by `key`; the latest of those if all n-1 peers have one. */
  const allPeers = (/** @type {(r: any) => boolean} */ f, /** @type {string} */ key) => {
    /** @type {Map<string, number>} */
    const first = new Map();
    for (const r of B.ws) if (f(r) && !first.has(r[key])) first.set(r[key], r.t);
    return first.size >= n - 1 ? Math.max(...first.values()) : null;
  };
  const ws = (/** @type {(r: any) => boolean} */ f) => B.ws.find(f)?.t ?? null;
  const gum = B.gum.find((/** @type {any} */ g) => g.video) ?? B.gum[0];
  const breakdown = {
    htmlRequested: rel(last.nav?.requestStart),
    htmlFirstByte: rel(last.nav?.responseStart),
    htmlReceived: rel(last.nav?.responseEnd),
    domContentLoaded: rel(last.nav?.domContentLoaded),
    load: rel(last.nav?.load),
    mediaRequested: rel(gum?.start),
    mediaReady: rel(gum?.end),
    socketCreated: rel(ws((r) => r.ev === 'new')),
    socketOpen: rel(ws((r) => r.ev === 'open')),
    joinSent: rel(ws((r) => r.ev === 'out' && r.action === 'joinRoom')),
    joinedReceived: rel(B.joinedAt),
    firstOfferSent: rel(ws((r) => r.ev === 'out' && r.sdp === 'offer')),
    sdpSentToAll: rel(allPeers((r) => r.ev === 'out' && !!r.sdp, 'to')),
    sdpReceivedFromAll: rel(allPeers((r) => r.ev === 'in' && !!r.sdp, 'from')),
    iceConnectedAll: rel(kth(B.pcs.map((/** @type {any} */ pc) => pc.ice), n - 1)),
    pcConnectedAll: rel(kth(B.pcs.map((/** @type {any} */ pc) => pc.connected), n - 1)),
    remoteTrackAll: rel(kth(B.pcs.map((/** @type {any} */ pc) => pc.track), n - 1)),
    firstRemoteFrame: rel(kth(B.pcs.map((/** @type {any} */ pc) => pc.frame), 1)),
    lastJoinerSeesAll: rel(seesAll[n - 1]),
    othersSeeLastJoiner: n > 1 ? rel(Math.max(...pages.slice(0, -1).map((pg) => Math.max(...pg.bench.pcs.map((/** @type {any} */ pc) => pc.frame || 0))))) : null,
    everyoneSeesEveryone: totalMs,
  };
  const count = (/** @type {(r: any) => boolean} */ f) => B.ws.filter(f).length;
  const counts = {
    peerConnections: B.pcs.length,
    offersSent: count((r) => r.ev === 'out' && r.sdp === 'offer'),
    answersSent: count((r) => r.ev === 'out' && r.sdp === 'answer'),
    offersReceived: count((r) => r.ev === 'in' && r.sdp === 'offer'),
    answersReceived: count((r) => r.ev === 'in' && r.sdp === 'answer'),
    candidatesSent: count((r) => r.ev === 'out' && r.candidate),
    candidatesReceived: count((r) => r.ev === 'in' && r.candidate),
    otherSignalsSent: count((r) => r.ev === 'out' && r.action === 'signal' && !r.sdp && !r.candidate),
    framesSent: count((r) => r.ev === 'out'),
    framesReceived: count((r) => r.ev === 'in'),
    sockets: count((r) => r.ev === 'new'),
  };
  return { totalMs, breakdown, counts, errors: pages.flatMap((pg, i) => pg.bench.errors.map((/** @type {string} */ e) => `P${i}: ${e}`)) };
}

// ---------------------------------------------------------------------------------------------
// main

function machine() {
  const cpus = os.cpus();
  let commit = null;
  let webDirty = null;
  try {
    commit = execFileSync('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
    webDirty = execFileSync('git', ['-C', REPO, 'status', '--porcelain', 'web/'], { encoding: 'utf8' }).trim() !== '';
  } catch { /* no git */ }
  return {
    cpuModel: cpus[0]?.model ?? '?',
    cpus: cpus.length,
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    kernel: os.release(),
    node: process.version,
    commit,
    webUncommittedChanges: webDirty,
    meshcallBin: BIN,
    meshcallBinModified: existsSync(BIN) ? statSync(BIN).mtime.toISOString() : null,
  };
}

const r1 = (/** @type {number | null} */ x) => (x === null ? null : Math.round(x * 10) / 10);
const fmt = (/** @type {number | null} */ x) => (x === null ? '-' : String(Math.round(x)));

async function main() {
  const started = new Date();
  const meta = { started: started.toISOString(), machine: machine(), loadavgBefore: os.loadavg(), runs: RUNS, cases: CASES,
    cpuCase: CPU_CASE, delayMs: DELAY_MS, cpuSettleMs: CPU_SETTLE_MS, cpuWindowMs: CPU_WINDOW_MS, viewport: VIEWPORT, chromiumArgs: ARGS, serverArgs: SERVER_ARGS,
    chromium: '', loadavgAfter: /** @type {number[]} */ ([]), finished: '' };
  const server = await startServer({ args: SERVER_ARGS });
  /** @type {DelayRelay[]} */
  const relays = [];
  /** The origin the browsers reach a server at: through a delaying relay with --delay-ms. @param {number} port */
  const reach = async (port) => {
    if (DELAY_MS === 0) return `http://127.0.0.1:${port}`;
    const relay = await new DelayRelay(port, DELAY_MS).start();
    relays.push(relay);
    return relay.origin;
  };
  const appOrigin = await reach(server.port);
  const refProc = new Child('refserver', process.execPath, [path.join(REPO, 'tests/bench-join/refserver.js'), `${appOrigin.replace('http:', 'ws:')}/ws`], process.env);
  const refOrigin = await reach(Number(new URL(await refProc.waitLine((line) => (/^listening (http:\S+)$/.exec(line) ?? [])[1], 10_000, 'listening line')).port));
  const ref = { roomUrl: (/** @type {string} */ room) => `${refOrigin}/r/${encodeURIComponent(room)}` };
  /** @param {import('../e2e/lib/server.js').Server} s @param {string} origin */
  const via = (s, origin) => ({ roomUrl: (/** @type {string} */ room, /** @type {Record<string, string> | undefined} */ q) => s.roomUrl(room, q).replace(s.origin, origin) });
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS });
  meta.chromium = browser.version();
  const exclude = new Set(/** @type {number[]} */ ([server.proc.pid, refProc.proc.pid]));
  /** @type {any[]} */
  const results = [];
  /** @type {any[]} */
  const failures = [];
  /** @type {any[]} */
  const warmup = [];
  /** @type {import('../e2e/lib/server.js').Server | null} */
  let server2 = null;
  try {
    server2 = opt.app2 ? await startServer({ args: SERVER_ARGS, bin: opt.app2 }) : null;
    if (server2) exclude.add(/** @type {number} */ (server2.proc.pid));
    const targets = { app: via(server, appOrigin), ref, app2: server2 ? via(server2, await reach(server2.port)) : via(server, appOrigin) };
    // One unrecorded 2-person call of each kind first: the browser's first renderers, caches
    // and code would otherwise make whichever kind goes first look slower.
    for (const kind of KINDS) {
      const r = await runCall(browser, targets[kind], kind, 2, -1, false, exclude).catch((e) => {
        throw new Error(`warm-up call (${kind}, N=2) failed, so nothing was measured: ${e.message}\nserver log:\n${server.tail(15)}`);
      });
      warmup.push({ kind, totalMs: r.totalMs });
      console.error(`warm-up N=2 ${LABEL[kind]}: ${r.totalMs} ms (not counted)`);
    }
    for (let run = 0; run < RUNS; run++) {
      for (const n of CASES) {
        // Interleaved, and the order flips every run (app first, then reference first, ...).
        const order = run % 2 === 0 ? KINDS : [...KINDS].reverse();
        for (const kind of order) {
          try {
            const r = await runCall(browser, targets[kind], kind, n, run, n === CPU_CASE, exclude);
            results.push(r);
            console.error(`run ${run + 1}/${RUNS} N=${n} ${LABEL[kind]}: ${r.totalMs} ms${r.cpu ? `, renderer CPU per page ${r.cpu.pages.map((/** @type {any} */ p) => `${p.processPct}%`).join(' ')}` : ''}`);
          } catch (e) {
            const err = /** @type {Error} */ (e);
            failures.push({ kind, n, run, error: err.message });
            console.error(`run ${run + 1}/${RUNS} N=${n} ${kind}: FAILED: ${err.message}\nserver log:\n${server.tail(10)}`);
          }
        }
      }
    }
  } finally {
    await browser.close().catch(() => {});
    for (const r of relays) r.close();
    await refProc.stop();
    await server.stop();
    await server2?.stop();
  }
  meta.loadavgAfter = os.loadavg();
  meta.finished = new Date().toISOString();

  // Summary
  const of = (/** @type {string} */ kind, /** @type {number} */ n) => results.filter((r) => r.kind === kind && r.n === n);
  const summary = { total: /** @type {any[]} */ ([]), breakdown: /** @type {Record<string, any>} */ ({}), cpu: /** @type {any} */ (null) };
  const lines = [];
  lines.push(`join speed: ms from the last joiner's navigation start until every participant has painted every other's video (median of ${RUNS})`);
  lines.push(`| people | meshcall app | reference | ratio | runs (app/ref) |`);
  lines.push(`|---:|---:|---:|---:|---|`);
  for (const n of CASES) {
    const a = median(of('app', n).map((r) => r.totalMs));
    const b = median(of('ref', n).map((r) => r.totalMs));
    const ratio = a !== null && b ? Math.round((a / b) * 100) / 100 : null;
    summary.total.push({ n, appMs: a, refMs: b, ratio, app: of('app', n).map((r) => r.totalMs), ref: of('ref', n).map((r) => r.totalMs) });
    lines.push(`| ${n} | ${fmt(a)} ms | ${fmt(b)} ms | ${ratio ?? '-'}x | ${of('app', n).map((r) => r.totalMs).join(' ')} / ${of('ref', n).map((r) => r.totalMs).join(' ')} |`);
  }
  if (opt.app2) {
    lines.push('', `app2 (${opt.app2}), same runs: | people | app2 | app2 / reference | app2 / app | runs |`);
    for (const n of CASES) {
      const a2 = median(of('app2', n).map((r) => r.totalMs));
      const a = median(of('app', n).map((r) => r.totalMs));
      const b = median(of('ref', n).map((r) => r.totalMs));
      const q = (/** @type {number | null} */ x, /** @type {number | null} */ y) => (x !== null && y ? `${Math.round((x / y) * 100) / 100}x` : '-');
      lines.push(`| ${n} | ${fmt(a2)} ms | ${q(a2, b)} | ${q(a2, a)} | ${of('app2', n).map((r) => r.totalMs).join(' ')} |`);
    }
  }
  const steps = Object.keys(results[0]?.breakdown ?? {});
  lines.push('');
  lines.push('where the time goes: the last joiner, ms after its navigation start (medians; app / reference)');
  lines.push(`| step | ${CASES.map((n) => `N=${n}`).join(' | ')} |`);
  lines.push(`|---|${CASES.map(() => '---:').join('|')}|`);
  lines.push(`| (page.goto to navigation start, not counted) | ${CASES.map((n) => `${fmt(median(of('app', n).map((r) => r.gotoLagMs)))} / ${fmt(median(of('ref', n).map((r) => r.gotoLagMs)))}`).join(' | ')} |`);
  for (const s of steps) {
    const cells = CASES.map((n) => {
      const a = median(of('app', n).map((r) => r.breakdown[s]));
      const b = median(of('ref', n).map((r) => r.breakdown[s]));
      (summary.breakdown[s] ??= {})[n] = { app: a, ref: b };
      return `${fmt(a)} / ${fmt(b)}`;
    });
    lines.push(`| ${s} | ${cells.join(' | ')} |`);
  }
  const countKeys = Object.keys(results[0]?.counts ?? {});
  lines.push('');
  lines.push('signalling of the last joiner (medians; app / reference)');
  lines.push(`| count | ${CASES.map((n) => `N=${n}`).join(' | ')} |`);
  lines.push(`|---|${CASES.map(() => '---:').join('|')}|`);
  for (const c of countKeys) {
    lines.push(`| ${c} | ${CASES.map((n) => `${fmt(median(of('app', n).map((r) => r.counts[c])))} / ${fmt(median(of('ref', n).map((r) => r.counts[c])))}`).join(' | ')} |`);
  }
  const cpuRuns = (/** @type {string} */ kind) => of(kind, CPU_CASE).filter((r) => r.cpu);
  if (cpuRuns('app').length || cpuRuns('ref').length) {
    const keys = /** @type {const} */ (['processPct', 'mainThreadPct', 'taskPct', 'scriptPct', 'layoutStylePct', 'decodeWallPct', 'encodeWallPct', 'inFps', 'outFps', 'outKbps']);
    const perPage = (/** @type {string} */ kind, /** @type {string} */ k) => r1(median(cpuRuns(kind).flatMap((r) => r.cpu.pages.map((/** @type {any} */ p) => p[k]))));
    summary.cpu = { n: CPU_CASE, windowMs: CPU_WINDOW_MS, perPage: /** @type {Record<string, any>} */ ({}), browserTree: {} };
    lines.push('');
    lines.push(`renderer CPU in a steady ${CPU_CASE}-person call, per page (% of one core over ${CPU_WINDOW_MS / 1000} s after ${CPU_SETTLE_MS / 1000} s; median over every page of every run)`);
    lines.push('| figure | meshcall app | reference | ratio |');
    lines.push('|---|---:|---:|---:|');
    for (const k of keys) {
      const a = perPage('app', k);
      const b = perPage('ref', k);
      const ratio = a !== null && b ? Math.round((a / b) * 100) / 100 : null;
      summary.cpu.perPage[k] = { app: a, ref: b, ratio };
      lines.push(`| ${k} | ${a ?? '-'} | ${b ?? '-'} | ${ratio === null ? '-' : `${ratio}x`} |`);
    }
    const tree = (/** @type {string} */ kind) => r1(median(cpuRuns(kind).map((r) => r.cpu.browserTreePct)));
    const ta = tree('app');
    const tb = tree('ref');
    summary.cpu.browserTree = { app: ta, ref: tb, ratio: ta !== null && tb ? Math.round((ta / tb) * 100) / 100 : null };
    lines.push(`| whole Chromium (every process, /proc) | ${ta ?? '-'} | ${tb ?? '-'} | ${summary.cpu.browserTree.ratio ?? '-'}x |`);
    if (opt.app2 && cpuRuns('app2').length) {
      const a2 = (/** @type {string} */ k) => perPage('app2', k);
      lines.push(`| app2: processPct ${a2('processPct')}, mainThreadPct ${a2('mainThreadPct')}, taskPct ${a2('taskPct')}, scriptPct ${a2('scriptPct')}, layoutStylePct ${a2('layoutStylePct')}, encodeWallPct ${a2('encodeWallPct')}, outKbps ${a2('outKbps')}, whole Chromium ${tree('app2')} | | | |`);
    }
    // Picture sizes at the end of the window, the most frequent first (they explain encode and decode).
    const sizes = (/** @type {string} */ kind, /** @type {'inSizes' | 'outSizes'} */ k) => {
      /** @type {Record<string, number>} */
      const c = {};
      for (const r of cpuRuns(kind)) for (const p of r.cpu.pages) for (const x of p[k]) c[x] = (c[x] ?? 0) + 1;
      return Object.entries(c).sort((a, b) => b[1] - a[1]).map(([x, k]) => `${x} (${k})`).join(', ') || '-';
    };
    summary.cpu.sizes = { app: { in: sizes('app', 'inSizes'), out: sizes('app', 'outSizes') }, ref: { in: sizes('ref', 'inSizes'), out: sizes('ref', 'outSizes') } };
    lines.push(`| video received (size: streams) | ${summary.cpu.sizes.app.in} | ${summary.cpu.sizes.ref.in} | |`);
    lines.push(`| video sent (size: streams) | ${summary.cpu.sizes.app.out} | ${summary.cpu.sizes.ref.out} | |`);
    lines.push('processPct: the renderer process, every thread (CPU); mainThreadPct: its main thread (CPU); task, script, layoutStyle: main-thread CPU');
    lines.push('in tasks, script, layout + style recalc; decode/encodeWallPct: wall time frames spent in the decoders/encoders, summed over');
    lines.push('streams (can pass 100); in/outFps: frames decoded/encoded per second, summed over streams; outKbps: video sent');
  }
  lines.push('');
  const m = meta.machine;
  lines.push(`machine: ${m.cpus} x ${m.cpuModel}, ${m.memGiB} GiB, load average before ${meta.loadavgBefore.map((x) => x.toFixed(2)).join(' ')}, after ${meta.loadavgAfter.map((x) => x.toFixed(2)).join(' ')}; Chromium ${meta.chromium}; node ${m.node}; commit ${m.commit}${m.webUncommittedChanges ? ' (web/ has uncommitted changes)' : ''}; meshcall ${m.meshcallBin} (built ${m.meshcallBinModified})${meta.delayMs ? `; ${meta.delayMs} ms one way between browsers and servers (delay.js)` : ''}`);
  if (failures.length) lines.push(`FAILED runs: ${failures.length} (see the JSON)`);

  const stamp = started.toISOString().replace(/[:.]/g, '-').replace(/Z$/, '');
  const out = opt.out ?? path.join(REPO, 'artifacts/bench-join', `bench-join-${stamp}.json`);
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify({ meta, summary, failures, warmup, results }, null, 1)}\n`);
  console.log(lines.join('\n'));
  console.log(`raw figures: ${path.relative(process.cwd(), out)}`);
  return failures.length ? 1 : 0;
}

process.exitCode = await main();
