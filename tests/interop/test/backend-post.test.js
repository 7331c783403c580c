'use strict';
// Backends publish with one plain POST and no handshake; routes are isolated environments.

const { describe, test, before, after } = require('node:test');
const assert = require('assert/strict');
const { startTarget } = require('../support/harness');
const { TracedClient, closeAll, NODE_TRANSPORTS } = require('../support/faye-node');
const { request, backendPublish, closeAgents } = require('../support/http');
const { assertClientUnknown } = require('../support/bayeux');
const { waitUntil } = require('../support/wait');

const STAGING = '/staging/faye';
const PRODUCTION = '/production/faye';

describe('backend POST and environment isolation', () => {
  let target;
  const clients = [];
  const track = (client) => { clients.push(client); return client; };

  before(async () => { target = await startTarget({ routes: [STAGING, PRODUCTION] }); });
  after(async () => {
    await closeAll(clients);
    closeAgents();
    if (target) await target.stop();
  });

  test('a curl-style POST {"channel":"/12345","data":…} reaches Faye subscribers', async () => {
    const endpoint = target.url(STAGING);
    const subscribers = NODE_TRANSPORTS.map((transport) => {
      const c = track(new TracedClient(endpoint, { transport }));
      c.got = [];
      return c;
    });
    await Promise.all(subscribers.map((c) => c.subscribe('/12345', (data) => c.got.push(data))));
    await Promise.all(subscribers.map((c) => c.waitConnected()));

    const data = { type: 'share', id: 987, title: 'Quarterly report', tags: ['a', 'b'], nested: { ok: true, n: null } };
    const body = JSON.stringify({ channel: '/12345', data });
    const res = await request(endpoint, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) },
      body,
    });
    assert.equal(res.status, 200, `POST answered HTTP ${res.status}: ${res.text}`);
    assert.match(res.headers['content-type'], /^application\/json/);
    // PROTOCOL.md §3.1: the ack echoes only channel (no id, no clientId were sent).
    assert.deepEqual(JSON.parse(res.text), [{ channel: '/12345', successful: true }]);

    for (const c of subscribers) {
      await waitUntil(() => c.got.length >= 1, { what: () => `the POSTed message\n${c.summary()}` });
      assert.deepEqual(c.got, [data], `${c.transport} subscriber got ${JSON.stringify(c.got)}`);
      const [event] = c.events('/12345');
      assert.equal(event.clientId, undefined, 'delivered events must not carry a clientId');
    }
  });

  test('a client on /staging/faye does not receive what is POSTed to /production/faye', async () => {
    const channel = '/isolated-channel';
    const staging = track(new TracedClient(target.url(STAGING), { transport: 'websocket' }));
    const production = track(new TracedClient(target.url(PRODUCTION), { transport: 'websocket' }));
    const stagingGot = [];
    const productionGot = [];
    await staging.subscribe(channel, (data) => stagingGot.push(data));
    await production.subscribe(channel, (data) => productionGot.push(data));
    await Promise.all([staging.waitConnected(), production.waitConnected()]);

    // The production message is delivered in production (so it was really published)...
    await backendPublish(target.url(PRODUCTION), channel, { env: 'production' });
    await waitUntil(() => productionGot.length >= 1, { what: () => `production delivery\n${production.summary()}` });
    // ...and a later staging message reaches the staging client: anything routed across
    // environments would have been queued for it before this one.
    await backendPublish(target.url(STAGING), channel, { env: 'staging' });
    await waitUntil(() => stagingGot.length >= 1, { what: () => `staging delivery\n${staging.summary()}` });
    assert.deepEqual(stagingGot, [{ env: 'staging' }]);
    assert.deepEqual(staging.events(), staging.events(channel));
    assert.equal(staging.events().length, 1, `staging saw ${JSON.stringify(staging.events())}`);
    assert.deepEqual(productionGot, [{ env: 'production' }]);

    // Sessions do not cross environments either.
    await assertClientUnknown(target.url(PRODUCTION), staging.clientId);
    await assertClientUnknown(target.url(STAGING), production.clientId);
  });
});
