'use strict';
// Rolling deploy with the Redis engine: nodes A and B on one redis-server behind a
// switchable TCP proxy (the NLB), 200 Faye clients (half WebSocket, half long-polling) on
// A, a backend publishing steadily. SIGTERM A while publishing; the proxy sends new
// connections to B. Every client must end on B with its original clientId (no second
// handshake), and every message published from before the SIGTERM to after the last move
// must be received exactly once and in order.

const { describe, test, before, after } = require('node:test');
const assert = require('assert/strict');
const fs = require('fs');
const path = require('path');
const { TracedClient, closeAll } = require('../support/faye-node');
const { backendPublish, closeAgents } = require('../support/http');
const { edgeOnly } = require('../support/harness');
const { unavailable } = require('../support/required');
const { waitUntil, mapLimit, delay } = require('../support/wait');
const { EdgeProcess, routesToml, tempDir, removeDir } = require('../support/edge-process');
const { startSwitchProxy } = require('../support/edge-proxy');
const { RedisServer, hasRedis, redisRoute } = require('../support/redis-server');

const PREFIX = '/staging/faye';
const CHANNEL = '/all';
const CLIENTS = 200;
const GRACE_SECS = 6;
const HOLD_SECS = 5;
const PUBLISH_EVERY_MS = 40;

const skip = edgeOnly('the Redis engine') || unavailable(!hasRedis() && 'redis-server is not installed');

describe(`rolling deploy of ${CLIENTS} clients between two Redis nodes`, { skip }, () => {
  let dir;
  let redis;
  let a;
  let b;
  let proxy;
  const clients = [];
  const publisher = { last: 0, stop: false, error: null, done: null };

  before(async () => {
    redis = await new RedisServer().start();
    dir = tempDir('redis-deploy');
    fs.writeFileSync(path.join(dir, 'routes.toml'), routesToml({
      graceSecs: GRACE_SECS,
      listeners: [{ name: 'http' }],
      routes: [redisRoute(PREFIX, { timeout_secs: HOLD_SECS })],
    }));
    const env = { EDGE_TEST_REDIS_URL: redis.url };
    [a, b] = await Promise.all([
      new EdgeProcess(dir, { name: 'edge-a', env }).start(),
      new EdgeProcess(dir, { name: 'edge-b', env }).start(),
    ]);
    await waitUntil(async () => (await a.readyz()) === 200 && (await b.readyz()) === 200, { timeout: 10000, what: 'both nodes ready' });
    proxy = await startSwitchProxy(a.ports.http);
  });

  after(async () => {
    publisher.stop = true;
    if (publisher.done) await publisher.done;
    await closeAll(clients);
    closeAgents();
    if (proxy) await proxy.close();
    for (const edge of [a, b]) if (edge) await edge.stop();
    if (redis) await redis.remove();
    if (dir) removeDir(dir);
  });

  test('SIGTERM A: every client moves to B with its clientId, nothing lost or repeated', async (t) => {
    const started = Date.now();
    const endpoint = `http://127.0.0.1:${proxy.port}${PREFIX}`;
    await mapLimit(Array.from({ length: CLIENTS }, (_, i) => i), 20, async (i) => {
      const transport = i % 2 === 0 ? 'websocket' : 'long-polling';
      const c = new TracedClient(endpoint, { transport, copySent: false });
      c.index = i;
      c.numbers = [];
      clients.push(c);
      await c.subscribe(CHANNEL, (data) => c.numbers.push(data.n));
      await c.waitConnected({ timeout: 30000 });
      c.originalId = c.clientId;
    });
    assert.equal((await a.metrics()).get('bayeux_edge_sessions', { route: PREFIX }), CLIENTS);

    // The backend publishes through B throughout (B is the node that stays).
    publisher.done = (async () => {
      try {
        for (let n = 1; !publisher.stop && n <= 5000; n++) {
          await backendPublish(b.url(PREFIX), CHANNEL, { n });
          publisher.last = n;
          await delay(PUBLISH_EVERY_MS);
        }
      } catch (error) {
        publisher.error = error;
      }
    })();
    await waitUntil(() => publisher.last >= 10, { timeout: 10000, what: 'publishing under way' });

    const termAt = Date.now();
    a.terminate();
    await waitUntil(async () => (await a.readyz().catch(() => 503)) === 503, { timeout: 2000, interval: 5, what: "A's /readyz to fail" });
    proxy.switchTo(b.ports.http);
    const exit = await a.waitExit(GRACE_SECS * 1000 + 5000);
    assert.ok(exit, `A did not exit within its grace period\n${a.logTail(2000)}`);
    assert.equal(exit.code, 0, `A exit: ${JSON.stringify(exit)}\n${a.logTail(2000)}`);

    // Every client is served by B now: B holds every session.
    await waitUntil(async () => (await b.metrics()).get('bayeux_edge_sessions', { route: PREFIX }) === CLIENTS,
      { timeout: 30000, interval: 100, what: 'B to hold every session' });
    const movedMs = Date.now() - termAt;
    // Publish a little more after everyone moved, then stop and compare.
    const target = publisher.last + 20;
    await waitUntil(() => { if (publisher.error) throw publisher.error; return publisher.last >= target; },
      { timeout: 20000, what: 'publishes after the move' });
    publisher.stop = true;
    await publisher.done;
    if (publisher.error) throw publisher.error;
    const last = publisher.last;
    const expected = Array.from({ length: last }, (_, k) => k + 1);
    await waitUntil(() => clients.every((c) => c.numbers.length >= last), {
      timeout: 20000,
      what: () => {
        const bad = clients.filter((c) => c.numbers.length < last);
        return `all ${last} messages on every client; ${bad.length} short, e.g. #${bad[0].index} (${bad[0].transport}) has ${bad[0].numbers.length}\n${bad[0].summary()}`;
      },
    });
    for (const c of clients) {
      assert.deepEqual(c.numbers, expected, `client #${c.index} (${c.transport}): lost, repeated or out of order`);
      assert.equal(c.clientId, c.originalId, `client #${c.index} changed clientId`);
      assert.equal(c.handshakes().length, 1, `client #${c.index} (${c.transport}) handshook again`);
      assert.equal(c.client._dispatcher.connectionType, c.transport, `client #${c.index} changed transport`);
    }
    assert.equal(proxy.open()[a.ports.http] || 0, 0, 'connections to A still open');
    t.diagnostic(`${CLIENTS} clients moved in ${movedMs} ms; ${last} messages each, exactly once; A exited after ${exit.at - termAt} ms; test ${Date.now() - started} ms`);
  });
});
