'use strict';
// The npm Faye client in Node, forced onto each of its transports (websocket,
// long-polling): the whole client lifecycle, then recovery after a server restart.

const { describe, test, before, after } = require('node:test');
const assert = require('assert/strict');
const { startTarget } = require('../support/harness');
const { TracedClient, closeAll, NODE_TRANSPORTS } = require('../support/faye-node');
const { backendPublish, closeAgents } = require('../support/http');
const { assertClientUnknown } = require('../support/bayeux');
const { waitUntil } = require('../support/wait');

const PREFIX = '/staging/faye';

after(() => closeAgents());

for (const transport of NODE_TRANSPORTS) {
  const tag = transport === 'websocket' ? 'ws' : 'lp';

  describe(`Faye Node client over ${transport}`, () => {
    let target;
    const clients = [];
    const track = (client) => { clients.push(client); return client; };

    before(async () => { target = await startTarget(); });
    after(async () => {
      await closeAll(clients);
      if (target) await target.stop();
    });

    test('handshake, subscribe, publish and receive, unsubscribe, disconnect', async () => {
      const endpoint = target.url(PREFIX);
      const c = track(new TracedClient(endpoint, { transport }));
      const channel = `/lifecycle-${tag}`;
      const sentinel = `/lifecycle-${tag}-sentinel`;
      const got = [];

      // Handshake + subscribe.
      const subscription = await c.subscribe(channel, (data) => got.push(data));
      const [handshake] = c.handshakes();
      assert.ok(handshake, 'no successful handshake reply');
      assert.equal(typeof handshake.clientId, 'string');
      assert.match(handshake.clientId, /^[0-9a-z]+$/);
      assert.ok(handshake.supportedConnectionTypes.includes(transport),
        `handshake reply does not offer ${transport}: ${JSON.stringify(handshake)}`);
      await c.waitConnected();
      assert.equal(c.client._dispatcher.connectionType, transport);

      // Publish through the client itself; the server routes it back to the subscriber.
      const first = { n: 1, from: 'client', transport };
      await c.publish(channel, first);
      await waitUntil(() => got.length >= 1, { what: () => `delivery of ${JSON.stringify(first)}\n${c.summary()}` });
      assert.deepEqual(got[0], first);

      // A backend message reaches the subscriber over the same transport.
      const second = { n: 2, from: 'backend' };
      await backendPublish(endpoint, channel, second);
      await waitUntil(() => got.length >= 2, { what: () => `delivery of ${JSON.stringify(second)}\n${c.summary()}` });
      assert.deepEqual(got[1], second);
      const deliveredBefore = c.events(channel).length;
      assert.equal(deliveredBefore, 2, `expected exactly two events on ${channel}, saw ${deliveredBefore}`);

      // Unsubscribe, then prove nothing more arrives on that channel: messages published
      // to it before a sentinel on another channel would arrive before the sentinel.
      await c.unsubscribe(channel, subscription);
      const sentinelData = [];
      await c.subscribe(sentinel, (data) => sentinelData.push(data));
      await c.publish(channel, { n: 3, from: 'client', after: 'unsubscribe' });
      await backendPublish(endpoint, channel, { n: 4, from: 'backend', after: 'unsubscribe' });
      await backendPublish(endpoint, sentinel, { sentinel: true });
      await waitUntil(() => sentinelData.length >= 1, { what: () => `the sentinel\n${c.summary()}` });
      assert.deepEqual(sentinelData, [{ sentinel: true }]);
      assert.equal(c.events(channel).length, deliveredBefore,
        `events arrived on ${channel} after unsubscribing: ${JSON.stringify(c.events(channel).slice(deliveredBefore))}`);
      assert.equal(got.length, 2);

      // Disconnect: the server acknowledges and forgets the client.
      const clientId = c.clientId;
      const reply = await c.disconnect();
      assert.equal(reply.successful, true, `disconnect failed: ${JSON.stringify(reply)}`);
      assert.equal(reply.clientId, clientId);
      await assertClientUnknown(endpoint, clientId);
    });

    test('recovers after the server restarts: re-handshake, resubscribe, receive', async () => {
      const endpoint = target.url(PREFIX);
      const c = track(new TracedClient(endpoint, { transport }));
      const channel = `/recover-${tag}`;
      const got = [];
      await c.subscribe(channel, (data) => got.push(data));
      await c.waitConnected();
      await backendPublish(endpoint, channel, { before: 'restart' });
      await waitUntil(() => got.length >= 1, { what: () => `delivery before restart\n${c.summary()}` });

      const oldClientId = c.clientId;
      const mark = c.sent.length;
      await target.restart();
      assert.equal(target.url(PREFIX), endpoint, 'restarted server is not on the same port');

      // The old session is gone, so the client must handshake again and resubscribe.
      await waitUntil(() => c.handshakes().length >= 2, {
        timeout: 30000, what: () => `a second successful handshake\n${c.summary()}`,
      });
      const newClientId = c.handshakes()[1].clientId;
      assert.notEqual(newClientId, oldClientId, 'the new server reused the old clientId');
      await waitUntil(() => c.sent.slice(mark).some((request) => {
        if (request.channel !== '/meta/subscribe' || request.subscription !== channel) return false;
        const reply = c.replyTo(request);
        return reply && reply.successful === true && request.clientId === newClientId;
      }), { timeout: 20000, what: () => `a successful resubscribe to ${channel}\n${c.summary()}` });
      await c.waitConnected({ since: mark, timeout: 20000 });

      await backendPublish(endpoint, channel, { after: 'restart' });
      await waitUntil(() => got.length >= 2, { timeout: 15000, what: () => `delivery after restart\n${c.summary()}` });
      assert.deepEqual(got, [{ before: 'restart' }, { after: 'restart' }]);
    });
  });
}
