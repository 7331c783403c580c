'use strict';
// Failures with the Redis engine, real processes throughout.
//
// kill -9 of a node: its Faye clients (WebSocket and long-polling) reconnect through the
// proxy to the other node with their clientId (their session is alive in Redis) and
// receive everything published after they reconnected.
//
// redis-server restarted mid-run: the nodes recover without a restart. A backend publishes
// steadily to both nodes; publishes while Redis is down are refused with a Bayeux error
// (never acknowledged), and every acknowledged publish reaches every client exactly once,
// in order. The test reports exactly what was refused.

const { describe, test, before, after } = require('node:test');
const assert = require('assert/strict');
const fs = require('fs');
const path = require('path');
const { TracedClient, closeAll } = require('../support/faye-node');
const { postJSON, backendPublish, closeAgents } = require('../support/http');
const { edgeOnly } = require('../support/harness');
const { unavailable } = require('../support/required');
const { waitUntil, mapLimit, delay } = require('../support/wait');
const { EdgeProcess, routesToml, tempDir, removeDir } = require('../support/edge-process');
const { startSwitchProxy } = require('../support/edge-proxy');
const { RedisServer, hasRedis, redisRoute } = require('../support/redis-server');

const PREFIX = '/staging/faye';
const skip = edgeOnly('the Redis engine') || unavailable(!hasRedis() && 'redis-server is not installed');

async function twoNodes(tag, redis, tunables) {
  const dir = tempDir(tag);
  fs.writeFileSync(path.join(dir, 'routes.toml'), routesToml({
    graceSecs: 2,
    listeners: [{ name: 'http' }],
    routes: [redisRoute(PREFIX, tunables)],
  }));
  const env = { EDGE_TEST_REDIS_URL: redis.url };
  const nodes = await Promise.all(['a', 'b'].map((n) => new EdgeProcess(dir, { name: `edge-${n}`, env }).start()));
  await waitUntil(async () => (await Promise.all(nodes.map((n) => n.readyz()))).every((s) => s === 200),
    { timeout: 10000, what: 'both nodes ready' });
  return { dir, nodes };
}

describe('kill -9 of a Redis node', { skip }, () => {
  let redis;
  let dir;
  let nodes = [];
  let proxy;
  const clients = [];

  before(async () => {
    redis = await new RedisServer().start();
    ({ dir, nodes } = await twoNodes('redis-kill', redis, { timeout_secs: 3 }));
    proxy = await startSwitchProxy(nodes[0].ports.http);
  });

  after(async () => {
    await closeAll(clients);
    closeAgents();
    if (proxy) await proxy.close();
    for (const n of nodes) await n.stop();
    if (redis) await redis.remove();
    if (dir) removeDir(dir);
  });

  test('clients of the killed node resume on the other with their id and get what follows', async (t) => {
    const started = Date.now();
    const [a, b] = nodes;
    const endpoint = `http://127.0.0.1:${proxy.port}${PREFIX}`;
    await mapLimit(Array.from({ length: 40 }, (_, i) => i), 10, async (i) => {
      const c = new TracedClient(endpoint, { transport: i % 2 === 0 ? 'websocket' : 'long-polling', retry: 0.2 });
      c.index = i;
      c.numbers = [];
      clients.push(c);
      await c.subscribe('/k', (data) => c.numbers.push(data.n));
      await c.waitConnected();
      c.originalId = c.clientId;
    });
    let n = 0;
    for (; n < 10; n++) await backendPublish(b.url(PREFIX), '/k', { n: n + 1 });
    await waitUntil(() => clients.every((c) => c.numbers.length >= 10), { timeout: 10000, what: 'the first ten everywhere' });

    proxy.switchTo(b.ports.http);
    const sentBefore = clients.map((c) => c.sent.length);
    a.kill();
    await a.waitExit(5000);
    // Each client has reconnected once a connect sent after the kill succeeded on B.
    await waitUntil(() => clients.every((c, i) => c.sent.slice(sentBefore[i]).some((m) => {
      if (m.channel !== '/meta/connect') return false;
      const reply = c.replyTo(m);
      return (reply && reply.successful === true) || (c.transport === 'websocket' && c.client._dispatcher._transport && c.client._dispatcher._transport._socket && c.client._dispatcher._transport._socket.readyState === 1);
    })), { timeout: 30000, interval: 50, what: () => 'every client reconnected to B' });
    await waitUntil(async () => (await b.metrics()).get('bayeux_edge_sessions', { route: PREFIX }) === clients.length,
      { timeout: 15000, interval: 100, what: 'B to hold every session' });
    const floor = n;
    for (; n < floor + 20; n++) await backendPublish(b.url(PREFIX), '/k', { n: n + 1 });
    const after = (c) => c.numbers.filter((x) => x > floor);
    await waitUntil(() => clients.every((c) => after(c).length >= 20), {
      timeout: 15000,
      what: () => { const bad = clients.find((c) => after(c).length < 20); return `20 messages after the reconnect; #${bad.index} has ${after(bad)}\n${bad.summary()}`; },
    });
    let duplicates = 0;
    for (const c of clients) {
      assert.deepEqual(after(c), Array.from({ length: 20 }, (_, k) => floor + k + 1), `client #${c.index} (${c.transport})`);
      assert.equal(c.clientId, c.originalId, `client #${c.index} changed clientId`);
      assert.equal(c.handshakes().length, 1, `client #${c.index} handshook again`);
      duplicates += c.numbers.length - new Set(c.numbers).size;
    }
    t.diagnostic(`40 clients resumed on B with their ids; ${duplicates} duplicate deliveries of messages from before the kill; ${Date.now() - started} ms`);
  });
});

describe('redis-server restarted mid-run', { skip }, () => {
  let redis;
  let dir;
  let nodes = [];
  const clients = [];

  before(async () => {
    redis = await new RedisServer().start();
    ({ dir, nodes } = await twoNodes('redis-restart', redis, { timeout_secs: 5 }));
  });

  after(async () => {
    await closeAll(clients);
    closeAgents();
    for (const n of nodes) await n.stop();
    if (redis) await redis.remove();
    if (dir) removeDir(dir);
  });

  test('the nodes recover by themselves; refused publishes are reported, acknowledged ones all delivered', async (t) => {
    const started = Date.now();
    for (const [i, node] of nodes.entries()) {
      for (const transport of ['websocket', 'long-polling']) {
        const c = new TracedClient(node.url(PREFIX), { transport });
        c.node = i;
        c.numbers = [];
        clients.push(c);
        await c.subscribe('/r', (data) => c.numbers.push(data.n));
        await c.waitConnected();
        c.originalId = c.clientId;
      }
    }
    const acked = [];
    const refused = [];
    let n = 0;
    const publishOne = async () => {
      n += 1;
      const res = await postJSON(nodes[n % 2].url(PREFIX), { channel: '/r', data: { n } });
      const ack = Array.isArray(res.json) && res.json[0];
      if (ack && ack.successful === true) acked.push(n);
      else {
        assert.match(String(ack && ack.error), /^503:\/r:Storage unavailable$/, `publish ${n}: ${res.text}`);
        refused.push(n);
      }
    };
    for (let i = 0; i < 20; i++) { await publishOne(); await delay(20); }
    await redis.stop();
    const downAt = Date.now();
    // While Redis is down: publishes are refused, /readyz says which route, clients stay connected.
    await waitUntil(async () => (await nodes[0].readyz()) === 503, { timeout: 5000, what: '/readyz 503 while Redis is down' });
    for (let i = 0; i < 20; i++) { await publishOne(); await delay(50); }
    const metrics = await nodes[0].metrics();
    assert.equal(metrics.get('bayeux_edge_redis_up', { route: PREFIX }), 0);
    assert.ok(metrics.get('bayeux_edge_redis_errors_total', { route: PREFIX }) > 0);
    await redis.restart();
    const upAt = Date.now();
    await waitUntil(async () => (await Promise.all(nodes.map((x) => x.readyz()))).every((s) => s === 200),
      { timeout: 15000, what: 'both nodes ready again without a restart' });
    for (let i = 0; i < 20; i++) { await publishOne(); await delay(20); }
    await waitUntil(() => clients.every((c) => c.numbers.length >= acked.length), {
      timeout: 20000,
      what: () => `every acknowledged publish (${acked.length}) on every client; counts ${clients.map((c) => c.numbers.length)}`,
    });
    for (const c of clients) {
      assert.deepEqual(c.numbers, acked, `client on node ${c.node} (${c.transport})`);
      assert.equal(c.clientId, c.originalId);
      assert.equal(c.handshakes().length, 1, `client on node ${c.node} (${c.transport}) handshook again`);
    }
    assert.ok(refused.length > 0, 'no publish was refused while Redis was down');
    t.diagnostic(`Redis down for ${upAt - downAt} ms: ${refused.length} publishes refused with 503 (never acknowledged): ${JSON.stringify(refused)}; ` +
      `${acked.length} acknowledged, all delivered once to all ${clients.length} clients; nothing else lost; ${Date.now() - started} ms`);
  });
});
