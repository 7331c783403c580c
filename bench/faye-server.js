// Reference Faye server for the benchmarks: one NodeAdapter on an HTTP server.
//
//   node bench/faye-server.js [--mount /bench] [--timeout 45] [--port 0]
//
// Listens on 127.0.0.1 and prints {"port":N,"pid":P} on stdout once ready.
'use strict';

const path = require('path');
const http = require('http');
const faye = require(path.join(__dirname, 'node', 'node_modules', 'faye'));

function option(name, fallback) {
  const i = process.argv.indexOf('--' + name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const mount = option('mount', '/bench');
const timeout = Number(option('timeout', '45'));
const port = Number(option('port', '0'));

const bayeux = new faye.NodeAdapter({ mount: mount, timeout: timeout });
const server = http.createServer((req, res) => {
  res.writeHead(404, { 'Content-Type': 'text/plain' });
  res.end('Not found');
});
bayeux.attach(server);

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ port: server.address().port, pid: process.pid }) + '\n');
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
