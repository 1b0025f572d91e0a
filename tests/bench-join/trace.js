// Where the newcomer's renderer main thread goes during a join (issue 12; not part of
// ./scripts/test): one meshcall (MESHCALL_BIN, release), N - 1 pages already in a room, then a
// traced newcomer. Prints the main thread's tasks from navigation start until the first
// offer is sent, longest first, each with what it mostly ran, and the busy share of that
// window. Run it as scripts/bench-join runs its harness, inside a loopback-only namespace:
//
//   unshare -n sh -c 'ip link set lo up && MESHCALL_BIN=target/release/meshcall \
//     node tests/bench-join/trace.js [N] [--js]'
//
// --js: a V8 CPU profile instead of the trace (sampled every 100 µs): the page's functions by
// inclusive time until the first offer, and by self time. --js-member: the same of the first
// page already in the call, over the newcomer's window. Self times are wall time: on two
// cores a thread the OS has put aside still counts for the function it was in.
// --until connected: the window ends when every peer connection of the newcomer is connected
// instead of at its first offer (the step times printed say when each answer was applied);
// --until frame: when the newcomer has painted a frame from each (instrument.js's criterion).
//
// Chromium's trace (`devtools.timeline`, `v8`) is written to artifacts/bench-join/trace.json.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { REPO, startServer } from '../e2e/lib/server.js';
import { instrument } from './instrument.js';
import { ARGS, CHROMIUM, SERVER_ARGS, VIEWPORT } from './setup.js';

const N = Number(process.argv[2] ?? 2);
const untilArg = process.argv.indexOf('--until');
const UNTIL = untilArg > 0 ? process.argv[untilArg + 1] : 'offer';
if (!['offer', 'connected', 'frame'].includes(UNTIL)) throw new Error('--until offer|connected|frame');
const server = await startServer({ args: SERVER_ARGS });
const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS });
const room = `trace-${Date.now()}`;
const url = `${server.origin}/r/${room}`;
try {
  /** @type {import('playwright-core').Page[]} */
  const members = [];
  for (let i = 0; i < N - 1; i++) {
    const page = await (await browser.newContext({ viewport: VIEWPORT })).newPage();
    members.push(page);
    await page.goto(url);
    await page.waitForFunction(() => document.querySelectorAll('#grid .tile').length >= 1, null, { timeout: 15_000 });
  }
  // Let the others settle into their call.
  await new Promise((r) => setTimeout(r, 3000));
  const page = await (await browser.newContext({ viewport: VIEWPORT })).newPage();
  // When the first offer goes out, each answer is applied and each connection connects, as
  // seen by the page (before any of its own scripts run).
  await page.addInitScript((n) => {
    const w = /** @type {any} */ (window);
    w.__steps = [];
    const orig = RTCPeerConnection.prototype.setLocalDescription;
    RTCPeerConnection.prototype.setLocalDescription = function (...a) {
      if (!('__firstOffer' in window)) {
        w.__firstOffer = performance.now();
        console.debug('__trace:__firstOffer');
      }
      return orig.apply(this, /** @type {any} */ (a));
    };
    const remote = RTCPeerConnection.prototype.setRemoteDescription;
    RTCPeerConnection.prototype.setRemoteDescription = function (...a) {
      w.__steps.push([`setRemoteDescription ${a[0]?.type}`, performance.now()]);
      return remote.apply(this, /** @type {any} */ (a));
    };
    let connected = 0;
    const Real = RTCPeerConnection;
    w.RTCPeerConnection = function (/** @type {RTCConfiguration} */ c) {
      const pc = new Real(c);
      pc.addEventListener('connectionstatechange', () => {
        if (pc.connectionState !== 'connected') return;
        w.__steps.push(['connected', performance.now()]);
        if (++connected === n - 1) {
          w.__allConnected = performance.now();
          console.debug('__trace:__allConnected');
        }
      });
      return pc;
    };
    w.RTCPeerConnection.prototype = Real.prototype;
  }, N);
  // --until frame: instrument.js (as the benchmark's) tells on the console each time a peer's
  // first frame is painted; the window ends at the latest of the N - 1 frames.
  if (UNTIL === 'frame') await page.addInitScript(instrument);
  const endName = { offer: '__firstOffer', connected: '__allConnected', frame: '__allPainted' }[UNTIL];
  // Told on the console: waitForFunction would compile Playwright's injected script in the
  // traced page in the middle of the join (80-100 ms of its main thread).
  const ended = page.waitForEvent('console', {
    predicate: (m) => UNTIL === 'frame'
      ? m.text().startsWith('__bench:status ') && JSON.parse(m.text().slice('__bench:status '.length)).frames >= N - 1
      : m.text() === `__trace:${endName}`,
    timeout: 15_000,
  });
  /** The window's end, and the steps recorded until then (ms after navigation start). */
  const ending = async () => {
    await ended;
    if (UNTIL === 'frame') {
      await page.evaluate(() => {
        const w = /** @type {any} */ (window);
        // instrument.js keeps Date.now() times: back to this page's performance.now() clock.
        w.__allPainted = Math.max(...w.__bench.pcs.map((/** @type {any} */ p) => p.frame)) - (Date.now() - performance.now());
      });
    }
    const { end, steps } = await page.evaluate((k) => ({ end: /** @type {any} */ (window)[k], steps: /** @type {any} */ (window).__steps }), endName);
    const firstOffer = await page.evaluate(() => /** @type {any} */ (window).__firstOffer);
    console.log(`steps: first offer ${firstOffer.toFixed(0)}, ${steps.map(([k, v]) => `${k} ${v.toFixed(0)}`).join(', ')} (ms)`);
    return end;
  };
  const jsMember = process.argv.includes('--js-member');
  if (process.argv.includes('--js') || jsMember) {
    // --js-member: the profile is the first member's (already in the call) during the
    // newcomer's join, over the same window.
    const cdp = await (jsMember ? members[0] : page).context().newCDPSession(jsMember ? members[0] : page);
    await cdp.send('Profiler.enable');
    await cdp.send('Profiler.setSamplingInterval', { interval: 100 });
    await cdp.send('Profiler.start');
    await page.goto(url);
    const end = await ending();
    const { profile } = await cdp.send('Profiler.stop');
    functions(profile, end);
    process.exit(0);
  }
  // TRACE_CATEGORIES (comma-separated) adds categories, e.g. 'blink,fonts' or
  // 'disabled-by-default-v8.cpu_profiler' (JS samples of every renderer, the others' too).
  const extra = (process.env.TRACE_CATEGORIES ?? '').split(',').filter(Boolean);
  await browser.startTracing(page, { categories: ['devtools.timeline', 'v8', 'disabled-by-default-devtools.timeline', 'blink.user_timing', ...extra] });
  await page.goto(url);
  const end = await ending();
  await new Promise((r) => setTimeout(r, 200));
  const trace = JSON.parse((await browser.stopTracing()).toString());
  const dir = path.join(REPO, 'artifacts/bench-join');
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'trace.json'), JSON.stringify(trace));
  summarize(trace.traceEvents, end);
} finally {
  await browser.close();
  server.proc.kill('SIGTERM');
}

/**
 * The page's functions by inclusive and self time in the CPU profile, up to the window's end.
 * @param {any} profile @param {number} endMs
 */
function functions(profile, endMs) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const label = (n) => {
    const f = n.callFrame;
    const file = f.url ? f.url.replace(/^.*\//, '') : '';
    return `${f.functionName || '(anonymous)'} ${file}${file ? `:${f.lineNumber + 1}` : ''}`;
  };
  // Samples are kept up to the first offer, counted from the profile's start (µs): the
  // profile starts just before the navigation, so this keeps up to 50 ms more at most.
  const inclusive = new Map();
  const self = new Map();
  let t = profile.startTime;
  let counted = 0;
  const endUs = profile.startTime + (endMs + 50) * 1000; // navigation starts just after the profile
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i];
    if (t > endUs) break;
    const dt = profile.timeDeltas[i + 1] ?? 0;
    const n = byId.get(profile.samples[i]);
    const name = label(n);
    if (name.startsWith('(idle)')) continue;
    counted += dt;
    self.set(name, (self.get(name) ?? 0) + dt);
    const seen = new Set();
    for (let id = n.id; id !== undefined; id = parent.get(id)) {
      const l = label(byId.get(id));
      if (seen.has(l)) continue;
      seen.add(l);
      inclusive.set(l, (inclusive.get(l) ?? 0) + dt);
    }
  }
  console.log(`newcomer of ${N}: ${{ offer: 'first offer', connected: 'all connected', frame: 'all painted' }[UNTIL]} at ${endMs.toFixed(0)} ms; ${(counted / 1000).toFixed(0)} ms not idle in the CPU profile until then`);
  const show = (title, m) => {
    console.log(title);
    for (const [k, v] of [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, 30)) console.log(`  ${(v / 1000).toFixed(1).padStart(7)} ms  ${k}`);
  };
  show('inclusive:', inclusive);
  show('self:', self);
}

/** @param {any[]} events @param {number} endMs */
function summarize(events, endMs) {
  // The traced page's renderer main thread: the one with the navigationStart mark.
  const nav = events.find((e) => e.name === 'navigationStart' && e.args?.data?.isLoadingMainFrame);
  if (!nav) throw new Error('no navigationStart in the trace');
  const main = events.filter((e) => e.pid === nav.pid && e.tid === nav.tid);
  const t0 = nav.ts;
  const end = t0 + endMs * 1000;
  const tasks = main.filter((e) => e.ph === 'X' && e.name === 'RunTask' && e.ts >= t0 && e.ts <= end);
  let busy = 0;
  const rows = [];
  for (const t of tasks) {
    busy += t.dur;
    // What the task ran: its longest children by name (one level of the interesting ones).
    const inside = main.filter((e) => e.ph === 'X' && e !== t && e.ts >= t.ts && e.ts + (e.dur ?? 0) <= t.ts + t.dur);
    const by = new Map();
    for (const e of inside) {
      const label = e.name === 'EvaluateScript' || e.name === 'v8.compileModule' || e.name === 'v8.evaluateModule' || e.name === 'FunctionCall'
        ? `${e.name} ${(e.args?.data?.url || e.args?.data?.functionName || '').replace(/^.*\//, '')}`
        : e.name;
      by.set(label, Math.max(by.get(label) ?? 0, e.dur));
    }
    const top = [...by.entries()].sort((a, b) => b[1] - a[1]).slice(0, 4).map(([k, v]) => `${k} ${(v / 1000).toFixed(1)}`);
    rows.push({ at: (t.ts - t0) / 1000, dur: t.dur / 1000, top });
  }
  console.log(`newcomer of ${N}: ${{ offer: 'first offer', connected: 'all connected', frame: 'all painted' }[UNTIL]} at ${endMs.toFixed(0)} ms; main thread busy ${(busy / 1000).toFixed(0)} ms of it (${tasks.length} tasks)`);
  for (const r of rows.sort((a, b) => b.dur - a.dur).slice(0, 25)) {
    console.log(`  at ${r.at.toFixed(0).padStart(5)} ms  ${r.dur.toFixed(1).padStart(6)} ms  ${r.top.join(' | ')}`);
  }
  const marks = main.filter((e) => e.cat?.includes('blink.user_timing') && e.ts >= t0 && e.ts <= end);
  for (const m of marks) console.log(`  mark ${m.name} at ${((m.ts - t0) / 1000).toFixed(0)} ms`);
}
