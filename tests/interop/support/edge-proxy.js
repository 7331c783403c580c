'use strict';
// A TCP forwarder on 127.0.0.1 (port chosen by the OS) that sends each new connection to
// the current target, like a network load balancer: `switchTo(port)` changes the target
// for new connections only; established ones stay on the instance they reached until
// either side closes. A connection whose target refuses it is closed, as an NLB resets it.

const net = require('net');

async function startSwitchProxy(targetPort) {
  let target = targetPort;
  const pairs = new Set();
  const counts = new Map(); // target port -> connections forwarded there
  const server = net.createServer((client) => {
    const port = target;
    counts.set(port, (counts.get(port) || 0) + 1);
    const upstream = net.connect({ host: '127.0.0.1', port });
    const pair = { client, upstream, port };
    pairs.add(pair);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    const closeBoth = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    // Half-closes are passed on; an error or a full close on either side ends both.
    client.pipe(upstream);
    upstream.pipe(client);
    client.on('error', closeBoth);
    upstream.on('error', closeBoth);
    client.on('close', closeBoth);
    upstream.on('close', closeBoth);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return {
    port: server.address().port,
    get target() { return target; },
    switchTo(port) { target = port; },
    // Open forwarded connections, by target port.
    open() {
      const byPort = {};
      for (const p of pairs) byPort[p.port] = (byPort[p.port] || 0) + 1;
      return byPort;
    },
    forwarded(port) { return counts.get(port) || 0; },
    close() {
      return new Promise((resolve) => {
        for (const p of pairs) {
          p.client.destroy();
          p.upstream.destroy();
        }
        pairs.clear();
        server.close(() => resolve());
      });
    },
  };
}

module.exports = { startSwitchProxy };
