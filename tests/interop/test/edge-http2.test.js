'use strict';
// Long-polling over HTTP/2: one TLS connection negotiated by ALPN as h2 (Node's http2
// client speaks nothing else) carries the handshake, the subscribe, a held /meta/connect
// and, on another stream of the same connection while the connect is held, the publish
// that releases it.

const { describe, test, before, after } = require('node:test');
const assert = require('assert/strict');
const fs = require('fs');
const http2 = require('http2');
const path = require('path');
const { edgeOnly } = require('../support/harness');
const { waitUntil, withDeadline } = require('../support/wait');
const { EdgeProcess, routesToml, tempDir, removeDir } = require('../support/edge-process');
const { closeAgents } = require('../support/http');

const PREFIX = '/staging/faye';
const TIMEOUT_SECS = 20; // the route's hold: a released connect must come back long before

// POSTs a JSON envelope on a new stream of `session`; resolves { status, headers, json, streamId, ms }.
function post(session, value, timeout = 30000) {
  const started = Date.now();
  return withDeadline(new Promise((resolve, reject) => {
    const stream = session.request({
      ':method': 'POST',
      ':path': PREFIX,
      'content-type': 'application/json',
    });
    let headers;
    const chunks = [];
    stream.on('response', (h) => { headers = h; });
    stream.on('data', (c) => chunks.push(c));
    stream.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      let json;
      try { json = JSON.parse(text); } catch (_) { return reject(new Error(`not JSON (HTTP ${headers && headers[':status']}): ${text}`)); }
      resolve({ status: headers[':status'], headers, json, streamId: stream.id, ms: Date.now() - started });
    });
    stream.on('error', reject);
    stream.end(JSON.stringify(value));
  }), timeout, `an HTTP/2 response to ${JSON.stringify(value).slice(0, 100)}`);
}

describe('long-polling over HTTP/2', { skip: edgeOnly('HTTP/2 long-polling') || false }, () => {
  let dir;
  let edge;
  let session;

  before(async () => {
    dir = tempDir('h2');
    fs.writeFileSync(path.join(dir, 'routes.toml'), routesToml({
      listeners: [{ name: 'https', cert: 'certs/cert.pem', key: 'certs/key.pem', dev: true }],
      routes: [{ prefix: PREFIX, tunables: { timeout_secs: TIMEOUT_SECS } }],
    }));
    edge = await new EdgeProcess(dir).start();
  });

  after(async () => {
    if (session) session.destroy();
    closeAgents();
    if (edge) {
      const exit = await edge.stop();
      assert.equal(exit && exit.code, 0, `bayeux-edge exit after SIGTERM: ${JSON.stringify(exit)}`);
    }
    if (dir) removeDir(dir);
  });

  test('handshake, subscribe, a held connect released by a publish on the same h2 connection', async () => {
    const ca = fs.readFileSync(path.join(dir, 'certs', 'cert.pem'), 'utf8');
    session = http2.connect(`https://localhost:${edge.ports.https}`, { ca, ALPNProtocols: ['h2'], host: '127.0.0.1' });
    session.on('error', () => {});
    await withDeadline(new Promise((resolve, reject) => {
      session.once('connect', resolve);
      session.once('error', reject);
    }), 10000, 'the HTTP/2 session');
    assert.equal(session.alpnProtocol, 'h2', 'ALPN did not select h2');
    assert.equal(session.encrypted, true);

    const hs = await post(session, [{ channel: '/meta/handshake', version: '1.0', supportedConnectionTypes: ['long-polling'], id: '1' }]);
    assert.equal(hs.status, 200);
    assert.match(hs.headers['content-type'], /^application\/json/);
    assert.equal(hs.json[0].successful, true, JSON.stringify(hs.json));
    const clientId = hs.json[0].clientId;

    const sub = await post(session, [{ channel: '/meta/subscribe', clientId, subscription: '/h2', id: '2' }]);
    assert.equal(sub.json[0].successful, true, JSON.stringify(sub.json));

    let answered = false;
    const held = post(session, [{ channel: '/meta/connect', clientId, connectionType: 'long-polling', id: '3' }])
      .then((r) => { answered = true; return r; });
    await waitUntil(async () => (await edge.metrics()).get('bayeux_edge_connections', { route: PREFIX, transport: 'long-polling' }) === 1,
      { timeout: 10000, what: 'the server to hold the connect' });
    assert.equal(answered, false, 'the connect was answered before anything was published');

    const pub = await post(session, [{ channel: '/h2', data: { over: 'h2' }, id: '4' }]);
    assert.equal(pub.json[0].successful, true, JSON.stringify(pub.json));
    const connect = await held;
    assert.ok(connect.ms < (TIMEOUT_SECS * 1000) / 2, `the connect came back after ${connect.ms} ms, not on the publish`);
    assert.equal(connect.status, 200);
    const event = connect.json.find((m) => m.channel === '/h2');
    assert.deepEqual(event && event.data, { over: 'h2' }, JSON.stringify(connect.json));
    const reply = connect.json.find((m) => m.channel === '/meta/connect');
    assert.equal(reply && reply.successful, true, JSON.stringify(connect.json));

    // Four requests, four streams of one connection, the publish sent while the connect's
    // stream was still open.
    const ids = [hs.streamId, sub.streamId, connect.streamId, pub.streamId];
    assert.deepEqual(ids, [1, 3, 5, 7], `stream ids ${ids}`);
    assert.equal(session.closed, false);
    assert.equal(session.destroyed, false);
  });
});
