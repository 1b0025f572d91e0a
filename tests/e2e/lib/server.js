// Start and stop the real `meshcall` binary for a browser test.
//
// The binary comes from $MESHCALL_BIN (scripts/e2e sets it), else target/debug/meshcall.
// It listens on 127.0.0.1 and port 0 unless told otherwise; the port is read from its log
// line `meshcall listening addr=127.0.0.1:PORT` on stderr. Every server started here is
// remembered and killed when the test process exits, whatever happens.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const BIN = process.env.MESHCALL_BIN || path.join(REPO, 'target/debug/meshcall');

/** @type {Set<import('node:child_process').ChildProcess>} */
const live = new Set();
process.on('exit', () => {
  for (const p of live) {
    try { p.kill('SIGKILL'); } catch { /* already gone */ }
  }
});

/**
 * Remember a child process so that it is SIGKILLed when the test process exits, whatever
 * happens (lib/child.js does, for moto, meshcall-gateway and coturn).
 * @param {import('node:child_process').ChildProcess} proc
 * @returns {() => void} forgets it again (once it has exited)
 */
export function remember(proc) {
  live.add(proc);
  return () => { live.delete(proc); };
}

const LISTENING = /meshcall listening( \(https\))? addr=[0-9.]+:(\d+)/;

/**
 * A running meshcall server.
 */
export class Server {
  /**
   * @param {import('node:child_process').ChildProcess} proc
   * @param {number} port
   * @param {string[]} log  stderr lines, kept for failure reports
   * @param {boolean} [https]  the server speaks TLS (`--tls-self-signed`, `--tls-cert`)
   * @param {string} [host]  the address it listens on
   */
  constructor(proc, port, log, https = false, host = '127.0.0.1') {
    this.proc = proc;
    this.port = port;
    this.log = log;
    this.origin = `${https ? 'https' : 'http'}://${host}:${port}`;
    this.exited = new Promise((resolve) => {
      if (proc.exitCode !== null || proc.signalCode !== null) resolve(undefined);
      else proc.once('exit', () => resolve(undefined));
    });
  }

  /** @param {string} room @param {Record<string,string>} [query] */
  roomUrl(room, query = {}) {
    const q = new URLSearchParams(query).toString();
    return `${this.origin}/r/${encodeURIComponent(room)}${q ? `?${q}` : ''}`;
  }

  /** Kill at once (default SIGKILL: no close frames, no goodbye) and wait for the exit. */
  async kill(signal = 'SIGKILL') {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill(signal);
    await this.exited;
    live.delete(this.proc);
  }

  /** Stop politely (SIGTERM), SIGKILL after 5 s. */
  async stop() {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) {
      live.delete(this.proc);
      return;
    }
    this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 5_000);
    await this.exited;
    clearTimeout(timer);
    live.delete(this.proc);
  }

  /** GET /metrics, as { 'name{labels}': value }. */
  async metrics() {
    const text = await (await fetch(`${this.origin}/metrics`)).text();
    /** @type {Record<string, number>} */
    const out = {};
    for (const line of text.split('\n')) {
      const m = /^([a-z_]+(?:\{[^}]*\})?) (\S+)$/.exec(line);
      if (m) out[m[1]] = Number(m[2]);
    }
    return out;
  }

  /** The last log lines, for a failure message. */
  tail(n = 30) {
    return this.log.slice(-n).join('\n');
  }
}

/**
 * Start meshcall and wait until it listens.
 * @param {{ port?: number, args?: string[], timeoutMs?: number, bin?: string, host?: string }} [opts]  bin: another
 *   meshcall binary than BIN; host: the address to listen on (lib/netns.js's bridge)
 * @returns {Promise<Server>}
 */
export function startServer({ port = 0, args = [], timeoutMs = 10_000, bin = BIN, host = '127.0.0.1' } = {}) {
  if (!existsSync(bin)) {
    throw new Error(`meshcall binary not found at ${bin}: run \`cargo build -p meshcall\` or set MESHCALL_BIN`);
  }
  const proc = spawn(bin, ['--listen', `${host}:${port}`, ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, MESHCALL_LOG_FORMAT: 'text', RUST_LOG: process.env.RUST_LOG || 'info' },
  });
  live.add(proc);
  /** @type {string[]} */
  const log = [];
  return new Promise((resolve, reject) => {
    let buf = '';
    let done = false;
    const timer = setTimeout(() => finish(new Error(`meshcall did not report listening within ${timeoutMs} ms:\n${log.join('\n')}`)), timeoutMs);
    /** @param {Error | null} err @param {number} [p] @param {boolean} [https] */
    function finish(err, p, https = false) {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) {
        proc.kill('SIGKILL');
        live.delete(proc);
        reject(err);
      } else {
        resolve(new Server(proc, /** @type {number} */ (p), log, https, host));
      }
    }
    /** @param {Buffer} chunk */
    const onData = (chunk) => {
      buf += chunk.toString('utf8');
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        log.push(line);
        if (log.length > 2000) log.splice(0, 1000);
        const m = LISTENING.exec(line);
        if (m) finish(null, Number(m[2]), !!m[1]);
      }
    };
    proc.stderr?.on('data', onData);
    proc.once('error', (e) => finish(e));
    proc.once('exit', (code, sig) => finish(new Error(`meshcall exited (code ${code}, signal ${sig}) before listening:\n${log.join('\n')}`)));
  });
}
