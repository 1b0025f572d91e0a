// A TCP relay in front of the server, so a test can cut every connection at once without a
// WebSocket close frame: what a network change or a proxy reset does to a real call.

import net from 'node:net';

export class Relay {
  /** @param {number} targetPort */
  constructor(targetPort) {
    this.targetPort = targetPort;
    /** @type {Set<net.Socket>} */
    this.sockets = new Set();
    this.server = net.createServer((client) => {
      const upstream = net.connect(this.targetPort, '127.0.0.1');
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => { client.destroy(); upstream.destroy(); });
      }
      client.pipe(upstream);
      upstream.pipe(client);
    });
    this.port = 0;
  }

  /** Listen on 127.0.0.1 and a free port. */
  async start() {
    await new Promise((resolve) => this.server.listen(0, '127.0.0.1', () => resolve(undefined)));
    this.port = /** @type {net.AddressInfo} */ (this.server.address()).port;
    this.origin = `http://127.0.0.1:${this.port}`;
    return this;
  }

  /** Drop every relayed connection (both sides), as a dead network would: no close frames. */
  cut() {
    const n = this.sockets.size;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    return n;
  }

  async stop() {
    this.cut();
    await new Promise((resolve) => this.server.close(() => resolve(undefined)));
  }
}
