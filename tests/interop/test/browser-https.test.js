'use strict';
// The check people do by hand today, automated: an HTTPS page in a real browser loads the
// Faye bundle from the server, subscribes to one user's channel and lists what arrives.
// A backend POST shares something with user A; user A's page shows it, user B's does not.
// The WebSocket is observed through Chromium's DevTools protocol.

const { skipOrFail } = require('../support/required');
const { describe, test, before, after } = require('node:test');
const assert = require('assert/strict');
const { startTarget } = require('../support/harness');
const { launchBrowser, servePages, browserMissing } = require('../support/browser');
const { backendPublish, closeAgents } = require('../support/http');
const { waitUntil } = require('../support/wait');

const PREFIX = '/staging/faye';
const USER_A = 'userA-id';
const USER_B = 'userB-id';

function sharePage(endpoint) {
  return `<!doctype html>
<html>
<head>
<meta charset="utf-8">
<title>Shares</title>
<script src="${endpoint}/client.js"></script>
</head>
<body>
<h1>Shares for <span id="user"></span></h1>
<p id="status">connecting</p>
<ul id="shares"></ul>
<script>
  var user = new URLSearchParams(location.search).get('user');
  document.getElementById('user').textContent = user;
  var client = new Faye.Client(${JSON.stringify(endpoint)});
  var subscription = client.subscribe('/' + user, function (message) {
    var item = document.createElement('li');
    item.textContent = message && message.text ? message.text : JSON.stringify(message);
    document.getElementById('shares').appendChild(item);
  });
  subscription.then(function () {
    document.getElementById('status').textContent = 'subscribed';
  }, function (error) {
    document.getElementById('status').textContent = 'failed: ' + (error && error.message);
  });
</script>
</body>
</html>
`;
}

describe('HTTPS page in Chromium, as checked by hand', () => {
  let target;
  let browser;
  let pages;
  let skipReason = browserMissing();

  before(async () => {
    if (skipReason) return;
    target = await startTarget();
    if (!target.httpsOrigin) {
      skipReason = `the ${target.kind} target has no TLS listener (openssl missing?)`;
      return;
    }
    const endpoint = target.url(PREFIX, { tls: true });
    // The page server reuses the certificate and key of the server's https listener.
    pages = await servePages({ '/shares.html': { body: sharePage(endpoint) } }, { tls: target.tls });
    browser = await launchBrowser();
  });

  after(async () => {
    if (browser) await browser.close();
    if (pages) await pages.close();
    closeAgents();
    if (target) await target.stop();
  });

  // Opens the share page for `user` with a DevTools session recording WebSocket activity.
  async function openSharePage(user) {
    const page = await browser.context.newPage();
    const cdp = await page.context().newCDPSession(page);
    const ws = { created: [], handshakes: [], sent: [], received: [], closed: [] };
    cdp.on('Network.webSocketCreated', (e) => ws.created.push(e));
    cdp.on('Network.webSocketHandshakeResponseReceived', (e) => ws.handshakes.push(e));
    cdp.on('Network.webSocketFrameSent', (e) => ws.sent.push(e));
    cdp.on('Network.webSocketFrameReceived', (e) => ws.received.push(e));
    cdp.on('Network.webSocketClosed', (e) => ws.closed.push(e));
    await cdp.send('Network.enable');
    const errors = [];
    page.on('pageerror', (error) => errors.push(String(error)));
    await page.goto(`${pages.origin}/shares.html?user=${encodeURIComponent(user)}`);
    assert.equal(new URL(page.url()).protocol, 'https:');
    const shares = async () => page.locator('#shares li').allTextContents();
    const status = async () => page.locator('#status').textContent();
    const summary = async () => `page ${user}: status ${await status()}, shares ${JSON.stringify(await shares())}, ` +
      `websockets ${JSON.stringify(ws.created.map((e) => e.url))}, errors ${JSON.stringify(errors)}, ` +
      `last frames sent ${JSON.stringify(ws.sent.slice(-2).map((e) => e.response.payloadData))}`;
    return { user, page, ws, shares, status, summary };
  }

  // Waits until the page is subscribed and its Faye client is connected over a WebSocket to
  // the server's https listener (a /meta/connect frame went out on it).
  async function waitSubscribedOverWebSocket(view) {
    const wsPrefix = `wss://127.0.0.1:${target.ports.https}${PREFIX}`;
    let summary = '';
    await waitUntil(async () => {
      summary = await view.summary();
      if (await view.status() !== 'subscribed') return false;
      const socket = view.ws.created.find((e) => e.url.startsWith(wsPrefix));
      if (!socket) return false;
      const upgraded = view.ws.handshakes.some((e) => e.requestId === socket.requestId && e.response.status === 101);
      const connectSent = view.ws.sent.some((e) => e.requestId === socket.requestId &&
        /"channel":"\/meta\/connect"/.test(e.response.payloadData) && /"connectionType":"websocket"/.test(e.response.payloadData));
      return upgraded && connectSent;
    }, { timeout: 20000, interval: 25, what: () => `${view.user}'s page to subscribe over ${wsPrefix}: ${summary}` });
    return view.ws.created.find((e) => e.url.startsWith(wsPrefix));
  }

  test('user A sees a share POSTed by the backend; user B sees nothing', async (t) => {
    if (skipReason) return skipOrFail(t, skipReason);
    const endpoint = target.url(PREFIX, { tls: true });
    const ca = target.tls.cert;
    const a = await openSharePage(USER_A);
    const b = await openSharePage(USER_B);
    try {
      const socketA = await waitSubscribedOverWebSocket(a);
      const socketB = await waitSubscribedOverWebSocket(b);
      assert.notEqual(socketA.requestId, socketB.requestId);

      const shareForA = { text: 'a share for user A', shareId: 4711 };
      await backendPublish(endpoint, `/${USER_A}`, shareForA, { ca });

      // Page A shows it, and it came in on A's WebSocket.
      await waitUntil(async () => (await a.shares()).includes(shareForA.text), {
        timeout: 15000, interval: 25, what: 'the share on page A',
      }).catch(async (error) => { throw new Error(`${error.message}: ${await a.summary()}`); });
      assert.deepEqual(await a.shares(), [shareForA.text]);
      assert.ok(a.ws.received.some((e) => e.requestId === socketA.requestId && e.response.payloadData.includes(shareForA.text)),
        'the share did not arrive over the page\'s WebSocket');

      // Page B, subscribed and connected all along, shows nothing and received nothing.
      assert.deepEqual(await b.shares(), [], `page B shows ${JSON.stringify(await b.shares())}`);
      assert.ok(!b.ws.received.some((e) => e.response.payloadData.includes(shareForA.text)),
        'user A\'s share reached page B\'s WebSocket');
      assert.equal(await b.status(), 'subscribed');
      assert.deepEqual(b.ws.closed.filter((e) => e.requestId === socketB.requestId), [], 'page B\'s WebSocket closed');

      // B's own channel works, and a message for B queued behind A's would have come first.
      const shareForB = { text: 'a share for user B', shareId: 4712 };
      await backendPublish(endpoint, `/${USER_B}`, shareForB, { ca });
      await waitUntil(async () => (await b.shares()).length > 0, {
        timeout: 15000, interval: 25, what: 'the share on page B',
      }).catch(async (error) => { throw new Error(`${error.message}: ${await b.summary()}`); });
      assert.deepEqual(await b.shares(), [shareForB.text]);
      assert.deepEqual(await a.shares(), [shareForA.text], 'page A got user B\'s share');
    } finally {
      await a.page.close();
      await b.page.close();
    }
  });
});
