'use strict';
// Hot reload under live traffic. Two npm Faye clients subscribed on /staging/faye over
// the TLS listener (one on WebSocket, one on long-polling) receive a numbered sequence
// that a backend publishes steadily by HTTP POST while routes.toml is edited under the
// running server: a route added, staging retuned, the route removed, a broken file
// written (and rejected), and the listener's certificate rotated. At the end each client
// must have received every number exactly once and in order, without re-handshaking, and
// the WebSocket must still be the one it opened before the rotation.

const { describe, test, before, after } = require('node:test');
const assert = require('assert/strict');
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const { TracedClient, closeAll } = require('../support/faye-node');
const { backendPublish, postJSON, closeAgents } = require('../support/http');
const { edgeOnly } = require('../support/harness');
const { waitUntil, delay } = require('../support/wait');
const {
  EdgeProcess, routesToml, replaceFile, check, tempDir, removeDir, hasOpenssl, makeCa, makeLeaf, tlsPeer,
} = require('../support/edge-process');

const STAGING = '/staging/faye';
const QA = '/qa/faye';
const CHANNEL = '/seq';
const PUBLISH_EVERY_MS = 25;
const MAX_MESSAGES = 4000; // the publisher stops here whatever happens
const PUBLISH_FOR_AT_MOST_MS = 120000;
const RELOAD_WAIT_MS = 15000; // the file watch normally reacts in ~150 ms; the poll is every 5 s
const { unavailable } = require('../support/required');
const NO_OPENSSL = !hasOpenssl() && 'openssl is needed to make the certificates';

describe('hot reload with live Faye clients', { skip: edgeOnly('hot reload') || unavailable(NO_OPENSSL) }, () => {
  let dir;
  let edge;
  let ca;
  let caPem;
  let leaves;
  const clients = [];
  const got = { websocket: [], 'long-polling': [] };
  let ws;
  let lp;
  let wsSocket;
  const publisher = { last: 0, stop: false, error: null, done: null };
  const counts = { ok: 0, error: 0 };

  const config = (routes, extra = '') => routesToml({
    listeners: [
      { name: 'http' },
      { name: 'https', cert: 'certs/server.pem', key: 'certs/server-key.pem' },
    ],
    routes,
  }) + extra;
  const staging = (timeout) => ({ prefix: STAGING, tunables: { timeout_secs: timeout } });

  async function reloads() {
    const m = await edge.metrics();
    return {
      ok: m.get('bayeux_edge_reloads_total', { result: 'ok' }),
      error: m.get('bayeux_edge_reloads_total', { result: 'error' }),
    };
  }

  // Waits until the server counted one more reload with `result`, and none with the other.
  async function expectReload(result) {
    const other = result === 'ok' ? 'error' : 'ok';
    counts[result] += 1;
    const seen = await waitUntil(async () => {
      const r = await reloads();
      return r[result] >= counts[result] && r;
    }, { timeout: RELOAD_WAIT_MS, interval: 25, what: `reload #${counts[result]} with result=${result}\n${edge.logTail(1500)}` });
    assert.equal(seen[result], counts[result], `unexpected extra reloads: ${JSON.stringify(seen)}`);
    assert.equal(seen[other], counts[other], `a reload with result=${other} happened too: ${JSON.stringify(seen)}\n${edge.logTail(1500)}`);
  }

  async function publishLoop() {
    const url = edge.url(STAGING);
    const deadline = Date.now() + PUBLISH_FOR_AT_MOST_MS;
    try {
      for (let n = 1; n <= MAX_MESSAGES && !publisher.stop && Date.now() < deadline; n++) {
        await backendPublish(url, CHANNEL, { n });
        publisher.last = n;
        await delay(PUBLISH_EVERY_MS);
      }
    } catch (error) {
      publisher.error = error;
    }
  }

  // Waits until both clients received at least `count` more numbers than they had.
  async function bothKeepReceiving(count, what) {
    const base = { websocket: got.websocket.length, 'long-polling': got['long-polling'].length };
    await waitUntil(() => {
      if (publisher.error) throw publisher.error;
      return got.websocket.length >= base.websocket + count && got['long-polling'].length >= base['long-polling'] + count;
    }, { timeout: 10000, what: () => `${count} more numbers on both clients ${what}\n${ws.summary()}\n${lp.summary()}` });
  }

  before(async () => {
    dir = tempDir('reload');
    fs.mkdirSync(path.join(dir, 'certs'));
    ca = makeCa(dir);
    caPem = fs.readFileSync(ca.cert, 'utf8');
    leaves = [makeLeaf(dir, 'leaf-1', ca), makeLeaf(dir, 'leaf-2', ca)];
    fs.copyFileSync(leaves[0].cert, path.join(dir, 'certs', 'server.pem'));
    fs.copyFileSync(leaves[0].key, path.join(dir, 'certs', 'server-key.pem'));
    fs.writeFileSync(path.join(dir, 'routes.toml'), config([staging(5)]));
    edge = await new EdgeProcess(dir).start();

    ws = new TracedClient(edge.url(STAGING, 'https'), { transport: 'websocket', ca: caPem });
    lp = new TracedClient(edge.url(STAGING, 'https'), { transport: 'long-polling', ca: caPem });
    clients.push(ws, lp);
    for (const c of clients) {
      await c.subscribe(CHANNEL, (data) => got[c.transport].push(data.n));
      await c.waitConnected();
    }
    wsSocket = ws.client._dispatcher._transport._socket;
    assert.ok(wsSocket && /^wss:/.test(wsSocket.url), `expected a wss:// socket, got ${wsSocket && wsSocket.url}`);
    publisher.done = publishLoop();
    await bothKeepReceiving(5, 'before any reload');
  });

  after(async () => {
    publisher.stop = true;
    if (publisher.done) await publisher.done;
    await closeAll(clients);
    closeAgents();
    if (edge) {
      const exit = await edge.stop();
      assert.equal(exit && exit.code, 0, `bayeux-edge exit after SIGTERM: ${JSON.stringify(exit)}`);
    }
    if (dir) removeDir(dir);
  });

  test('adding /qa/faye: it serves at once', async () => {
    assert.equal((await postJSON(edge.url(QA), [{ channel: '/meta/handshake', version: '1.0', supportedConnectionTypes: ['long-polling'] }])).status, 404);
    replaceFile(edge.config, config([staging(5), { prefix: QA }]));
    await expectReload('ok');
    const qa = new TracedClient(edge.url(QA), { transport: 'long-polling' });
    try {
      const seen = [];
      await qa.subscribe('/qa-check', (data) => seen.push(data));
      await backendPublish(edge.url(QA), '/qa-check', { hello: 'qa' });
      await waitUntil(() => seen.length === 1, { what: () => `the message on ${QA}\n${qa.summary()}` });
      assert.deepEqual(seen, [{ hello: 'qa' }]);
    } finally {
      await closeAll([qa]);
    }
    await bothKeepReceiving(3, 'after adding /qa/faye');
  });

  test('retuning timeout_secs of staging applies in place', async () => {
    const before = lp.received.length;
    replaceFile(edge.config, config([staging(3), { prefix: QA }]));
    await expectReload('ok');
    await waitUntil(() => lp.received.slice(before).some((m) => m.channel === '/meta/connect' && m.advice && m.advice.timeout === 3000),
      { timeout: 10000, what: () => `a /meta/connect reply advising timeout 3000\n${lp.summary()}` });
    await bothKeepReceiving(3, 'after retuning staging');
  });

  test('removing /qa/faye: its held connect is told to handshake, then it answers 404', async () => {
    const qa = edge.url(QA);
    const hs = await postJSON(qa, [{ channel: '/meta/handshake', version: '1.0', supportedConnectionTypes: ['long-polling'] }]);
    const clientId = hs.json[0].clientId;
    assert.ok(clientId, `handshake on ${QA}: ${hs.text}`);
    const held = postJSON(qa, [{ channel: '/meta/connect', clientId, connectionType: 'long-polling', advice: { timeout: 60000 } }]);
    await waitUntil(async () => (await edge.metrics()).get('bayeux_edge_connections', { route: QA, transport: 'long-polling' }) === 1,
      { timeout: 5000, what: `the held connect on ${QA}` });
    const removedAt = Date.now();
    replaceFile(edge.config, config([staging(3)]));
    await expectReload('ok');
    const reply = await held;
    assert.ok(Date.now() - removedAt < 10000, 'the held connect was not answered when its route was removed');
    assert.equal(reply.status, 200);
    const connect = reply.json.find((m) => m.channel === '/meta/connect');
    assert.equal(connect && connect.advice && connect.advice.reconnect, 'handshake', `connect reply: ${reply.text}`);
    const after = await postJSON(qa, [{ channel: '/meta/handshake', version: '1.0', supportedConnectionTypes: ['long-polling'] }]);
    assert.equal(after.status, 404, `POST ${QA} after removal: HTTP ${after.status} ${after.text}`);
    assert.equal((await edge.metrics()).get('bayeux_edge_sessions', { route: QA }), undefined, `${QA} still has metrics`);
    await bothKeepReceiving(3, 'after removing /qa/faye');
  });

  test('a broken routes.toml changes nothing, is counted, and check exits 64 on it', async () => {
    const good = fs.readFileSync(edge.config, 'utf8');
    // Valid TOML, but an out-of-range value; it also re-adds /qa/faye and retunes staging,
    // neither of which may happen.
    const broken = config([staging(9), { prefix: QA, tunables: { max_queue_messages: 0 } }]);
    const badLine = broken.split('\n').findIndex((l) => l.startsWith('max_queue_messages')) + 1;
    const since = lp.received.length;
    replaceFile(edge.config, broken);
    await expectReload('error');

    const res = check(edge.config);
    assert.equal(res.status, 64, `check on the broken file: ${JSON.stringify(res)}`);
    assert.match(res.stderr, new RegExp(`routes\\.toml:${badLine}:.*max_queue_messages`), `check output: ${res.stderr}`);

    assert.equal((await postJSON(edge.url(QA), [{ channel: '/meta/handshake', version: '1.0', supportedConnectionTypes: ['long-polling'] }])).status, 404,
      `${QA} came back from a rejected file`);
    await bothKeepReceiving(3, 'after the broken file');
    const advised = lp.received.slice(since).filter((m) => m.channel === '/meta/connect' && m.advice).map((m) => m.advice.timeout);
    assert.ok(advised.length > 0, 'no /meta/connect reply after the broken file');
    assert.ok(advised.every((t) => t === 3000), `staging was retuned by a rejected file: advice timeouts ${advised}`);

    replaceFile(edge.config, good);
    await expectReload('ok');
    assert.equal(check(edge.config).status, 0, 'check on the restored file');
  });

  test('rotating the certificate: new handshakes get it, established connections carry on', async () => {
    const [fp1, fp2] = leaves.map((l) => new crypto.X509Certificate(fs.readFileSync(l.cert)).fingerprint256);
    assert.equal((await tlsPeer(edge.ports.https, { ca: caPem })).fingerprint256, fp1);
    replaceFile(path.join(dir, 'certs', 'server.pem'), fs.readFileSync(leaves[1].cert));
    replaceFile(path.join(dir, 'certs', 'server-key.pem'), fs.readFileSync(leaves[1].key));
    await expectReload('ok');
    const fresh = await tlsPeer(edge.ports.https, { ca: caPem });
    assert.equal(fresh.fingerprint256, fp2, 'a new TLS handshake still gets the old certificate');

    // The WebSocket opened before the rotation is still the client's socket, on the old session.
    assert.equal(ws.client._dispatcher._transport._socket, wsSocket, 'the WebSocket client reconnected');
    assert.equal(wsSocket._stream.getPeerX509Certificate().fingerprint256, fp1);
    await bothKeepReceiving(3, 'after the certificate rotation');

    // A client arriving now handshakes against the new certificate and is served.
    const late = new TracedClient(edge.url(STAGING, 'https'), { transport: 'long-polling', ca: caPem });
    try {
      const seen = [];
      await late.subscribe(CHANNEL, (data) => seen.push(data.n));
      await late.waitConnected();
      await waitUntil(() => seen.length >= 3, { what: () => `sequence numbers on a client started after the rotation\n${late.summary()}` });
    } finally {
      await closeAll([late]);
    }
  });

  test('every number reached both clients exactly once, in order, with no re-handshake', async () => {
    publisher.stop = true;
    await publisher.done;
    if (publisher.error) throw publisher.error;
    const last = publisher.last;
    assert.ok(last >= 20, `only ${last} messages were published`);
    await waitUntil(() => got.websocket.length >= last && got['long-polling'].length >= last,
      { timeout: 10000, what: () => `all ${last} numbers (websocket has ${got.websocket.length}, long-polling ${got['long-polling'].length})` });
    const expected = Array.from({ length: last }, (_, i) => i + 1);
    for (const [transport, numbers] of Object.entries(got)) {
      assert.deepEqual(numbers, expected, `${transport} client: sequence differs`);
    }
    for (const c of [ws, lp]) {
      assert.equal(c.handshakes().length, 1, `${c.transport} client handshook ${c.handshakes().length} times`);
    }
    assert.equal(ws.client._dispatcher._transport._socket, wsSocket, 'the WebSocket client reconnected');
    const r = await reloads();
    assert.deepEqual(r, { ok: 5, error: 1 });
  });
});
