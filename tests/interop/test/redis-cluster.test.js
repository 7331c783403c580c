'use strict';
// Three bayeux-edge nodes on one real redis-server, the npm Faye client on each node over
// WebSocket and long-polling. Publishes from a Faye client on every node and backend POSTs
// to every node in turn: every subscriber on every node receives each message exactly once
// and, per publisher, in publish order. Then one long-polling client whose successive
// requests go round-robin over the three nodes (an HTTP proxy without stickiness) keeps
// its clientId and loses nothing.

const { describe, test, before, after } = require('node:test');
const assert = require('assert/strict');
const fs = require('fs');
const path = require('path');
const { TracedClient, closeAll } = require('../support/faye-node');
const { backendPublish, closeAgents } = require('../support/http');
const { edgeOnly } = require('../support/harness');
const { unavailable } = require('../support/required');
const { waitUntil } = require('../support/wait');
const { EdgeProcess, routesToml, tempDir, removeDir } = require('../support/edge-process');
const { RedisServer, hasRedis, redisRoute } = require('../support/redis-server');
const { startRoundRobin } = require('../support/round-robin-proxy');

const PREFIX = '/staging/faye';
const CHANNEL = '/room';
const PER_PUBLISHER = 15;

const skip = edgeOnly('the Redis engine') || unavailable(!hasRedis() && 'redis-server is not installed');

describe('three nodes on one Redis', { skip }, () => {
  let dir;
  let redis;
  const nodes = [];
  const clients = [];
  let proxy;

  before(async () => {
    redis = await new RedisServer().start();
    dir = tempDir('redis-cluster');
    fs.writeFileSync(path.join(dir, 'routes.toml'), routesToml({
      listeners: [{ name: 'http' }],
      routes: [redisRoute(PREFIX, { timeout_secs: 5 })],
    }));
    for (const name of ['n1', 'n2', 'n3']) {
      nodes.push(await new EdgeProcess(dir, { name, env: { EDGE_TEST_REDIS_URL: redis.url } }).start());
    }
    await waitUntil(async () => (await Promise.all(nodes.map((n) => n.readyz()))).every((s) => s === 200),
      { timeout: 10000, what: 'every node ready' });
  });

  after(async () => {
    await closeAll(clients);
    closeAgents();
    if (proxy) await proxy.close();
    for (const n of nodes) await n.stop();
    if (redis) await redis.remove();
    if (dir) removeDir(dir);
  });

  test('publishes from every node reach every subscriber on every node once, in order', async (t) => {
    const started = Date.now();
    const subscribers = [];
    for (const [i, n] of nodes.entries()) {
      for (const transport of ['websocket', 'long-polling', 'websocket', 'long-polling']) {
        const c = new TracedClient(n.url(PREFIX), { transport });
        c.node = i;
        c.got = [];
        clients.push(c);
        subscribers.push(c);
        await c.subscribe(CHANNEL, (data) => c.got.push(data));
        await c.waitConnected();
      }
    }
    const publishers = [];
    for (const n of nodes) {
      const p = new TracedClient(n.url(PREFIX), { transport: 'websocket' });
      clients.push(p);
      await p.waitPublisherReady();
      publishers.push(p);
    }
    // Clients publish concurrently (each in its own order); the backend POSTs to each node in turn.
    const backend = (async () => {
      for (let n = 1; n <= PER_PUBLISHER; n++) {
        await backendPublish(nodes[n % 3].url(PREFIX), CHANNEL, { from: 'backend', n });
      }
    })();
    await Promise.all([backend, ...publishers.map(async (p, i) => {
      for (let n = 1; n <= PER_PUBLISHER; n++) await p.publish(CHANNEL, { from: `client${i}`, n });
    })]);
    const sources = ['backend', 'client0', 'client1', 'client2'];
    const total = sources.length * PER_PUBLISHER;
    await waitUntil(() => subscribers.every((c) => c.got.length >= total), {
      timeout: 20000,
      what: () => `every subscriber to get ${total} messages; counts ${subscribers.map((c) => c.got.length)}`,
    });
    for (const c of subscribers) {
      assert.equal(c.got.length, total, `subscriber on node ${c.node} (${c.transport}) got ${c.got.length}`);
      for (const from of sources) {
        const seq = c.got.filter((d) => d.from === from).map((d) => d.n);
        assert.deepEqual(seq, Array.from({ length: PER_PUBLISHER }, (_, k) => k + 1),
          `subscriber on node ${c.node} (${c.transport}), messages from ${from}`);
      }
    }
    const xadds = redis.commandStats().xadd;
    assert.equal(xadds, total, `one XADD per publish (${xadds} for ${total})`);
    t.diagnostic(`${subscribers.length} subscribers on 3 nodes, ${total} publishes, ${Date.now() - started} ms`);
  });

  test('a long-polling client whose requests go round-robin over the nodes keeps its id and loses nothing', async (t) => {
    const started = Date.now();
    proxy = await startRoundRobin(nodes.map((n) => n.ports.http));
    const c = new TracedClient(`http://127.0.0.1:${proxy.port}${PREFIX}`, { transport: 'long-polling' });
    clients.push(c);
    c.got = [];
    await c.subscribe('/rr', (data) => c.got.push(data.n));
    await c.waitConnected();
    const id = c.clientId;
    const N = 60;
    for (let n = 1; n <= N; n++) {
      await backendPublish(nodes[n % 3].url(PREFIX), '/rr', { n });
      if (n % 10 === 0) await waitUntil(() => c.got.length >= n, { timeout: 10000, what: () => `${n} messages, have ${c.got.length}` });
    }
    await waitUntil(() => c.got.length >= N, { timeout: 10000, what: () => `${N} messages, have ${c.got.length}` });
    assert.deepEqual(c.got, Array.from({ length: N }, (_, k) => k + 1));
    assert.equal(c.clientId, id);
    assert.equal(c.handshakes().length, 1, 'the client handshook again');
    const counts = proxy.counts();
    assert.equal(Object.keys(counts).length, 3, `requests reached every node: ${JSON.stringify(counts)}`);
    t.diagnostic(`requests per node ${JSON.stringify(counts)}, ${Date.now() - started} ms`);
  });
});
