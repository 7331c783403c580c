'use strict';
// An HTTP reverse proxy on 127.0.0.1 that sends each request to the next of several
// backends in turn, on a fresh connection, like a load balancer without stickiness. Used
// to make one long-polling client's successive requests land on different nodes.
// Upgrades (WebSocket) are not proxied: only plain requests.

const http = require('http');

async function startRoundRobin(ports) {
  let next = 0;
  const counts = new Map();
  const server = http.createServer((req, res) => {
    const port = ports[next % ports.length];
    next += 1;
    counts.set(port, (counts.get(port) || 0) + 1);
    const upstream = http.request({
      host: '127.0.0.1', port, method: req.method, path: req.url, headers: { ...req.headers, connection: 'close' }, agent: false,
    }, (up) => {
      res.writeHead(up.statusCode, up.headers);
      up.pipe(res);
    });
    upstream.on('error', () => { if (!res.headersSent) res.writeHead(502); res.end(); });
    req.pipe(upstream);
  });
  server.keepAliveTimeout = 0;
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return {
    port: server.address().port,
    // Requests forwarded to each backend port.
    counts() { return Object.fromEntries(counts); },
    close() { return new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }); },
  };
}

module.exports = { startRoundRobin };
