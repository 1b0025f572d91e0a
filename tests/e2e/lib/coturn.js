// Start and stop a real TURN server (coturn 4.6, Debian's `coturn` package) for a browser
// test, inside scripts/e2e's loopback-only namespace like everything else:
//
//   $TURNSERVER (default /usr/bin/turnserver) -n --listening-ip=127.0.0.1
//     --relay-ip=127.0.0.1 --listening-port=<free port> --use-auth-secret
//     --static-auth-secret=<random> --realm=meshcall --no-tls --no-dtls --no-cli
//     --no-rfc5780 --allow-loopback-peers --no-multicast-peers --fingerprint
//     --verbose --log-file=stdout --simple-log --pidfile=<tmp>/turnserver.pid --userdb=<tmp>/turndb
//
// `-n`: no /etc/turnserver.conf; `--userdb` and `--pidfile` in a fresh temporary folder, so
// nothing under /var or /run is touched. Ready when it answers a STUN Binding request on
// UDP. A lib/child.js Child: SIGKILLed if the test process exits early; stop() sends
// SIGTERM, SIGKILL after 5 s. Its log (stdout) is kept: the tests read the allocations, the
// users (meshcall's `<expiry>:<connection id>`) and the traffic from it.

import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Child } from './child.js';

export const TURNSERVER = process.env.TURNSERVER || '/usr/bin/turnserver';

/** A port free for both UDP and TCP on 127.0.0.1 (released again, for coturn to bind). */
async function freePort() {
  for (let attempt = 0; ; attempt++) {
    const udp = dgram.createSocket('udp4');
    const port = await new Promise((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(0, '127.0.0.1', () => resolve(udp.address().port));
    });
    const tcpFree = await new Promise((resolve) => {
      const s = net.createServer();
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    await new Promise((r) => udp.close(() => r(undefined)));
    if (tcpFree) return /** @type {number} */ (port);
    if (attempt > 20) throw new Error('no port free for both UDP and TCP on 127.0.0.1');
  }
}

/**
 * One STUN Binding request to 127.0.0.1:port over UDP; true if a Binding success response
 * with our transaction id comes back within `ms`.
 * @param {number} port @param {number} ms
 */
function stunPing(port, ms = 300) {
  return new Promise((resolve) => {
    const sock = dgram.createSocket('udp4');
    const tid = randomBytes(12);
    const req = Buffer.alloc(20);
    req.writeUInt16BE(0x0001, 0); // Binding request
    req.writeUInt16BE(0, 2); // no attributes
    req.writeUInt32BE(0x2112a442, 4); // magic cookie
    tid.copy(req, 8);
    /** @param {boolean} ok */
    const done = (ok) => {
      clearTimeout(timer);
      try { sock.close(); } catch { /* closed */ }
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), ms);
    sock.on('message', (msg) => {
      if (msg.length >= 20 && msg.readUInt16BE(0) === 0x0101 && msg.subarray(8, 20).equals(tid)) done(true);
    });
    sock.on('error', () => done(false));
    sock.send(req, port, '127.0.0.1');
  });
}

/** A running coturn. */
export class Coturn {
  /**
   * @param {Child} child
   * @param {number} port
   * @param {string} secret
   * @param {string} dir  its temporary folder (pid file, user db)
   * @param {string[]} args
   */
  constructor(child, port, secret, dir, args) {
    this.child = child;
    this.port = port;
    this.secret = secret;
    this.dir = dir;
    this.args = args;
    /** The URL to give meshcall's --turn. */
    this.url = `turn:127.0.0.1:${port}?transport=udp`;
  }

  /** Its log lines so far. */
  get log() {
    return this.child.log;
  }

  /** The command line, with the secret masked, for reports. */
  get commandLine() {
    return [TURNSERVER, ...this.args].join(' ').replace(this.secret, '<secret>');
  }

  /** Log lines from index `from` on (so a test looks only at its own part). */
  since(from = 0) {
    return this.log.slice(from);
  }

  /** The last log lines, for a failure message. */
  tail(n = 30) {
    return this.child.tail(n);
  }

  /** Stop politely (SIGTERM), SIGKILL after 5 s; remove its temporary folder. */
  async stop() {
    await this.child.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * Start coturn with a random shared secret on a free port of 127.0.0.1 and wait until it
 * answers STUN.
 * @param {{ timeoutMs?: number }} [opts]
 * @returns {Promise<Coturn>}
 */
export async function startCoturn({ timeoutMs = 10_000 } = {}) {
  if (!existsSync(TURNSERVER)) {
    throw new Error(`coturn not found at ${TURNSERVER}: apt-get install -y --no-install-recommends coturn (./scripts/test does), or set TURNSERVER`);
  }
  const port = await freePort();
  const secret = randomBytes(24).toString('hex');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meshcall-coturn-'));
  const args = [
    '-n',
    '--listening-ip=127.0.0.1', '--relay-ip=127.0.0.1', `--listening-port=${port}`,
    '--use-auth-secret', `--static-auth-secret=${secret}`, '--realm=meshcall',
    '--no-tls', '--no-dtls', '--no-cli', '--no-rfc5780',
    '--allow-loopback-peers', '--no-multicast-peers', '--fingerprint',
    '--verbose', '--log-file=stdout', '--simple-log',
    `--pidfile=${path.join(dir, 'turnserver.pid')}`, `--userdb=${path.join(dir, 'turndb')}`,
  ];
  // A verbose log: keep all of a test's part of it (the tests read it from an index on).
  const child = new Child('coturn', TURNSERVER, args, process.env, { keep: 20_000 });
  const turn = new Coturn(child, port, secret, dir, args);
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (child.exit) {
      await turn.stop();
      throw new Error(`coturn exited before answering (${JSON.stringify(child.exit)}):\n${turn.commandLine}\n${turn.tail()}`);
    }
    if (await stunPing(port)) return turn;
    if (Date.now() > end) {
      await turn.stop();
      throw new Error(`coturn did not answer STUN on 127.0.0.1:${port} within ${timeoutMs} ms:\n${turn.commandLine}\n${turn.tail()}`);
    }
  }
}
