'use strict';
// An upstream route: bayeux-edge forwards /legacy/faye to a real Faye server (the npm
// `faye` NodeAdapter, mounted at /faye), as during a migration from Faye. Faye clients
// talk to the edge over WebSocket (wss://, the TLS listener) and long-polling (http://);
// subscribe, publish and receive all work through the forwarder, the upstream really
// served both transports, and it saw X-Forwarded-For, -Proto and -Host.

const { describe, test, before, after } = require('node:test');
const assert = require('assert/strict');
const fs = require('fs');
const http = require('http');
const path = require('path');
const faye = require('faye');
const { TracedClient, closeAll } = require('../support/faye-node');
const { backendPublish, request, closeAgents } = require('../support/http');
const { edgeOnly } = require('../support/harness');
const { waitUntil } = require('../support/wait');
const { EdgeProcess, routesToml, cli, tempDir, removeDir } = require('../support/edge-process');

const PREFIX = '/legacy/faye';
const MOUNT = '/faye';

// The real Faye server, in this process, recording what reached it.
async function startFayeUpstream() {
  const adapter = new faye.NodeAdapter({ mount: MOUNT, timeout: 5 });
  const server = http.createServer((req, res) => {
    res.writeHead(404, { 'Content-Type': 'text/plain' });
    res.end('Not found');
  });
  adapter.attach(server);
  const seen = { requests: [], connects: [] };
  // Listeners added after attach() run besides the adapter's own.
  server.on('request', (req) => seen.requests.push({ kind: 'http', method: req.method, url: req.url, headers: req.headers }));
  server.on('upgrade', (req) => seen.requests.push({ kind: 'upgrade', method: req.method, url: req.url, headers: req.headers }));
  adapter.addExtension({
    incoming(message, callback) {
      if (message.channel === '/meta/connect') seen.connects.push({ clientId: message.clientId, connectionType: message.connectionType });
      callback(message);
    },
  });
  const sockets = new Set();
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return {
    port: server.address().port,
    seen,
    close() {
      adapter.close();
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

describe('upstream route to a real Faye server', { skip: edgeOnly('upstream routes') || false }, () => {
  let dir;
  let edge;
  let upstream;
  let ca;
  const clients = [];

  before(async () => {
    upstream = await startFayeUpstream();
    dir = tempDir('upstream');
    fs.writeFileSync(path.join(dir, 'routes.toml'), routesToml({
      listeners: [
        { name: 'http' },
        { name: 'https', cert: 'certs/cert.pem', key: 'certs/key.pem', dev: true },
      ],
      routes: [
        { prefix: '/staging/faye' },
        { prefix: PREFIX, upstream: `http://127.0.0.1:${upstream.port}${MOUNT}` },
      ],
    }));
    edge = await new EdgeProcess(dir).start();
    ca = fs.readFileSync(path.join(dir, 'certs', 'cert.pem'), 'utf8');
  });

  after(async () => {
    await closeAll(clients);
    closeAgents();
    if (edge) {
      const exit = await edge.stop();
      assert.equal(exit && exit.code, 0, `bayeux-edge exit after SIGTERM: ${JSON.stringify(exit)}`);
    }
    if (upstream) await upstream.close();
    if (dir) removeDir(dir);
  });

  test('Faye clients over wss:// and http long-polling, through the edge to Faye', async () => {
    const ws = new TracedClient(edge.url(PREFIX, 'https'), { transport: 'websocket', ca });
    const lp = new TracedClient(edge.url(PREFIX, 'http'), { transport: 'long-polling' });
    clients.push(ws, lp);
    const got = new Map([[ws, []], [lp, []]]);
    for (const c of [ws, lp]) {
      await c.subscribe('/migrating', (data) => got.get(c).push(data));
      await c.waitConnected();
    }
    const socket = ws.client._dispatcher._transport._socket;
    assert.ok(socket && /^wss:/.test(socket.url), `expected a wss:// socket, got ${socket && socket.url}`);

    const expected = [];
    const deliver = async (publish, data) => {
      await publish(data);
      expected.push(data);
      await waitUntil(() => [...got.values()].every((list) => list.length === expected.length),
        { what: () => `delivery of ${JSON.stringify(data)} to both clients\n${ws.summary()}\n${lp.summary()}` });
    };
    await deliver((d) => ws.publish('/migrating', d), { from: 'websocket client' });
    await deliver((d) => lp.publish('/migrating', d), { from: 'long-polling client' });
    await deliver((d) => backendPublish(edge.url(PREFIX), '/migrating', d), { from: 'backend' });
    await deliver(async (d) => {
      const res = await cli(['publish', edge.url(PREFIX), '/migrating', JSON.stringify(d)]);
      assert.equal(res.status, 0, `bayeux-edge publish through the upstream route: ${JSON.stringify(res)}`);
    }, { from: 'bayeux-edge publish' });
    for (const list of got.values()) assert.deepEqual(list, expected);

    // The upstream served both sessions, on their own transports, under its own mount.
    for (const c of [ws, lp]) {
      assert.ok(upstream.seen.connects.some((m) => m.clientId === c.clientId && m.connectionType === c.transport),
        `Faye never saw a ${c.transport} connect from ${c.clientId}: ${JSON.stringify(upstream.seen.connects.slice(-6))}`);
    }
    for (const r of upstream.seen.requests) assert.ok(r.url.startsWith(MOUNT), `upstream got ${r.method} ${r.url}`);

    // What the forwarder told Faye about the clients.
    const upgrades = upstream.seen.requests.filter((r) => r.kind === 'upgrade');
    assert.ok(upgrades.length >= 1, 'the WebSocket upgrade never reached Faye');
    for (const r of upgrades) {
      assert.equal(r.headers['x-forwarded-proto'], 'https');
      assert.equal(r.headers['x-forwarded-host'], `127.0.0.1:${edge.ports.https}`);
      assert.equal(r.headers['x-forwarded-for'], '127.0.0.1');
      assert.equal(r.url, MOUNT);
    }
    const plainPosts = upstream.seen.requests.filter((r) => r.kind === 'http' && r.method === 'POST' &&
      r.headers['x-forwarded-host'] === `127.0.0.1:${edge.ports.http}`);
    assert.ok(plainPosts.length >= 4, `expected the long-polling client's POSTs and the publishes, saw ${plainPosts.length}`);
    for (const r of plainPosts) {
      assert.equal(r.headers['x-forwarded-proto'], 'http');
      assert.equal(r.headers['x-forwarded-for'], '127.0.0.1');
    }
    for (const r of upstream.seen.requests) {
      assert.ok(r.headers['x-forwarded-for'] && r.headers['x-forwarded-proto'] && r.headers['x-forwarded-host'],
        `a request reached Faye without forwarding headers: ${r.method} ${r.url} ${JSON.stringify(r.headers)}`);
    }
  });

  test('an X-Forwarded-For from an earlier proxy is kept and the peer appended', async () => {
    const before = upstream.seen.requests.length;
    const body = JSON.stringify({ channel: '/meta/handshake', version: '1.0', supportedConnectionTypes: ['long-polling'] });
    const res = await request(edge.url(PREFIX), {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Forwarded-For': '203.0.113.7' },
      body,
    });
    assert.equal(res.status, 200, res.text);
    res.json = JSON.parse(res.text);
    const r = upstream.seen.requests.slice(before).find((x) => x.method === 'POST');
    assert.ok(r, 'the POST did not reach Faye');
    assert.equal(r.headers['x-forwarded-for'], '203.0.113.7, 127.0.0.1');
    assert.equal(res.json[0].successful, true, `Faye's handshake reply through the edge: ${res.text}`);
  });

  test('the engine route next to the upstream route is unaffected', async () => {
    const c = new TracedClient(edge.url('/staging/faye'), { transport: 'websocket' });
    clients.push(c);
    const got = [];
    await c.subscribe('/migrating', (data) => got.push(data));
    await c.waitConnected();
    await backendPublish(edge.url(PREFIX), '/migrating', { only: 'upstream' });
    await backendPublish(edge.url('/staging/faye'), '/migrating', { only: 'staging' });
    await waitUntil(() => got.length >= 1, { what: () => `the staging message\n${c.summary()}` });
    assert.deepEqual(got, [{ only: 'staging' }]);
    assert.ok(!upstream.seen.connects.some((m) => m.clientId === c.clientId), 'a staging client reached Faye');
  });
});
