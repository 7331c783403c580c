// The npm CometD JavaScript client (with the cometd-nodejs-client adapter) over websocket
// and over long-polling: handshake, subscribe, publish, receive, disconnect.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { adapt } from 'cometd-nodejs-client';
import { CometD } from 'cometd';

const require = createRequire(import.meta.url);
const { startTarget } = require('../support/harness');
const { backendPublish, closeAgents } = require('../support/http');
const { waitUntil, withDeadline } = require('../support/wait');

// Installs XMLHttpRequest and WebSocket (from `ws`) where the CometD client looks for them.
adapt();

const PREFIX = '/staging/faye';
const ALL_TRANSPORTS = ['websocket', 'long-polling', 'callback-polling'];

function tracedCometD(url, transport) {
  const cometd = new CometD(`interop-${transport}`);
  for (const type of ALL_TRANSPORTS) {
    if (type !== transport) cometd.unregisterTransport(type);
  }
  assert.deepEqual(cometd.getTransportTypes(), [transport]);
  cometd.configure({ url, logLevel: 'warn', useWorkerScheduler: false, maxNetworkDelay: 10000 });
  const sent = [];
  const received = [];
  cometd.registerExtension('trace', {
    outgoing(message) { sent.push(JSON.parse(JSON.stringify(message))); return message; },
    incoming(message) { received.push(message); return message; },
  });
  const summary = () => `CometD over ${transport}, status ${cometd.getStatus()}\n` +
    `  last sent: ${sent.slice(-3).map((m) => JSON.stringify(m)).join('\n             ')}\n` +
    `  last received: ${received.slice(-3).map((m) => JSON.stringify(m)).join('\n                 ')}`;
  return { cometd, sent, received, summary };
}

function call(what, summary, start) {
  return withDeadline(new Promise((resolve) => start(resolve)), 15000, `${what}\n${summary()}`);
}

describe('CometD client', () => {
  let target;
  const opened = [];

  before(async () => { target = await startTarget(); });
  after(async () => {
    for (const cometd of opened) {
      if (!cometd.isDisconnected()) {
        await withDeadline(new Promise((resolve) => cometd.disconnect(resolve)), 5000, 'CometD disconnect').catch(() => {});
      }
    }
    closeAgents();
    if (target) await target.stop();
  });

  for (const transport of ['websocket', 'long-polling']) {
    test(`over ${transport}: handshake, subscribe, publish, receive`, async () => {
      const endpoint = target.url(PREFIX);
      const { cometd, sent, received, summary } = tracedCometD(endpoint, transport);
      opened.push(cometd);
      const channel = `/cometd-${transport}`;

      const handshake = await call('the handshake reply', summary, (done) => cometd.handshake(done));
      assert.equal(handshake.successful, true, `handshake failed: ${JSON.stringify(handshake)}`);
      assert.ok(handshake.supportedConnectionTypes.includes(transport));
      assert.equal(cometd.getTransport().type, transport);

      const got = [];
      const subscribeReply = await call(`the subscribe reply for ${channel}`, summary,
        (done) => cometd.subscribe(channel, (message) => got.push(message), done));
      assert.equal(subscribeReply.successful, true, `subscribe failed: ${JSON.stringify(subscribeReply)}`);

      // A successful /meta/connect on the forced transport.
      await waitUntil(() => received.some((m) => m.channel === '/meta/connect' && m.successful === true), {
        what: () => `a successful /meta/connect\n${summary()}`,
      });
      const connects = sent.filter((m) => m.channel === '/meta/connect');
      assert.ok(connects.length > 0 && connects.every((m) => m.connectionType === transport),
        `connects not all on ${transport}: ${JSON.stringify(connects)}`);

      const payload = { from: 'cometd', transport, text: 'hello' };
      const publishReply = await call(`the publish reply on ${channel}`, summary,
        (done) => cometd.publish(channel, payload, done));
      assert.equal(publishReply.successful, true, `publish failed: ${JSON.stringify(publishReply)}`);
      await waitUntil(() => got.length >= 1, { what: () => `delivery of the CometD publish\n${summary()}` });
      assert.equal(got[0].channel, channel);
      assert.deepEqual(got[0].data, payload);

      await backendPublish(endpoint, channel, { from: 'backend' });
      await waitUntil(() => got.length >= 2, { what: () => `delivery of the backend publish\n${summary()}` });
      assert.deepEqual(got[1].data, { from: 'backend' });
      assert.equal(got.length, 2);

      const disconnectReply = await call('the disconnect reply', summary, (done) => cometd.disconnect(done));
      assert.equal(disconnectReply.successful, true, `disconnect failed: ${JSON.stringify(disconnectReply)}`);
    });
  }
});
