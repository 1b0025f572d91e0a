// A TCP relay that holds every chunk for a fixed time in each direction (bench-join
// --delay-ms): the browsers reach the servers (pages, files, /config.json, the signalling
// socket) over a link with that one-way delay, as over a real network, while media stays on
// loopback. The kernel's netem would do it below TCP; this VM's kernel has no netem.

import net from 'node:net';

export class DelayRelay {
  /** @param {number} targetPort @param {number} delayMs  added one way, each direction */
  constructor(targetPort, delayMs) {
    this.delayMs = delayMs;
    /** @type {Set<net.Socket>} */
    this.sockets = new Set();
    this.server = net.createServer((client) => {
      client.setNoDelay(true);
      const upstream = net.connect(targetPort, '127.0.0.1');
      upstream.setNoDelay(true);
      for (const [from, to] of [[client, upstream], [upstream, client]]) {
        this.sockets.add(from);
        from.on('close', () => {
          this.sockets.delete(from);
          setTimeout(() => to.end(), this.delayMs); // after the data still on its way
        });
        from.on('error', () => { client.destroy(); upstream.destroy(); });
        // Timers of one duration fire in the order they were set: the byte order holds.
        from.on('data', (chunk) => setTimeout(() => { if (!to.destroyed) to.write(chunk); }, this.delayMs));
      }
    });
    this.origin = '';
  }

  /** Listen on 127.0.0.1 and a free port. */
  async start() {
    await new Promise((resolve) => this.server.listen(0, '127.0.0.1', () => resolve(undefined)));
    this.origin = `http://127.0.0.1:${/** @type {net.AddressInfo} */ (this.server.address()).port}`;
    return this;
  }

  close() {
    for (const s of this.sockets) s.destroy();
    this.server.close();
  }
}
