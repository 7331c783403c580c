#!/usr/bin/env node
'use strict';
// The reference Faye server (npm `faye`, NodeAdapter, memory engine).
//
// Usage:
//   node faye-server.js [--mount /bayeux]... [--timeout SECONDS] [--ping SECONDS] [--host 127.0.0.1]
//                       [--port 0] [--cert cert.pem --key key.pem [--tls-port 0]]
//
// Each --mount gets its own NodeAdapter, i.e. its own isolated engine, all served by one
// HTTP server (and one HTTPS server when --cert/--key are given). When every listener is
// bound, one JSON line is printed on stdout: {"port":N} (plus "tlsPort":M with TLS).
// SIGTERM or SIGINT closes the adapters and listeners and exits with status 0.

const fs = require('fs');
const http = require('http');
const https = require('https');
const faye = require('faye');

function usage(message) {
  process.stderr.write(`faye-server: ${message}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const options = { mounts: [], timeout: undefined, ping: undefined, host: '127.0.0.1', port: 0, tlsPort: 0, cert: null, key: null };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const eq = arg.indexOf('=');
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    const value = () => {
      if (eq > 0) return arg.slice(eq + 1);
      if (i + 1 >= argv.length) usage(`${name} needs a value`);
      return argv[++i];
    };
    const number = (text) => {
      const n = Number(text);
      if (!Number.isFinite(n) || n < 0) usage(`${name}: not a non-negative number: ${text}`);
      return n;
    };
    switch (name) {
      case '--mount': options.mounts.push(value()); break;
      case '--timeout': options.timeout = number(value()); break;
      case '--ping': options.ping = number(value()); break;
      case '--host': options.host = value(); break;
      case '--port': options.port = number(value()); break;
      case '--tls-port': options.tlsPort = number(value()); break;
      case '--cert': options.cert = value(); break;
      case '--key': options.key = value(); break;
      case '--help': case '-h':
        process.stdout.write('node faye-server.js [--mount PATH]... [--timeout S] [--ping S] [--host H] [--port N] [--cert F --key F [--tls-port N]]\n');
        process.exit(0);
        break;
      default: usage(`unknown argument ${arg}`);
    }
  }
  if (options.mounts.length === 0) options.mounts.push('/bayeux');
  for (const mount of options.mounts) {
    if (!mount.startsWith('/')) usage(`mount must start with "/": ${mount}`);
  }
  if (!options.cert !== !options.key) usage('--cert and --key go together');
  return options;
}

function notFound(request, response) {
  response.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' });
  response.end('Not found');
}

function listen(server, port, host) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.removeListener('error', reject);
      resolve(server.address().port);
    });
  });
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const adapters = options.mounts.map((mount) => {
    const adapterOptions = { mount };
    if (options.timeout !== undefined) adapterOptions.timeout = options.timeout;
    if (options.ping !== undefined) adapterOptions.ping = options.ping;
    return new faye.NodeAdapter(adapterOptions);
  });

  const servers = [];
  const sockets = new Set();
  const track = (server) => {
    server.on('connection', (socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
    server.on('secureConnection', (socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
    for (const adapter of adapters) adapter.attach(server);
    servers.push(server);
    return server;
  };

  const plain = track(http.createServer(notFound));
  const result = { port: await listen(plain, options.port, options.host) };
  if (options.cert) {
    const secure = track(https.createServer({
      cert: fs.readFileSync(options.cert),
      key: fs.readFileSync(options.key),
    }, notFound));
    result.tlsPort = await listen(secure, options.tlsPort, options.host);
  }

  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    for (const adapter of adapters) adapter.close();
    for (const server of servers) server.close();
    for (const socket of sockets) socket.destroy();
    // Listening sockets are closed synchronously by close(); exit once the event loop
    // has had a turn to flush stdout.
    setImmediate(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);

  process.stdout.write(JSON.stringify(result) + '\n');
}

main().catch((error) => {
  process.stderr.write(`faye-server: ${error && error.stack || error}\n`);
  process.exit(1);
});
