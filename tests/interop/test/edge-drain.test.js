'use strict';
// SIGTERM with 200 connected Faye clients, as during an ECS deployment: instance A drains
// while instance B (started on other ports, as the new task would be) takes over. There is
// no load balancer here, so the clients connect through a TCP forwarder that plays the
// NLB: new connections go to A until A reports draining, then to B.
//
// Checked: A's /readyz is 503 at once; every client moves to B by itself (re-handshake and
// resubscribe, on its own transport) before a deadline; A exits with status 0 within its
// grace period; and every message published through B after a client's resubscription was
// acknowledged reaches that client exactly once and in order.

const { describe, test, before, after } = require('node:test');
const assert = require('assert/strict');
const fs = require('fs');
const http = require('http');
const path = require('path');
const { TracedClient, closeAll } = require('../support/faye-node');
const { backendPublish, request, closeAgents } = require('../support/http');
const { edgeOnly } = require('../support/harness');
const { waitUntil, withDeadline, mapLimit, delay } = require('../support/wait');
const { EdgeProcess, routesToml, cli, tempDir, removeDir } = require('../support/edge-process');
const { startSwitchProxy } = require('../support/edge-proxy');

const PREFIX = '/staging/faye';
const CHANNEL = '/all';
const CLIENTS = 200;
const GRACE_SECS = 6; // clients are told to come back within grace/2
const HOLD_SECS = 5; // connects are held when SIGTERM arrives (a few may be between polls; that is fine too)
const MOVE_DEADLINE_MS = (GRACE_SECS + 12) * 1000;
const PUBLISH_EVERY_MS = 50;
const MAX_MESSAGES = 1500;
const AFTER_LAST_MOVE = 20; // numbers published after the last client resubscribed

// Starts a POST whose body is only half sent, and resolves once the server is reading
// it (its 100 Continue arrived). `finish()` sends the rest and resolves { status, text }.
function startSlowUpload(port, pathname, body) {
  const bytes = Buffer.from(body, 'utf8');
  const half = Math.floor(bytes.length / 2);
  return withDeadline(new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1',
      port,
      method: 'POST',
      path: pathname,
      agent: false,
      headers: { 'Content-Type': 'application/json', 'Content-Length': bytes.length, Expect: '100-continue' },
    });
    const response = new Promise((done, failed) => {
      req.on('response', (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => done({ status: res.statusCode, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', failed);
      });
      req.on('error', failed);
    });
    response.catch(() => {});
    req.on('error', reject);
    req.on('continue', () => {
      req.write(bytes.subarray(0, half), () => resolve({
        finish: () => {
          req.end(bytes.subarray(half));
          return withDeadline(response, 10000, 'the answer to the request in flight at SIGTERM');
        },
      }));
    });
    req.flushHeaders();
  }), 10000, 'the server to start reading a request body');
}

describe(`SIGTERM with ${CLIENTS} Faye clients moving to a new instance`, { skip: edgeOnly('the SIGTERM drain') || false }, () => {
  let dir;
  let a;
  let b;
  let proxy;
  const clients = [];
  const publisher = { started: 0, last: 0, stop: false, error: null, done: null };

  before(async () => {
    dir = tempDir('drain');
    fs.writeFileSync(path.join(dir, 'routes.toml'), routesToml({
      graceSecs: GRACE_SECS,
      listeners: [{ name: 'http' }],
      routes: [{ prefix: PREFIX, tunables: { timeout_secs: HOLD_SECS } }],
    }));
    [a, b] = await Promise.all([
      new EdgeProcess(dir, { name: 'edge-a' }).start(),
      new EdgeProcess(dir, { name: 'edge-b' }).start(),
    ]);
    proxy = await startSwitchProxy(a.ports.http);
  });

  after(async () => {
    publisher.stop = true;
    if (publisher.done) await publisher.done;
    await closeAll(clients);
    closeAgents();
    if (proxy) await proxy.close();
    for (const edge of [a, b]) {
      if (!edge) continue;
      const exit = await edge.stop();
      assert.equal(exit && exit.code, 0, `${edge.name} exit: ${JSON.stringify(exit)}`);
    }
    if (dir) removeDir(dir);
  });

  test('A drains, every client moves to B, nothing published through B after a move is lost', async (t) => {
    const endpoint = `http://127.0.0.1:${proxy.port}${PREFIX}`;

    // --- 200 clients on A, half WebSocket, half long-polling.
    await mapLimit(Array.from({ length: CLIENTS }, (_, i) => i), 20, async (i) => {
      const transport = i % 2 === 0 ? 'websocket' : 'long-polling';
      const c = new TracedClient(endpoint, { transport, copySent: false });
      c.index = i;
      c.numbers = [];
      c.warm = 0;
      c.timeline = []; // handshakes and /all subscribe acks, in arrival order
      c.client.addExtension({
        incoming(message, callback) {
          if (message.successful === true && message.channel === '/meta/handshake') c.timeline.push({ kind: 'handshake' });
          if (message.successful === true && message.channel === '/meta/subscribe' && message.subscription === CHANNEL) {
            // Every publish started after this point must reach the client.
            c.timeline.push({ kind: 'subscribed', floor: publisher.started });
          }
          callback(message);
        },
      });
      clients.push(c);
      await c.subscribe(CHANNEL, (data) => {
        if (data.warm) c.warm += 1;
        else c.numbers.push(data.n);
      });
      await c.waitConnected({ timeout: 30000 });
    });
    const metricsA = async () => (await a.metrics());
    await backendPublish(a.url(PREFIX), CHANNEL, { warm: true });
    await waitUntil(() => clients.every((c) => c.warm === 1), { timeout: 15000, what: 'the warm-up message on every client' });
    await waitUntil(async () => {
      const m = await metricsA();
      return m.get('bayeux_edge_connections', { route: PREFIX, transport: 'websocket' }) === CLIENTS / 2 &&
        m.get('bayeux_edge_connections', { route: PREFIX, transport: 'long-polling' }) === CLIENTS / 2;
    }, { timeout: 15000, interval: 50, what: 'every client holding a connect on A' });
    assert.equal((await metricsA()).get('bayeux_edge_sessions', { route: PREFIX }), CLIENTS);
    assert.equal(await a.readyz(), 200);
    assert.equal(await b.readyz(), 200);

    // A request whose body is still arriving when SIGTERM comes: the drain must let it
    // finish. It also keeps A alive long enough to look at its readiness, since A exits
    // as soon as its last connection is gone (well inside the grace period).
    const upload = await startSlowUpload(a.ports.http, PREFIX,
      JSON.stringify([{ channel: '/meta/handshake', version: '1.0', supportedConnectionTypes: ['long-polling'] }]));

    // --- SIGTERM to A.
    const termAt = Date.now();
    a.terminate();
    await waitUntil(async () => (await a.readyz()) === 503, { timeout: 1000, interval: 5, what: "A's /readyz to fail after SIGTERM" });
    const notReadyMs = Date.now() - termAt;
    proxy.switchTo(b.ports.http); // the NLB deregisters A
    // The container health check sees the same.
    const [healthA, healthB] = await Promise.all([a, b].map((e) => cli(['health', '--url', e.adminUrl('/readyz')])));
    assert.notEqual(healthA.status, 0, `health on draining A: ${JSON.stringify(healthA)}`);
    assert.match(healthA.stderr, /503/);
    assert.equal(healthB.status, 0, `health on B: ${JSON.stringify(healthB)}`);
    const uploaded = await upload.finish();
    assert.equal(uploaded.status, 200, `the request in flight at SIGTERM: HTTP ${uploaded.status} ${uploaded.text}`);
    assert.equal(JSON.parse(uploaded.text)[0].successful, true, uploaded.text);

    // --- The backend publishes through B from now on, steadily.
    publisher.done = (async () => {
      const deadline = Date.now() + MOVE_DEADLINE_MS + 30000;
      try {
        for (let n = 1; n <= MAX_MESSAGES && !publisher.stop && Date.now() < deadline; n++) {
          publisher.started = n;
          await backendPublish(b.url(PREFIX), CHANNEL, { n });
          publisher.last = n;
          await delay(PUBLISH_EVERY_MS);
        }
      } catch (error) {
        publisher.error = error;
      }
    })();

    // --- Every client re-handshakes with B and resubscribes by itself.
    const moved = (c) => {
      const hs = c.timeline.map((e, i) => (e.kind === 'handshake' ? i : -1)).filter((i) => i >= 0);
      if (hs.length < 2) return null;
      return c.timeline.slice(hs[hs.length - 1] + 1).find((e) => e.kind === 'subscribed') || null;
    };
    await waitUntil(() => {
      if (publisher.error) throw publisher.error;
      return clients.every(moved);
    }, {
      timeout: MOVE_DEADLINE_MS,
      interval: 50,
      what: () => {
        const stuck = clients.filter((c) => !moved(c));
        return `all clients on B; ${stuck.length} not yet, e.g.\n${stuck.slice(0, 2).map((c) => c.summary()).join('\n')}`;
      },
    });
    const movedMs = Date.now() - termAt;

    // --- A is gone, cleanly, within its grace period.
    const exit = await a.waitExit(GRACE_SECS * 1000 + 3000);
    assert.ok(exit, `A did not exit within ${GRACE_SECS} s (+3 s) of SIGTERM\n${a.logTail(2000)}`);
    assert.equal(exit.code, 0, `A exit: ${JSON.stringify(exit)}\n${a.logTail(2000)}`);
    assert.ok(exit.at - termAt <= GRACE_SECS * 1000 + 1000, `A took ${exit.at - termAt} ms to exit`);

    // --- Keep publishing a little past the last move, then check deliveries.
    const lastFloor = Math.max(...clients.map((c) => moved(c).floor));
    await waitUntil(() => {
      if (publisher.error) throw publisher.error;
      return publisher.last >= lastFloor + AFTER_LAST_MOVE;
    }, { timeout: 30000, what: `${AFTER_LAST_MOVE} publishes after the last move` });
    publisher.stop = true;
    await publisher.done;
    if (publisher.error) throw publisher.error;
    const last = publisher.last;

    const missing = (c) => {
      const have = new Set(c.numbers);
      const out = [];
      for (let n = moved(c).floor + 1; n <= last; n++) if (!have.has(n)) out.push(n);
      return out;
    };
    await waitUntil(() => clients.every((c) => missing(c).length === 0), {
      timeout: 15000,
      what: () => {
        const bad = clients.filter((c) => missing(c).length > 0);
        return `every number after each client's move; ${bad.length} clients miss some, e.g. #${bad[0].index} ` +
          `(${bad[0].transport}, floor ${moved(bad[0]).floor}) misses ${missing(bad[0]).slice(0, 10)}\n${bad[0].summary()}`;
      },
    });
    for (const c of clients) {
      for (let i = 1; i < c.numbers.length; i++) {
        assert.ok(c.numbers[i] > c.numbers[i - 1], `client #${c.index} (${c.transport}): ${c.numbers[i]} after ${c.numbers[i - 1]} (duplicate or out of order)`);
      }
      assert.equal(c.client._dispatcher.connectionType, c.transport, `client #${c.index} changed transport`);
      assert.equal(c.handshakes().length, 2, `client #${c.index} (${c.transport}) handshook ${c.handshakes().length} times`);
    }

    // --- B's view: 200 sessions, 200 subscriptions, the WebSockets all there.
    const m = await b.metrics();
    assert.equal(m.get('bayeux_edge_sessions', { route: PREFIX }), CLIENTS);
    assert.equal(m.get('bayeux_edge_subscriptions', { route: PREFIX }), CLIENTS);
    assert.equal(m.get('bayeux_edge_connections', { route: PREFIX, transport: 'websocket' }), CLIENTS / 2);
    assert.equal(proxy.open()[a.ports.http] || 0, 0, 'connections to A are still open');
    const unreachable = await request(a.adminUrl('/readyz')).then(() => false, () => true);
    assert.ok(unreachable, "A's admin listener still answers after exit");

    const floors = clients.map((c) => moved(c).floor);
    t.diagnostic(`readyz 503 after ${notReadyMs} ms; all moved after ${movedMs} ms; A exited after ${exit.at - termAt} ms; ` +
      `${last} messages, moves between #${Math.min(...floors)} and #${lastFloor}`);
  });
});
