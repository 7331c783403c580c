'use strict';
// The Faye browser bundle ({prefix}/client.js) in headless Chromium, forced onto each
// browser-only transport: cross-origin-long-polling, callback-polling (JSONP) and
// eventsource. Full lifecycle, then recovery after a server restart.
//
// Pages and endpoint are on HTTPS when the target has a TLS listener (so Chromium speaks
// HTTP/2 where the server offers it), else on plain HTTP.

const { describe, test, before, after } = require('node:test');
const assert = require('assert/strict');
const { isDeepStrictEqual } = require('node:util');
const { startTarget } = require('../support/harness');
const { launchBrowser, servePages, browserMissing } = require('../support/browser');
const { PageClient, bayeuxMessagesOf } = require('../support/page-client');
const { backendPublish, closeAgents } = require('../support/http');
const { assertClientUnknown } = require('../support/bayeux');

const PREFIX = '/staging/faye';

// What each forced transport needs disabled. Long-polling (same-origin) or callback-polling
// (cross-origin) must stay available for the handshake, which Faye always sends over one of
// those; the transport used afterwards is the first usable one not disabled.
const TRANSPORTS = {
  'cross-origin-long-polling': { sameOrigin: false, disabled: ['websocket', 'eventsource'] },
  'callback-polling': { sameOrigin: false, disabled: ['websocket', 'eventsource', 'long-polling', 'cross-origin-long-polling'] },
  eventsource: { sameOrigin: true, disabled: ['websocket'] },
};

const { unavailable } = require('../support/required');

const skip = unavailable(browserMissing());

describe('Faye browser client in Chromium', { skip: skip || false }, () => {
  let target;
  let browser;
  let pages;
  let endpoint;
  let ca;

  before(async () => {
    target = await startTarget();
    const tls = Boolean(target.httpsOrigin);
    endpoint = target.url(PREFIX, { tls });
    ca = tls ? target.tls.cert : undefined;
    pages = await servePages({
      '/cross-origin.html': {
        body: `<!doctype html><meta charset="utf-8"><title>cross-origin</title>` +
          `<script src="${endpoint}/client.js"></script><body><p>cross-origin page</p></body>`,
      },
    }, { tls: tls ? target.tls : undefined });
    browser = await launchBrowser();
  });

  after(async () => {
    if (browser) await browser.close();
    if (pages) await pages.close();
    closeAgents();
    if (target) await target.stop();
  });

  // Opens a page whose Faye client can only use `transport`; resolves the PageClient.
  async function openPage(transport) {
    const { sameOrigin, disabled } = TRANSPORTS[transport];
    const page = await browser.context.newPage();
    const pc = new PageClient(page, { endpoint, transport });
    await pc.watchDevTools();
    if (sameOrigin) {
      // A document served by the server itself, so the page's origin is the endpoint's.
      await page.goto(`${endpoint}/client.js`);
      await page.addScriptTag({ url: `${endpoint}/client.js` });
    } else {
      await page.goto(`${pages.origin}/cross-origin.html`);
      assert.notEqual(new URL(pages.origin).origin, new URL(endpoint).origin);
    }
    assert.equal(await page.evaluate(() => typeof window.Faye), 'object', `${endpoint}/client.js did not define Faye`);
    await pc.install();
    await pc.create(disabled);
    return pc;
  }

  // Connect messages that must use the forced type. With eventsource the client sends
  // long-polling connects until its EventSource for the current clientId is open, so for
  // each clientId the long-polling connects before its first eventsource one are expected.
  function forcedConnects(messages, transport) {
    const connects = messages.filter((m) => m.channel === '/meta/connect');
    if (transport !== 'eventsource') return connects;
    const settled = new Set();
    return connects.filter((m) => {
      if (m.connectionType === 'eventsource') settled.add(m.clientId);
      return settled.has(m.clientId);
    });
  }

  // Asserts from Chromium's own view of the network that `pc` used its forced transport.
  function assertTransportUsed(pc, publishedData) {
    const { transport } = pc;
    assert.deepEqual(pc.websockets, [], `no WebSocket expected, Chromium opened ${JSON.stringify(pc.websockets)}`);
    const connects = forcedConnects(pc.latest.sent, transport);
    assert.ok(connects.length > 0, `the client sent no ${transport} /meta/connect`);
    assert.deepEqual([...new Set(connects.map((m) => m.connectionType))], [transport],
      `connects used ${JSON.stringify(pc.latest.sent.filter((m) => m.channel === '/meta/connect').map((m) => m.connectionType))}`);

    const wire = pc.connectRequests().filter((request) => forcedConnects(bayeuxMessagesOf(request), transport).length > 0);
    assert.ok(wire.length > 0, `Chromium made no request carrying a ${transport} /meta/connect\n${pc.summary()}`);
    for (const request of wire) {
      const types = bayeuxMessagesOf(request).filter((m) => m.channel === '/meta/connect').map((m) => m.connectionType);
      assert.deepEqual([...new Set(types)], [transport]);
      if (transport === 'cross-origin-long-polling') {
        assert.equal(request.method, 'POST');
        assert.equal(request.type, 'xhr');
        assert.match(request.postData, /^message=/, 'CORS transport posts a form-encoded message');
      } else if (transport === 'callback-polling') {
        assert.equal(request.method, 'GET');
        assert.equal(request.type, 'script');
        assert.ok(new URL(request.url).searchParams.get('jsonp'), `JSONP request without callback: ${request.url}`);
      } else {
        assert.equal(request.method, 'POST');
        assert.equal(request.type, 'xhr');
      }
    }
    if (transport === 'callback-polling') {
      const posts = pc.requests.filter((r) => r.url.startsWith(endpoint) && r.method === 'POST');
      assert.deepEqual(posts.map((r) => r.url), [], 'callback-polling must not POST');
    }
    if (transport === 'eventsource') {
      const streams = pc.requests.filter((r) => r.type === 'eventsource');
      assert.ok(streams.length > 0, 'Chromium opened no EventSource');
      assert.ok(streams.some((r) => r.url === `${endpoint}/${pc.clientId}`),
        `no EventSource for ${endpoint}/${pc.clientId}: ${JSON.stringify(streams.map((r) => r.url))}`);
      if (publishedData !== undefined) {
        const marker = JSON.stringify(publishedData);
        // Compared as values: key order carries no meaning in JSON.
        const carries = (e) => {
          try {
            return [].concat(JSON.parse(e.data)).some((m) => isDeepStrictEqual(m && m.data, publishedData));
          } catch {
            return false;
          }
        };
        assert.ok(pc.eventSourceMessages.some(carries),
          `the event ${marker} did not arrive over the EventSource stream; stream messages: ` +
          JSON.stringify(pc.eventSourceMessages.map((e) => e.data).slice(-5)));
      }
    }
  }

  for (const transport of Object.keys(TRANSPORTS)) {
    const tag = { 'cross-origin-long-polling': 'cors', 'callback-polling': 'jsonp', eventsource: 'es' }[transport];

    test(`${transport}: handshake, subscribe, publish and receive, unsubscribe, disconnect`, async () => {
      const pc = await openPage(transport);
      try {
        const channel = `/browser-${tag}`;
        const sentinel = `/browser-${tag}-sentinel`;
        await pc.subscribe(channel);
        await pc.refresh();
        const [handshake] = pc.handshakes();
        assert.ok(handshake, `no successful handshake\n${pc.summary()}`);
        assert.ok(handshake.supportedConnectionTypes.includes(transport));
        await pc.waitConnected();
        assert.equal(pc.latest.connectionType, transport);

        // Publish from the page; the text exercises the JSONP U+2028/U+2029 escaping too.
        const first = { n: 1, from: 'page', transport, text: 'caf\u00e9 \u2028 \u2029 \ud83d\ude00 \u6f22\u5b57 \u05e9\u05dc\u05d5\u05dd' };
        await pc.publish(channel, first);
        await pc.waitFor(() => pc.deliveries(channel).length >= 1, 'delivery of the page publish');
        assert.deepEqual(pc.deliveries(channel), [first]);

        const second = { n: 2, from: 'backend', transport };
        await backendPublish(endpoint, channel, second, { ca });
        await pc.waitFor(() => pc.deliveries(channel).length >= 2, 'delivery of the backend publish');
        assert.deepEqual(pc.deliveries(channel), [first, second]);
        const delivered = pc.events(channel).length;
        assert.equal(delivered, 2);

        // Unsubscribe; a sentinel on another channel proves nothing more came for `channel`.
        await pc.unsubscribe(channel);
        await pc.subscribe(sentinel);
        await pc.publish(channel, { n: 3, after: 'unsubscribe' });
        await backendPublish(endpoint, channel, { n: 4, after: 'unsubscribe' }, { ca });
        await backendPublish(endpoint, sentinel, { sentinel: true }, { ca });
        await pc.waitFor(() => pc.deliveries(sentinel).length >= 1, 'the sentinel');
        assert.equal(pc.events(channel).length, delivered,
          `events arrived on ${channel} after unsubscribing: ${JSON.stringify(pc.events(channel).slice(delivered))}`);

        assertTransportUsed(pc, second);

        const clientId = pc.clientId;
        const reply = await pc.disconnect();
        assert.equal(reply.successful, true, `disconnect failed: ${JSON.stringify(reply)}`);
        await assertClientUnknown(endpoint, clientId, { ca });
      } finally {
        await pc.page.close();
      }
    });

    test(`${transport}: recovers after the server restarts`, async () => {
      const pc = await openPage(transport);
      try {
        const channel = `/browser-recover-${tag}`;
        await pc.subscribe(channel);
        await pc.waitConnected();
        await backendPublish(endpoint, channel, { before: 'restart' }, { ca });
        await pc.waitFor(() => pc.deliveries(channel).length >= 1, 'delivery before the restart');
        const oldClientId = pc.clientId;
        const mark = pc.latest.sent.length;

        await target.restart();

        await pc.waitFor(() => pc.handshakes().length >= 2, 'a second successful handshake', 30000);
        const newClientId = pc.handshakes()[1].clientId;
        assert.notEqual(newClientId, oldClientId);
        await pc.waitFor(() => pc.latest.sent.slice(mark).some((request) => {
          if (request.channel !== '/meta/subscribe' || request.subscription !== channel || request.clientId !== newClientId) return false;
          const reply = pc.replyTo(request);
          return reply && reply.successful === true;
        }), `a successful resubscribe to ${channel}`, 20000);
        await pc.waitConnected({ since: mark, timeout: 20000 });

        const after = { after: 'restart', transport };
        await backendPublish(endpoint, channel, after, { ca });
        await pc.waitFor(() => pc.deliveries(channel).length >= 2, 'delivery after the restart', 15000);
        assert.deepEqual(pc.deliveries(channel), [{ before: 'restart' }, after]);
        assertTransportUsed(pc, after);
      } finally {
        await pc.page.close();
      }
    });
  }
});
