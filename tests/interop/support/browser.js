'use strict';
// Headless Chromium (Debian's, never one downloaded by npm) driven by playwright-core, and
// small local page servers (plain and TLS) that host the test pages.

const fs = require('fs');
const os = require('os');
const path = require('path');
const http = require('http');
const https = require('https');
const { chromium } = require('playwright-core');

// Set but empty (scripts/test found none on PATH) means missing: no fallback.
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

// Reason to skip browser tests, or null when Chromium is there.
function browserMissing() {
  if (!CHROMIUM) return 'Chromium is not on PATH';
  return fs.existsSync(CHROMIUM) ? null : `Chromium not found at ${CHROMIUM} (set CHROMIUM_PATH)`;
}

// Launches Chromium with a fresh profile; resolves { context, close }.
async function launchBrowser() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'interop-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    ignoreHTTPSErrors: true,
    timeout: 30000,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--ignore-certificate-errors',
    ],
  });
  context.setDefaultTimeout(15000);
  const close = async () => {
    try {
      await context.close();
    } finally {
      fs.rmSync(profile, { recursive: true, force: true });
    }
  };
  return { context, close };
}

// Serves `routes` ({ '/path': { type, body, headers } }) on 127.0.0.1, over TLS when `tls`
// is given. `body` and `headers` may be functions of the request. Resolves { origin, close }.
function servePages(routes, { tls } = {}) {
  const handler = (req, res) => {
    const { pathname } = new URL(req.url, 'http://127.0.0.1');
    const page = routes[pathname];
    if (!page) {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('not found');
      return;
    }
    const body = typeof page.body === 'function' ? page.body(req) : page.body;
    const headers = typeof page.headers === 'function' ? page.headers(req) : page.headers;
    res.writeHead(200, { 'Content-Type': page.type || 'text/html; charset=utf-8', 'Cache-Control': 'no-store', ...headers });
    res.end(body);
  };
  const server = tls ? https.createServer({ cert: tls.cert, key: tls.key }, handler) : http.createServer(handler);
  const sockets = new Set();
  server.on(tls ? 'secureConnection' : 'connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const origin = `${tls ? 'https' : 'http'}://127.0.0.1:${server.address().port}`;
      resolve({
        origin,
        close: () => new Promise((done) => {
          for (const socket of sockets) socket.destroy();
          server.close(() => done());
        }),
      });
    });
  });
}

module.exports = { launchBrowser, servePages, browserMissing, CHROMIUM };
