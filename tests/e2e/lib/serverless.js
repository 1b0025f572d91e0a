// Start and stop meshcall's serverless path on this machine, for a browser test: moto's
// DynamoDB, then meshcall-gateway (a local API Gateway WebSocket + Lambda service) running
// the real Lambda bootstrap against it. Both are started from the test, so that they run in
// scripts/e2e's loopback-only namespace like everything else.
//
//   moto        $MESHCALL_MOTO_PYTHON (default .venv-aws/bin/python, made by ./scripts/test)
//               crates/aws/tests/moto_server.py -H 127.0.0.1 -p <free port>; ready when
//               GET /moto-api/ answers 200
//   gateway     $MESHCALL_GATEWAY_BIN (default $CARGO_TARGET_DIR/debug/meshcall-gateway)
//               --listen 127.0.0.1:0 --create-table --table e2e-<n> --bootstrap
//               $MESHCALL_BOOTSTRAP_BIN (default $CARGO_TARGET_DIR/debug/bootstrap), with
//               AWS_ENDPOINT_URL at moto (--create-table also makes the SQS expiry queue
//               and the SSM secret parameters there); its first stdout line is `listening
//               on http://127.0.0.1:PORT`; ready once every warm instance has polled for
//               work. It runs with its strict defaults (concurrent invocations, 10 s
//               function timeout, sweep every minute, more instances on demand).
//
// Both are lib/child.js Children: SIGKILLed if the test process exits early; stop()
// sends SIGTERM (the gateway stops its bootstrap processes) and SIGKILL after 5 s. Their
// output is kept for failure reports.

import { existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Child } from './child.js';
import { REPO } from './server.js';

const TARGET = path.resolve(REPO, process.env.CARGO_TARGET_DIR || 'target');
export const GATEWAY_BIN = process.env.MESHCALL_GATEWAY_BIN || path.join(TARGET, 'debug/meshcall-gateway');
export const BOOTSTRAP_BIN = process.env.MESHCALL_BOOTSTRAP_BIN || path.join(TARGET, 'debug/bootstrap');
export const MOTO_PYTHON = process.env.MESHCALL_MOTO_PYTHON || path.join(REPO, '.venv-aws/bin/python');
const MOTO_SCRIPT = path.join(REPO, 'crates/aws/tests/moto_server.py');

/** A free TCP port on 127.0.0.1 (closed again at once, for a child to bind). */
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = /** @type {net.AddressInfo} */ (s.address());
      s.close(() => resolve(port));
    });
  });
}

/** @param {number} ms */
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** moto's server on 127.0.0.1 (DynamoDB and the rest, in memory). */
export class Moto {
  /** @param {Child} child @param {number} port */
  constructor(child, port) {
    this.child = child;
    this.port = port;
    this.url = `http://127.0.0.1:${port}`;
  }

  stop() {
    return this.child.stop();
  }

  /** @param {number} n */
  tail(n = 30) {
    return this.child.tail(n);
  }
}

/**
 * Start moto and wait until GET /moto-api/ answers 200.
 * @param {{ timeoutMs?: number }} [opts]
 * @returns {Promise<Moto>}
 */
export async function startMoto({ timeoutMs = 30_000 } = {}) {
  if (!existsSync(MOTO_PYTHON)) {
    throw new Error(`no python with moto at ${MOTO_PYTHON}: run ./scripts/test once (it makes .venv-aws), or set MESHCALL_MOTO_PYTHON`);
  }
  const port = await freePort();
  const child = new Child('moto', MOTO_PYTHON, [MOTO_SCRIPT, '-H', '127.0.0.1', '-p', String(port)], { ...process.env, PYTHONUNBUFFERED: '1' });
  const moto = new Moto(child, port);
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (child.exit) throw new Error(`moto exited (${JSON.stringify(child.exit)}) before it answered:\n${child.tail(40)}`);
    try {
      const r = await fetch(`${moto.url}/moto-api/`, { signal: AbortSignal.timeout(2_000) });
      await r.arrayBuffer();
      if (r.status === 200) return moto;
    } catch { /* not listening yet */ }
    if (Date.now() > end) {
      await child.stop();
      throw new Error(`moto did not answer at ${moto.url}/moto-api/ within ${timeoutMs} ms:\n${child.tail(40)}`);
    }
    await sleep(100);
  }
}

/**
 * A running meshcall-gateway: a server the browser helpers (lib/call.js) can use, like
 * lib/server.js's Server (origin, roomUrl, tail), plus the gateway's own endpoints.
 */
export class Gateway {
  /** @param {Child} child @param {number} port @param {string} table @param {Moto} moto */
  constructor(child, port, table, moto) {
    this.child = child;
    this.port = port;
    this.table = table;
    this.moto = moto;
    this.origin = `http://127.0.0.1:${port}`;
  }

  /** @param {string} room @param {Record<string,string>} [query] */
  roomUrl(room, query = {}) {
    const q = new URLSearchParams(query).toString();
    return `${this.origin}/r/${encodeURIComponent(room)}${q ? `?${q}` : ''}`;
  }

  /** GET /_gateway/stats. */
  async stats() {
    const r = await fetch(`${this.origin}/_gateway/stats`);
    if (r.status !== 200) throw new Error(`GET /_gateway/stats: ${r.status} ${await r.text()}`);
    return /** @type {GatewayStats} */ (await r.json());
  }

  /**
   * Poll GET /_gateway/idle until nothing is queued or running and no $disconnect is
   * pending; false if that did not happen within timeoutMs (the sweep and the expiry
   * queue invoke the function too, so a busy answer now and then is normal).
   */
  async idle(timeoutMs = 10_000) {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const text = await (await fetch(`${this.origin}/_gateway/idle`)).text();
      if (text.startsWith('idle')) return true;
      if (Date.now() > end) return false;
      await sleep(50);
    }
  }

  /** Stop (SIGTERM: it closes every socket, waits for $disconnect, stops its bootstrap processes). */
  stop() {
    return this.child.stop();
  }

  /** The gateway's last log lines (its bootstrap processes' output is mixed in), and moto's. */
  tail(n = 30) {
    return `${this.child.tail(n)}\n--- moto ---\n${this.moto.tail(5)}`;
  }
}

/**
 * @typedef {object} GatewayStats
 * @property {Record<string, number>} invocations  by route key; `sweep` for the scheduled event, `sqs` for expiry queue batches
 * @property {number} invocationsTotal
 * @property {number} invocationsFailed
 * @property {{ frames: number, bytes: number, binary: number }} received  text frames from the clients (each one an invocation), and binary frames (each one closed the connection with 1003)
 * @property {number} disconnectsLost  $disconnect events lost on purpose (--lose-disconnects)
 * @property {number} instances  bootstrap processes started (warm and on demand)
 * @property {{ received: number, deleted: number, failed: number }} expiryQueue  SQS messages delivered to the function, deleted, reported in batchItemFailures
 * @property {{ delivered: number, gone: number, tooLarge: number, bytes: number }} posts  PostToConnection
 * @property {{ deleted: number, gone: number }} deletes  DeleteConnection
 * @property {number} gets  GetConnection
 */

let tables = 0;

/**
 * Start meshcall-gateway against moto, on a fresh table, and wait until its warm bootstrap
 * processes poll for work (it adds more while every one is busy).
 * @param {Moto} moto
 * @param {{ args?: string[], instances?: number, timeoutMs?: number }} [opts]
 * @returns {Promise<Gateway>}
 */
export async function startGateway(moto, { args = [], instances = 2, timeoutMs = 30_000 } = {}) {
  for (const [bin, what] of [[GATEWAY_BIN, 'MESHCALL_GATEWAY_BIN'], [BOOTSTRAP_BIN, 'MESHCALL_BOOTSTRAP_BIN']]) {
    if (!existsSync(bin)) throw new Error(`no ${path.basename(bin)} at ${bin}: run \`cargo build -p meshcall-gateway -p meshcall-lambda\` or set ${what}`);
  }
  const table = `e2e-${process.pid}-${++tables}-${Date.now().toString(36)}`;
  const child = new Child('meshcall-gateway', GATEWAY_BIN, [
    '--listen', '127.0.0.1:0', '--create-table', '--table', table, '--bootstrap', BOOTSTRAP_BIN,
    '--instances', String(instances), ...args,
  ], {
    ...process.env,
    AWS_ENDPOINT_URL: moto.url,
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    AWS_REGION: 'us-east-1',
    AWS_EC2_METADATA_DISABLED: 'true',
    MESHCALL_GATEWAY_LOG_FORMAT: 'text',
    RUST_LOG: process.env.RUST_LOG || 'info',
  });
  // Counted from the start: the ready lines can come before the address is read.
  let ready = 0;
  const allReady = child.waitLine((line) => (/instance ready in \d+ ms/.test(line) && ++ready >= instances ? true : undefined),
    timeoutMs, `"instance ready" from all ${instances} bootstrap processes`);
  allReady.catch(() => {}); // awaited below, unless the address never comes
  try {
    // Its first stdout line gives the address (its bootstrap processes share its stdout later).
    let first = true;
    const got = await child.waitLine((line, stream) => {
      if (stream !== 'stdout' || !first) return undefined;
      first = false;
      return line;
    }, timeoutMs, 'listening line on stdout');
    const m = /^listening on http:\/\/127\.0\.0\.1:(\d+)$/.exec(got);
    if (!m) throw new Error(`meshcall-gateway: unexpected first line ${JSON.stringify(got)}:\n${child.tail(40)}`);
    const port = Number(m[1]);
    await allReady;
    return new Gateway(child, port, table, moto);
  } catch (e) {
    await child.stop();
    throw e;
  }
}
