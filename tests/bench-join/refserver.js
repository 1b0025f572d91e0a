// The tiny HTTP server of the join-speed benchmark: serves the reference mesh page
// (reference.html) at /r/<room>, with meshcall's WebSocket URL written into it. The page then
// talks to meshcall's own /ws directly (meshcall admits any Origin unless --allowed-origin is
// given; meshcall's Content-Security-Policy only covers the pages meshcall serves). Part of the
// test tooling, never of the product.
//
// bench.js runs it as a process of its own (so the harness's own work never delays a page
// load), and reads the first line it prints. By hand:
//   node tests/bench-join/refserver.js ws://127.0.0.1:8080/ws [port]
// prints `listening http://127.0.0.1:PORT`; open http://127.0.0.1:PORT/r/<room>.

import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));

/**
 * Start the server on 127.0.0.1 (or `host`: the quality benchmark's bridge address).
 * @param {string} wsUrl  meshcall's signalling URL, e.g. ws://127.0.0.1:PORT/ws
 * @param {number} [port]  0 picks a free one
 * @param {string} [host]
 * @returns {Promise<{ origin: string, roomUrl: (room: string) => string, close: () => Promise<void> }>}
 */
export async function startRefServer(wsUrl, port = 0, host = '127.0.0.1') {
  const html = readFileSync(path.join(HERE, 'reference.html'), 'utf8').replace('__WS_URL__', wsUrl.replace(/[^\w:/.\-[\]]/g, ''));
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (/^\/r\/[^/]+$/.test(url.pathname)) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(html);
    } else if (url.pathname === '/favicon.ico') {
      res.writeHead(204).end();
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(undefined));
  });
  const addr = /** @type {import('node:net').AddressInfo} */ (server.address());
  const origin = `http://${host}:${addr.port}`;
  return {
    origin,
    roomUrl: (room) => `${origin}/r/${encodeURIComponent(room)}`,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [wsUrl, port] = process.argv.slice(2);
  if (!wsUrl) {
    console.error('usage: node tests/bench-join/refserver.js ws://127.0.0.1:PORT/ws [port]');
    process.exit(2);
  }
  const s = await startRefServer(wsUrl, Number(port ?? 0));
  console.log(`listening ${s.origin}`);
  process.on('SIGTERM', () => { void s.close().then(() => process.exit(0)); });
}
