'use strict';
// A small real HTTP application that answers bayeux-edge's backend subscribe checks
// (`subscribe = "backend"`): the edge POSTs {"clientId","channel"} with the browser's
// allow-listed headers, and the application answers {"allowed": true|false}.
//
// Kinds:
//   cookies  allows the cookie `user=42` on `/42` only (200 {"allowed": false} otherwise)
//   error    answers 500 to everything
//   silent   never answers (the edge's timeout must refuse)
//
// Every request is recorded in `calls` ({ method, path, cookie, contentType, body }).

const http = require('http');

function cookieValue(header, name) {
  for (const part of String(header || '').split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return v.join('=');
  }
  return undefined;
}

// Resolves { url, calls, close }.
function startAuthApp(kind) {
  if (!['cookies', 'error', 'silent'].includes(kind)) throw new Error(`unknown application kind ${kind}`);
  const calls = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      let body;
      try { body = JSON.parse(text); } catch (_) { body = text; }
      calls.push({
        method: req.method,
        path: req.url,
        cookie: req.headers.cookie,
        contentType: req.headers['content-type'],
        body,
      });
      if (kind === 'silent') return; // held until close() destroys the socket
      if (kind === 'error') {
        res.writeHead(500, { 'Content-Type': 'text/plain' });
        res.end('internal error');
        return;
      }
      const allowed = req.method === 'POST' && cookieValue(req.headers.cookie, 'user') === '42' &&
        body && body.channel === '/42';
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ allowed }));
    });
  });
  const sockets = new Set();
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      resolve({
        url: `http://127.0.0.1:${server.address().port}/bayeux/authorize`,
        calls,
        close: () => new Promise((done) => {
          for (const socket of sockets) socket.destroy();
          server.close(() => done());
        }),
      });
    });
  });
}

module.exports = { startAuthApp, cookieValue };
