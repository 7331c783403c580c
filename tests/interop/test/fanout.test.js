'use strict';
// Many clients: 200 on one channel, and 1,000 users each on their own channel.

const { describe, test, before, after } = require('node:test');
const assert = require('assert/strict');
const { startTarget } = require('../support/harness');
const { TracedClient } = require('../support/faye-node');
const { backendPublish, closeAgents } = require('../support/http');
const { waitUntil, mapLimit } = require('../support/wait');

const PREFIX = '/staging/faye';
const SETUP_CONCURRENCY = 25;
const POST_CONCURRENCY = 8;

// Creates `count` clients, subscribes each with `subscribe(client, index)` and waits until
// every one is connected on its transport. Setup runs a bounded number at a time.
async function connectMany(endpoint, count, { transportFor, subscribe, clients }) {
  const made = await mapLimit(Array.from({ length: count }, (_, i) => i), SETUP_CONCURRENCY, async (i) => {
    const c = new TracedClient(endpoint, { transport: transportFor(i), copySent: false, retry: 2 });
    clients.push(c);
    c.got = [];
    await subscribe(c, i);
    await c.waitConnected({ timeout: 30000 });
    return c;
  });
  return made;
}

describe('fan-out', () => {
  let target;
  let clients = [];

  before(async () => { target = await startTarget(); });
  after(async () => {
    for (const c of clients) c.close();
    closeAgents();
    if (target) await target.stop();
  });

  test('200 Faye clients on one channel all receive a message', async () => {
    const endpoint = target.url(PREFIX);
    const channel = '/fanout-200';
    // Mostly websocket, every fourth on long-polling.
    const group = await connectMany(endpoint, 200, {
      clients,
      transportFor: (i) => (i % 4 === 3 ? 'long-polling' : 'websocket'),
      subscribe: (c) => c.subscribe(channel, (data) => c.got.push(data), { timeout: 30000 }),
    });
    const message = { kind: 'fanout', text: 'to everyone' };
    await backendPublish(endpoint, channel, message);
    await waitUntil(() => group.every((c) => c.got.length >= 1), {
      timeout: 30000,
      what: () => `all 200 to receive; still waiting: ${group.filter((c) => c.got.length === 0).length}`,
    });
    for (const c of group) {
      assert.deepEqual(c.got, [message], `${c.clientId} (${c.transport}) got ${JSON.stringify(c.got)}`);
    }
    for (const c of group) c.close();
    clients = [];
  });

  test('1,000 per-user channels: each user receives only their own message', async () => {
    const endpoint = target.url(PREFIX);
    const userIds = Array.from({ length: 1000 }, (_, i) => String(100000 + i));
    const done = '/per-user-done';
    const users = await connectMany(endpoint, userIds.length, {
      clients,
      transportFor: () => 'websocket',
      subscribe: async (c, i) => {
        c.userId = userIds[i];
        await c.subscribe(`/${c.userId}`, (data) => c.got.push(data), { timeout: 30000 });
        await c.subscribe(done, () => { c.done = true; }, { timeout: 30000 });
      },
    });

    // One backend POST per user, then one broadcast. A client receives its messages in
    // publish order, so once it has the broadcast anything misrouted to it is already there.
    await mapLimit(userIds, POST_CONCURRENCY, (userId) =>
      backendPublish(endpoint, `/${userId}`, { userId, share: `a share for user ${userId}` }));
    await backendPublish(endpoint, done, { done: true });

    await waitUntil(() => users.every((c) => c.done), {
      timeout: 60000,
      what: () => `the broadcast at every client; missing at ${users.filter((c) => !c.done).length}`,
    });
    for (const c of users) {
      assert.deepEqual(c.got, [{ userId: c.userId, share: `a share for user ${c.userId}` }],
        `user ${c.userId} received ${JSON.stringify(c.got)}`);
      const channels = c.events().map((m) => m.channel);
      assert.deepEqual(channels, [`/${c.userId}`, done], `user ${c.userId} saw events on ${channels.join(', ')}`);
    }
  });
});
