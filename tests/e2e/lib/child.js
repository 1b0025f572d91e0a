// A process a browser test starts besides meshcall itself (moto, meshcall-gateway, coturn):
// its output lines are kept for the test and for failure reports, it can be waited on for a
// line, and it is remembered (lib/server.js) so that it is SIGKILLed if the test process
// exits early.

import { spawn } from 'node:child_process';
import { remember } from './server.js';

/**
 * A child process whose output lines are kept (the last `keep`, 2000 unless told) and can be
 * watched; stdout lines are kept with an `[out] ` prefix.
 */
export class Child {
  /**
   * @param {string} name  for messages
   * @param {string} bin
   * @param {string[]} args
   * @param {NodeJS.ProcessEnv} env
   * @param {{ keep?: number }} [opts]
   */
  constructor(name, bin, args, env, { keep = 2000 } = {}) {
    this.name = name;
    this.proc = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    this.forget = remember(this.proc);
    /** @type {string[]} */
    this.log = [];
    /** @type {((line: string, stream: 'stdout' | 'stderr') => void)[]} */
    this.watchers = [];
    this.exited = new Promise((resolve) => {
      this.proc.once('exit', (code, signal) => resolve({ code, signal }));
      this.proc.once('error', (e) => { this.log.push(`spawn error: ${e.message}`); resolve({ code: null, signal: null }); });
    });
    /** @type {{ code: number | null, signal: string | null } | null} */
    this.exit = null;
    this.exited.then((e) => { this.exit = /** @type {any} */ (e); });
    for (const stream of /** @type {const} */ (['stdout', 'stderr'])) {
      let buf = '';
      this.proc[stream]?.on('data', (/** @type {Buffer} */ chunk) => {
        buf += chunk.toString('utf8');
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          this.log.push(stream === 'stdout' ? `[out] ${line}` : line);
          if (this.log.length > keep) this.log.splice(0, keep / 2);
          for (const w of this.watchers) w(line, stream);
        }
      });
    }
  }

  /**
   * Resolves with fn's first non-undefined answer for an output line; rejects if the
   * process exits first or after timeoutMs.
   * @template T
   * @param {(line: string, stream: 'stdout' | 'stderr') => T | undefined} fn
   * @param {number} timeoutMs
   * @param {string} what
   * @returns {Promise<T>}
   */
  waitLine(fn, timeoutMs, what) {
    return new Promise((resolve, reject) => {
      /** @param {string} line @param {'stdout' | 'stderr'} stream */
      const watcher = (line, stream) => {
        const v = fn(line, stream);
        if (v !== undefined) done(null, v);
      };
      const timer = setTimeout(() => done(new Error(`${this.name}: no ${what} within ${timeoutMs} ms:\n${this.tail(40)}`)), timeoutMs);
      this.exited.then(() => done(new Error(`${this.name} exited (${JSON.stringify(this.exit)}) before ${what}:\n${this.tail(40)}`)));
      let finished = false;
      /** @param {Error | null} err @param {T} [v] */
      const done = (err, v) => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        this.watchers = this.watchers.filter((w) => w !== watcher);
        if (err) reject(err); else resolve(/** @type {T} */ (v));
      };
      this.watchers.push(watcher);
    });
  }

  /** SIGTERM, SIGKILL after graceMs; waits for the exit. */
  async stop(graceMs = 5_000) {
    if (this.exit === null && this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill('SIGTERM');
      const timer = setTimeout(() => this.proc.kill('SIGKILL'), graceMs);
      await this.exited;
      clearTimeout(timer);
    }
    this.forget();
  }

  /** @param {number} n */
  tail(n = 30) {
    return this.log.slice(-n).join('\n');
  }
}
