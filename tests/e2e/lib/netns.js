// Links with conditions, for the network tests: network namespaces made by the test itself
// (inside scripts/e2e's loopback-only namespace, so nothing here can reach any real
// network), each joined by a veth pair to one bridge in the test's own namespace, where the
// server runs. A browser started in a namespace (launchChromiumIn) sends everything through
// that namespace's `eth0`, whose egress can be shaped (the person's uplink):
//
//   test namespace: meshcall on 10.21.0.1, bridge mc-br0
//     ├── veth ── namespace mc-<name>: eth0 10.21.0.<n>  (one browser)
//     └── veth ── namespace mc-<name>: ...
//
// This kernel has no netem (shared/browser-testing.md, "Shaping links"): the rate is a tbf
// qdisc on the host's eth0; loss an iptables `statistic` rule in the INPUT chain of every
// other namespace (the receivers' and the server's), for packets from the host's address:
// a DROP in the sender's own OUTPUT chain fails the browser's send() with EPERM, which
// WebRTC takes as "not sent" (no packet is lost: measured, no NACK at all); a cut is its
// eth0 set down (the browser sees its interface go, as on a real network change).
// The page is loaded from http://10.21.0.1, which Chromium treats as a secure context only
// when told (--unsafely-treat-insecure-origin-as-secure), so getUserMedia works.

import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

export const SERVER_ADDR = '10.21.0.1';
const BRIDGE = 'mc-br0';

/** @param {string[]} args */
function ip(...args) {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Run a command inside namespace `ns`. @param {string} ns @param {string[]} cmd */
function inNs(ns, ...cmd) {
  execFileSync('ip', ['netns', 'exec', ns, ...cmd], { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** The bridge (and the server's address on it); idempotent. */
function ensureBridge() {
  try {
    ip('link', 'show', BRIDGE);
    return;
  } catch { /* not there yet */ }
  ip('link', 'add', BRIDGE, 'type', 'bridge');
  ip('addr', 'add', `${SERVER_ADDR}/24`, 'dev', BRIDGE);
  ip('link', 'set', BRIDGE, 'up');
}

let made = 0;
/** @type {Set<Host>} */
const hosts = new Set();

/** One participant's network: a namespace with one link to the bridge. */
export class Host {
  /** @param {string} name  short, [a-z0-9] */
  constructor(name) {
    ensureBridge();
    made += 1;
    // Unique: a namespace's name is a file in /run/netns, which outlives a run that is
    // killed before it could remove it.
    this.ns = `mc-${name}-${process.pid}-${Math.random().toString(36).slice(2, 6)}`;
    this.addr = `10.21.0.${10 + made}`;
    const outer = `mcv${made}`;
    ip('netns', 'add', this.ns);
    ip('link', 'add', outer, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', this.ns);
    ip('link', 'set', outer, 'master', BRIDGE);
    ip('link', 'set', outer, 'up');
    inNs(this.ns, 'ip', 'link', 'set', 'lo', 'up');
    inNs(this.ns, 'ip', 'addr', 'add', `${this.addr}/24`, 'dev', 'eth0');
    inNs(this.ns, 'ip', 'link', 'set', 'eth0', 'up');
    /** @type {string | null} */
    this.tmp = null;
    /** @type {string[][]} the loss rules this host's shape added (iptables arguments after -A) */
    this.lossRules = [];
    hosts.add(this);
  }

  /**
   * Shape the uplink (what leaves eth0): `rateKbit` through a token bucket, and `lossPct` of
   * the packets dropped at random.
   * @param {{ rateKbit?: number, lossPct?: number }} o
   */
  shape({ rateKbit, lossPct }) {
    if (rateKbit) {
      inNs(this.ns, 'tc', 'qdisc', 'replace', 'dev', 'eth0', 'root', 'tbf', 'rate', `${rateKbit}kbit`, 'burst', '32kbit', 'latency', '400ms');
    }
    if (lossPct) {
      const rule = ['INPUT', '-s', this.addr, '-m', 'statistic', '--mode', 'random',
        '--probability', String(lossPct / 100), '-j', 'DROP'];
      execFileSync('iptables', ['-A', ...rule], { stdio: ['ignore', 'ignore', 'pipe'] });
      for (const h of hosts) if (h !== this) inNs(h.ns, 'iptables', '-A', ...rule);
      this.lossRules.push(rule);
    }
  }

  /** Back to an unshaped link. */
  unshape() {
    try { inNs(this.ns, 'tc', 'qdisc', 'del', 'dev', 'eth0', 'root'); } catch { /* none */ }
    for (const rule of this.lossRules.splice(0)) {
      try { execFileSync('iptables', ['-D', ...rule], { stdio: ['ignore', 'ignore', 'pipe'] }); } catch { /* gone */ }
      for (const h of hosts) {
        if (h !== this) try { inNs(h.ns, 'iptables', '-D', ...rule); } catch { /* gone */ }
      }
    }
  }

  /** Take the link down (the interface goes), or up again. @param {boolean} down */
  cut(down) {
    inNs(this.ns, 'ip', 'link', 'set', 'eth0', down ? 'down' : 'up');
  }

  /**
   * A new address on the link (as a phone moving from Wi-Fi to mobile data gets): the old
   * one goes, so every ICE pair and socket bound to it is dead for good.
   */
  move() {
    made += 1;
    this.addr = `10.21.0.${10 + made}`;
    inNs(this.ns, 'ip', 'addr', 'flush', 'dev', 'eth0');
    inNs(this.ns, 'ip', 'addr', 'add', `${this.addr}/24`, 'dev', 'eth0');
  }

  /**
   * A Chromium that runs in this namespace (a wrapper script enters it; Playwright talks to
   * the browser over a pipe, which crosses namespaces).
   * @param {string} executable  the Chromium binary
   * @param {string[]} args  its flags (the tests' or the benchmark's, plus e.g. a camera file)
   */
  async launchChromium(executable, args) {
    this.tmp ??= mkdtempSync(path.join(os.tmpdir(), 'meshcall-netns-'));
    const wrapper = path.join(this.tmp, 'chromium');
    writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${this.ns} ${executable} "$@"\n`);
    chmodSync(wrapper, 0o755);
    return chromium.launch({ executablePath: wrapper, headless: true, args });
  }

  /** Remove the namespace (its veth goes with it). */
  remove() {
    this.unshape();
    hosts.delete(this);
    try { ip('netns', 'del', this.ns); } catch { /* gone */ }
    // The last one takes the bridge with it: the test's namespace must be loopback-only
    // again for the tests that follow (its address would give their browsers candidates).
    if (hosts.size === 0) {
      try { ip('link', 'del', BRIDGE); } catch { /* gone */ }
    }
    if (this.tmp) rmSync(this.tmp, { recursive: true, force: true });
  }
}

/**
 * The flag that lets pages from the server's bridge address use the camera.
 * @param {...number} ports  the servers' ports on SERVER_ADDR
 */
export function secureOriginArg(...ports) {
  return `--unsafely-treat-insecure-origin-as-secure=${ports.map((p) => `http://${SERVER_ADDR}:${p}`).join(',')}`;
}

/**
 * A y4m file (I420) whose picture is hard to compress: moving bars over per-frame noise,
 * so the encoder wants more than a thin uplink carries (Chromium's own fake camera sends
 * 0.3-0.5 Mbit/s, under any limit worth testing). Chromium loops it.
 * @param {string} file
 * @param {{ width?: number, height?: number, fps?: number, frames?: number }} [o]
 */
export function writeBusyY4m(file, { width = 640, height = 360, fps = 20, frames = 40 } = {}) {
  const header = Buffer.from(`YUV4MPEG2 W${width} H${height} F${fps}:1 Ip A1:1 C420jpeg\n`);
  const ySize = width * height;
  const cSize = (width / 2) * (height / 2);
  const parts = [header];
  let seed = 12345;
  const rnd = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed >> 16;
  };
  for (let f = 0; f < frames; f++) {
    const frame = Buffer.alloc(6 + ySize + 2 * cSize);
    frame.write('FRAME\n', 0);
    const y = frame.subarray(6, 6 + ySize);
    for (let r = 0; r < height; r++) {
      for (let c = 0; c < width; c++) {
        const bar = Math.floor((c + f * 16) / 40) % 2 ? 180 : 60;
        y[r * width + c] = Math.max(0, Math.min(255, bar + (rnd() % 64) - 32));
      }
    }
    const u = frame.subarray(6 + ySize, 6 + ySize + cSize);
    const v = frame.subarray(6 + ySize + cSize);
    for (let i = 0; i < cSize; i++) {
      u[i] = 128 + ((i + f * 8) % 64) - 32;
      v[i] = 128 + (rnd() % 32) - 16;
    }
    parts.push(frame);
  }
  writeFileSync(file, Buffer.concat(parts));
}
