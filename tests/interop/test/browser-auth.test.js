'use strict';
// Subscribe authorization and the origin allow-list with the Faye browser bundle in
// Chromium, loaded from the edge ({prefix}/client.js) into pages of a small page server.
//
// Routes of the one bayeux-edge process:
//   /jwt/faye      subscribe = "jwt", HS256, leeway 0, grants /{sub} and /{sub}/**
//   /jwt-rs/faye   subscribe = "jwt", RS256 (for the HS/RS confusion)
//   /app/faye      subscribe = "backend": a real HTTP application allowing `user=42` on /42 only
//   /origins/faye  allowed_origins = [the page server's http://127.0.0.1:<port>]
//
// The token extension the pages use is the first ```js block of the README's "Securing
// per-user channels" section, run as is: what the README tells web apps to add is what
// is tested. Pages get their token from the page server's /token, as an app would.
//
// Cookies. The page server (http://127.0.0.1:P) and the edge (http://127.0.0.1:E) are
// different origins but the same site: a site is scheme and host (for an IP address, the
// address itself), ports do not count, and cookies are not scoped by port either. So a
// cookie the page server sets on its login page (host-only, HttpOnly, SameSite=Strict)
// is sent by Chromium on the page's WebSocket upgrade to the edge and on its credentialed
// cross-origin XHRs, exactly as an app at https://app.example.com shares a cookie with
// an edge at https://push.example.com. That is the production setup this mirrors, and
// SameSite=Strict makes the test fail should the two ever stop being same-site.
//
// Origins. http://localhost:P is the same page server under another origin; only
// http://127.0.0.1:P is listed, so the same page loaded from localhost is the stranger.

const { describe, test, before, after } = require('node:test');
const assert = require('assert/strict');
const fs = require('fs');
const path = require('path');
const { edgeOnly, REPO_ROOT } = require('../support/harness');
const { EdgeProcess, routesToml, tempDir, removeDir } = require('../support/edge-process');
const { launchBrowser, servePages, browserMissing } = require('../support/browser');
const { PageClient } = require('../support/page-client');
const { backendPublish, closeAgents } = require('../support/http');
const { waitUntil, withDeadline } = require('../support/wait');
const { unavailable } = require('../support/required');
const jwt = require('../support/jwt');
const { startAuthApp } = require('../support/auth-app');

const ROUTE = { jwt: '/jwt/faye', rs: '/jwt-rs/faye', app: '/app/faye', origins: '/origins/faye' };
const SECRET_ENV = 'INTEROP_BROWSER_JWT_SECRET';
const SECRET = require('crypto').randomBytes(48).toString('base64url');
const q = JSON.stringify;

// The README's token extension: the first ```js block after the section's heading.
function readmeSnippet() {
  const text = fs.readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');
  const at = text.indexOf('### Securing per-user channels');
  assert.ok(at >= 0, 'README.md has no "### Securing per-user channels" section');
  const block = /```js\n([\s\S]*?)```/.exec(text.slice(at));
  assert.ok(block && /function tokenExtension\(/.test(block[1]),
    'the first js block of "Securing per-user channels" must define tokenExtension(getToken)');
  return block[1];
}

const skip = edgeOnly('subscribe authorization') || unavailable(browserMissing());

describe('subscribe authorization and origins in Chromium', { skip: skip || false }, () => {
  let dir;
  let edge;
  let app;
  let pages;
  let browser;
  let keys;
  let snippet;
  // What the page server's /token does: issue tokens for the asking user with this
  // lifetime, or answer 401 when the user is "logged out".
  const tokens = { loggedIn: true, ttlSecs: 3600, issued: [] };

  // A page of the app: it loads the Faye bundle from the edge.
  const appPage = (title) => `<!doctype html><meta charset="utf-8"><title>${title}</title>` +
    `<script src="${edge.url(ROUTE.jwt)}/client.js"></script><body><p>${title}</p></body>`;

  before(async () => {
    dir = tempDir('browser-auth');
    snippet = readmeSnippet();
    keys = jwt.rsaKeyPair();
    fs.writeFileSync(path.join(dir, 'jwt-public.pem'), keys.publicKey);
    app = await startAuthApp('cookies');
    // Pages first: the origin list names the page server's origin. Page bodies are
    // functions because the edge's address is known only once it runs.
    const login = (user) => ({
      body: () => appPage(`signed in as ${user}`),
      headers: { 'Set-Cookie': `user=${user}; Path=/; HttpOnly; SameSite=Strict` },
    });
    pages = await servePages({
      '/app.html': { body: () => appPage('app') },
      '/login-42.html': login(42),
      '/login-43.html': login(43),
      '/token': {
        type: 'text/plain',
        body: (req) => {
          const sub = new URL(req.url, 'http://x').searchParams.get('sub');
          if (!tokens.loggedIn || !sub) return '';
          const token = jwt.hs256(jwt.claims(sub, { exp: jwt.nowSecs() + tokens.ttlSecs }), SECRET);
          tokens.issued.push({ sub, exp: jwt.expOf(token), at: Date.now() });
          return token;
        },
      },
    });
    const jwtCommon = {
      subscribe: q('jwt'),
      jwt_issuer: q(jwt.ISSUER),
      jwt_audience: q(jwt.AUDIENCE),
      jwt_grants: '["/{sub}", "/{sub}/**"]',
    };
    fs.writeFileSync(path.join(dir, 'routes.toml'), routesToml({
      listeners: [{ name: 'http' }],
      defaults: { timeout_secs: 10 },
      routes: [
        // Leeway 0 and a short hold (the sweeper runs every quarter of it) for the expiry test.
        { prefix: ROUTE.jwt, tunables: { ...jwtCommon, jwt_algorithm: q('HS256'), jwt_secret_env: q(SECRET_ENV), jwt_leeway_secs: 0, timeout_secs: 4 } },
        { prefix: ROUTE.rs, tunables: { ...jwtCommon, jwt_algorithm: q('RS256'), jwt_public_key_file: q('jwt-public.pem') } },
        {
          prefix: ROUTE.app,
          tunables: {
            subscribe: q('backend'),
            subscribe_backend_url: q(app.url),
            subscribe_backend_headers: '["cookie"]',
            subscribe_backend_timeout_secs: 2,
          },
        },
        { prefix: ROUTE.origins, tunables: { allowed_origins: `[${q(pages.origin)}]` } },
      ],
    }));
    process.env[SECRET_ENV] = SECRET;
    edge = await new EdgeProcess(dir, { name: 'edge-browser-auth' }).start();
    browser = await launchBrowser();
  });

  after(async () => {
    if (browser) await browser.close();
    if (pages) await pages.close();
    if (app) await app.close();
    closeAgents();
    if (edge) {
      const exit = await edge.stop();
      assert.equal(exit && exit.code, 0, `bayeux-edge exit after SIGTERM: ${JSON.stringify(exit)}\n${edge.logTail()}`);
    }
    if (dir) removeDir(dir);
  });

  const metric = async (name, route) => (await edge.metrics()).get(name, { route }) || 0;

  // Opens `pagePath` from `origin`, with a Faye client on `route` that can use only
  // `transport` ('websocket' or 'cross-origin-long-polling'; the handshake goes over
  // JSONP, which Faye always uses first from another origin). Also records, through the
  // DevTools protocol, the WebSockets Chromium opened and how each request ended.
  async function openPage(route, { transport = 'websocket', origin = pages.origin, pagePath = '/app.html', tokenFor } = {}) {
    const disabled = transport === 'websocket' ? ['eventsource'] : ['websocket', 'eventsource'];
    const endpoint = edge.url(route);
    const p = await browser.context.newPage();
    const pc = new PageClient(p, { endpoint, transport });
    await pc.watchDevTools();
    const net = { sockets: new Map(), framesSent: [], requests: new Map(), responses: [], failures: [] };
    pc.net = net;
    const socket = (id) => net.sockets.get(id) || {};
    pc.cdp.on('Network.webSocketCreated', (e) => net.sockets.set(e.requestId, { url: e.url, origin: null, status: null, error: null }));
    pc.cdp.on('Network.webSocketWillSendHandshakeRequest', (e) => { socket(e.requestId).origin = e.request.headers.Origin; });
    pc.cdp.on('Network.webSocketHandshakeResponseReceived', (e) => { socket(e.requestId).status = e.response.status; });
    // A refused upgrade has no handshake response event, only this error.
    pc.cdp.on('Network.webSocketFrameError', (e) => { socket(e.requestId).error = e.errorMessage; });
    pc.cdp.on('Network.webSocketFrameSent', (e) => net.framesSent.push({ url: socket(e.requestId).url, data: e.response.payloadData }));
    pc.cdp.on('Network.requestWillBeSent', (e) => net.requests.set(e.requestId, { url: e.request.url, method: e.request.method, type: e.type }));
    pc.cdp.on('Network.responseReceived', (e) => net.responses.push({ ...net.requests.get(e.requestId), status: e.response.status, headers: e.response.headers, requestId: e.requestId }));
    pc.cdp.on('Network.loadingFailed', (e) => net.failures.push({ ...net.requests.get(e.requestId), ...e }));
    await p.goto(`${origin}${pagePath}`);
    assert.equal(await p.evaluate(() => typeof window.Faye), 'object', 'client.js did not define Faye');
    await pc.install();
    await pc.create(disabled);
    if (tokenFor !== undefined) {
      await p.addScriptTag({ content: snippet });
      // Same-origin fetch of the page server's /token, as the README's example does.
      await p.evaluate((sub) => window.fayeHarness.client.addExtension(window.tokenExtension(
        () => fetch(`/token?sub=${encodeURIComponent(sub)}`, { credentials: 'same-origin' }).then((r) => r.text()))), String(tokenFor));
    }
    return pc;
  }

  // Connects and resolves once the client uses its forced transport.
  async function connect(pc) {
    await pc.page.evaluate(() => { window.fayeHarness.client.connect(); });
    await pc.waitFor(() => pc.handshakes().length > 0 && pc.latest.connectionType === pc.transport &&
      pc.latest.sent.some((m) => m.channel === '/meta/connect' && m.connectionType === pc.transport),
    `the client connected over ${pc.transport}`);
  }

  // Subscribes and expects a refusal; resolves the server's reply.
  async function refused(pc, channel) {
    await assert.rejects(pc.subscribe(channel), new RegExp(`subscribe ${channel.replace(/\*/g, '\\*')} failed`));
    await pc.refresh();
    const request = pc.latest.sent.filter((m) => m.channel === '/meta/subscribe' && m.subscription === channel).pop();
    const reply = request && pc.replyTo(request);
    assert.ok(reply, `no reply to the subscribe of ${channel}\n${pc.summary()}`);
    return reply;
  }

  // The WebSockets Chromium opened to `endpoint`: { url, origin, status, error }.
  const socketsTo = (pc, endpoint) => [...pc.net.sockets.values()].filter((s) => s.url === endpoint.replace(/^http/, 'ws'));

  // The client's connects (those of its current clientId when `current`) went over a
  // WebSocket Chromium opened to the endpoint and the edge accepted. (After a new
  // handshake, Faye sends its first connect over JSONP while it reopens the socket.)
  function assertOverWebSocket(pc, { current = false } = {}) {
    const sockets = socketsTo(pc, pc.endpoint);
    assert.ok(sockets.some((s) => s.status === 101), `no accepted WebSocket to ${pc.endpoint}: ${q(sockets)}`);
    const connects = pc.latest.sent.filter((m) => m.channel === '/meta/connect' && (!current || m.clientId === pc.latest.clientId));
    const types = connects.map((m) => m.connectionType);
    if (current) assert.equal(types[types.length - 1], 'websocket', q(types));
    else assert.ok(types.length > 0 && types.every((t) => t === 'websocket'), q(types));
  }

  // === jwt ===

  for (const transport of ['websocket', 'cross-origin-long-polling']) {
    test(`jwt over ${transport}: the README's extension with a token for 42 receives /42 and is refused /43, /* and /**`, async () => {
      const pc = await openPage(ROUTE.jwt, { transport, tokenFor: 42 });
      try {
        await connect(pc);
        await pc.subscribe('/42');
        await pc.subscribe('/42/inbox');
        for (const channel of ['/43', '/*', '/**']) {
          const reply = await refused(pc, channel);
          assert.equal(reply.error, `403:${channel}:Forbidden channel`, q(reply));
        }
        await backendPublish(pc.endpoint, '/43', { for: 43 });
        await backendPublish(pc.endpoint, '/42/inbox', { for: '42/inbox' });
        await backendPublish(pc.endpoint, '/42', { for: 42, transport });
        await pc.waitFor(() => pc.deliveries().length >= 2, 'the events for 42');
        assert.deepEqual(pc.latest.deliveries, [{ channel: '/42/inbox', data: { for: '42/inbox' } }, { channel: '/42', data: { for: 42, transport } }]);
        assert.deepEqual(pc.events().map((m) => m.channel), ['/42/inbox', '/42']);
        // The token never shows in what the server sent back.
        assert.ok(!JSON.stringify(pc.latest.received).includes('"token"'));
        if (transport === 'websocket') assertOverWebSocket(pc);
        else assert.deepEqual(pc.websockets.filter((u) => u.includes(ROUTE.jwt)), [], 'no WebSocket expected');
        const reply = await pc.disconnect();
        assert.equal(reply.successful, true);
      } finally {
        await pc.page.close();
      }
    });
  }

  test('jwt: expired, wrongly signed, wrong-issuer, wrong-audience, alg none and HS/RS-confused tokens refuse the handshake', async () => {
    const good = jwt.claims(42);
    const cases = [
      { what: 'expired', route: ROUTE.jwt, token: jwt.hs256(jwt.claims(42, { exp: jwt.nowSecs() - 60 }), SECRET) },
      { what: 'wrong secret', route: ROUTE.jwt, token: jwt.hs256(good, `${SECRET}-but-another`) },
      { what: 'wrong issuer', route: ROUTE.jwt, token: jwt.hs256(jwt.claims(42, { iss: 'https://evil.example.com' }), SECRET) },
      { what: 'wrong audience', route: ROUTE.jwt, token: jwt.hs256(jwt.claims(42, { aud: 'someone-else' }), SECRET) },
      { what: 'alg none', route: ROUTE.jwt, token: jwt.unsigned(good) },
      { what: 'RS256 token on the HS256 route', route: ROUTE.jwt, token: jwt.rs256(good, keys.privateKey) },
      { what: 'HS256 keyed with the public key on the RS256 route', route: ROUTE.rs, token: jwt.hs256(good, keys.publicKey) },
      { what: 'control: a good RS256 token', route: ROUTE.rs, token: jwt.rs256(good, keys.privateKey), ok: true },
      { what: 'control: a good HS256 token', route: ROUTE.jwt, token: jwt.hs256(good, SECRET), ok: true },
    ];
    const pc = await openPage(ROUTE.jwt);
    try {
      await pc.page.addScriptTag({ content: snippet });
      // One Faye client per token in the page, each with the README's extension; the
      // first handshake reply of each (over JSONP, Faye's cross-origin handshake).
      const replies = await withDeadline(pc.page.evaluate((list) => Promise.all(list.map((c) => new Promise((resolve) => {
        const client = new window.Faye.Client(c.endpoint, { retry: 600 });
        client.disable('websocket');
        client.addExtension(window.tokenExtension(() => c.token));
        client.addExtension({
          incoming(message, callback) {
            if (message.channel === '/meta/handshake') resolve(message);
            callback(message);
          },
        });
        client.connect();
      }))), cases.map((c) => ({ endpoint: edge.url(c.route), token: c.token }))), 20000, 'the handshake replies in the page');
      cases.forEach((c, i) => {
        const reply = replies[i];
        if (c.ok) {
          assert.equal(reply.successful, true, `${c.what}: ${q(reply)}`);
        } else {
          assert.equal(reply.successful, false, `${c.what}: ${q(reply)}`);
          assert.equal(reply.error, '403::Authentication failed', c.what);
          assert.equal(reply.clientId, undefined, c.what);
        }
      });
    } finally {
      await pc.page.close();
    }
  });

  test('jwt: a session whose token runs out stops receiving; the next handshake fetches a fresh token', async (t) => {
    tokens.ttlSecs = 3;
    tokens.loggedIn = true;
    const issuedBefore = tokens.issued.length;
    const pc = await openPage(ROUTE.jwt, { tokenFor: 42 });
    try {
      await connect(pc);
      await pc.subscribe('/42');
      await backendPublish(pc.endpoint, '/42', { n: 'before' });
      await pc.waitFor(() => pc.deliveries('/42').length === 1, 'the event before expiry');
      // The user "logs out": /token issues nothing more, so the client cannot come back.
      tokens.loggedIn = false;
      const exp = Math.max(...tokens.issued.slice(issuedBefore).map((i) => i.exp));
      assert.ok(Date.now() < exp * 1000, 'the set-up took longer than the token lives; the test proves nothing');

      await pc.waitFor(() => pc.latest.received.some((m) => m.channel === '/meta/connect' && m.error === '401::Authentication expired'),
        'the 401 connect reply', 15000);
      const expired = pc.latest.received.find((m) => m.error === '401::Authentication expired');
      assert.equal(expired.successful, false);
      assert.deepEqual(expired.advice, { reconnect: 'handshake' });
      t.diagnostic(`401 seen ${Date.now() - exp * 1000} ms after exp`);
      assert.ok(Date.now() >= exp * 1000);
      await pc.waitFor(() => pc.latest.received.some((m) => m.channel === '/meta/handshake' && m.error === '403::Authentication failed'),
        'the refused re-handshake (no token to be had)');

      assert.equal(await metric('bayeux_edge_subscriptions', ROUTE.jwt), 0);
      const published = await metric('bayeux_edge_messages_published_total', ROUTE.jwt);
      const delivered = await metric('bayeux_edge_messages_delivered_total', ROUTE.jwt);
      await backendPublish(pc.endpoint, '/42', { n: 'after expiry' });
      assert.equal(await metric('bayeux_edge_messages_published_total', ROUTE.jwt), published + 1);
      assert.equal(await metric('bayeux_edge_messages_delivered_total', ROUTE.jwt), delivered, 'delivered after the token ran out');

      // Signed in again: Faye's next handshake calls the extension, which fetches a
      // fresh token; the client resubscribes by itself and receives again.
      tokens.ttlSecs = 3600;
      tokens.loggedIn = true;
      await pc.waitFor(() => pc.handshakes().length >= 2 && pc.latest.received.some((m) => m.channel === '/meta/subscribe' &&
        m.successful && m.subscription === '/42' && m.clientId === pc.latest.clientId), 'the handshake and resubscribe with a fresh token', 15000);
      await backendPublish(pc.endpoint, '/42', { n: 'again' });
      await pc.waitFor(() => pc.deliveries('/42').length === 2, 'the event with the fresh token');
      assert.deepEqual(pc.deliveries('/42'), [{ n: 'before' }, { n: 'again' }]);
      assertOverWebSocket(pc, { current: true });
      await pc.disconnect();
    } finally {
      tokens.ttlSecs = 3600;
      tokens.loggedIn = true;
      await pc.page.close();
    }
  });

  // === backend ===

  for (const transport of ['websocket', 'cross-origin-long-polling']) {
    test(`backend over ${transport}: the application allows the page's user=42 cookie on /42 only`, async () => {
      const pc42 = await openPage(ROUTE.app, { transport, pagePath: '/login-42.html' });
      let pc43;
      try {
        const calls = app.calls.length;
        await connect(pc42);
        await pc42.subscribe('/42');
        for (const channel of ['/43', '/*']) {
          assert.equal((await refused(pc42, channel)).error, `403:${channel}:Forbidden channel`);
        }
        const asked = app.calls.slice(calls).filter((c) => c.body.clientId === pc42.latest.clientId);
        assert.deepEqual(asked.map((c) => [c.body.channel, c.cookie]), [['/42', 'user=42'], ['/43', 'user=42'], ['/*', 'user=42']]);
        if (transport === 'websocket') {
          // The subscribes went over the socket, so the cookie came from its upgrade request.
          assertOverWebSocket(pc42);
          const frames = pc42.net.framesSent.filter((f) => f.url === pc42.endpoint.replace(/^http/, 'ws'));
          const subscribed = frames.flatMap((f) => [].concat(JSON.parse(f.data))).filter((m) => m.channel === '/meta/subscribe').map((m) => m.subscription);
          assert.deepEqual(subscribed, ['/42', '/43', '/*'], 'the subscribes were not sent over the WebSocket');
        }

        // Another user (a new login replaces the cookie) is refused 42's channel.
        pc43 = await openPage(ROUTE.app, { transport, pagePath: '/login-43.html' });
        await connect(pc43);
        assert.equal((await refused(pc43, '/42')).error, '403:/42:Forbidden channel');
        assert.equal(app.calls.filter((c) => c.body.clientId === pc43.latest.clientId).map((c) => c.cookie).join(), 'user=43');

        await backendPublish(pc42.endpoint, '/43', { for: 43 });
        await backendPublish(pc42.endpoint, '/42', { for: 42, transport });
        await pc42.waitFor(() => pc42.deliveries().length >= 1, 'the event for 42');
        assert.deepEqual(pc42.latest.deliveries, [{ channel: '/42', data: { for: 42, transport } }]);
        await pc43.refresh();
        assert.deepEqual(pc43.events(), []);
      } finally {
        await pc42.page.close();
        if (pc43) await pc43.page.close();
        await browser.context.clearCookies();
      }
    });
  }

  // === origins ===

  for (const transport of ['websocket', 'cross-origin-long-polling']) {
    test(`origins: a page from the listed origin works over ${transport}`, async () => {
      const pc = await openPage(ROUTE.origins, { transport });
      try {
        await connect(pc);
        await pc.subscribe('/news');
        await pc.publish('/news', { from: 'page', transport });
        await backendPublish(pc.endpoint, '/news', { from: 'backend' });
        await pc.waitFor(() => pc.deliveries('/news').length >= 2, 'both events');
        assert.deepEqual(pc.deliveries('/news'), [{ from: 'page', transport }, { from: 'backend' }]);
        if (transport === 'websocket') {
          assertOverWebSocket(pc);
        } else {
          const posts = pc.net.responses.filter((r) => r.url === pc.endpoint && r.method === 'POST');
          assert.ok(posts.length > 0, 'no cross-origin POST seen');
          for (const r of posts) {
            assert.equal(r.headers['Access-Control-Allow-Origin'] || r.headers['access-control-allow-origin'], pages.origin);
          }
        }
        await pc.disconnect();
      } finally {
        await pc.page.close();
      }
    });
  }

  test('origins: a page from another origin gets no WebSocket, no JSONP and no CORS reply it may read', async () => {
    const stranger = pages.origin.replace('127.0.0.1', 'localhost');
    assert.notEqual(stranger, pages.origin);
    const pc = await openPage(ROUTE.origins, { origin: stranger });
    try {
      // The Faye bundle tries: it probes a WebSocket while it handshakes over JSONP.
      await pc.page.evaluate(() => { window.fayeHarness.client.connect(); });
      const jsonp403 = () => pc.net.responses.filter((r) => r.url.startsWith(`${pc.endpoint}?`) && r.status === 403);
      await waitUntil(() => jsonp403().length >= 2 && socketsTo(pc, pc.endpoint).some((s) => s.status !== null || s.error !== null), {
        timeout: 15000,
        what: () => `two refused JSONP handshakes and an answered WebSocket upgrade: sockets ${q([...pc.net.sockets.values()])}, ` +
          `responses ${q(pc.net.responses.map((r) => [r.method, r.url.slice(0, 80), r.status]))}`,
      });
      const sockets = socketsTo(pc, pc.endpoint);
      assert.ok(sockets.length >= 1);
      for (const s of sockets) {
        assert.equal(s.origin, stranger, 'Chromium sent the page\'s origin with the upgrade');
        assert.equal(s.status, null, `a WebSocket was accepted: ${q(s)}`);
        assert.match(s.error || '', /Unexpected response code: 403/, 'the WebSocket upgrade must be refused with 403');
      }
      for (const r of jsonp403()) assert.equal(r.type, 'Script');
      await pc.refresh();
      assert.deepEqual(pc.handshakes(), [], 'no handshake may succeed');
      assert.ok(!pc.latest.clientId, 'the page must get no clientId');

      // The long-polling request Faye's cross-origin transport makes (form-encoded POST
      // with credentials), with and without the Pragma header that makes it preflighted:
      // the browser does not let the page read either answer.
      const tryPost = (preflighted) => pc.page.evaluate(async ([endpoint, withPragma]) => {
        const message = [{ channel: '/meta/handshake', version: '1.0', supportedConnectionTypes: ['cross-origin-long-polling'] }];
        const headers = { 'Content-Type': 'application/x-www-form-urlencoded' };
        if (withPragma) headers.Pragma = 'no-cache';
        try {
          const res = await fetch(endpoint, {
            method: 'POST', credentials: 'include', headers, body: `message=${encodeURIComponent(JSON.stringify(message))}`,
          });
          return { read: true, status: res.status, body: await res.text() };
        } catch (error) {
          return { read: false, error: String(error) };
        }
      }, [pc.endpoint, preflighted]);
      for (const preflighted of [false, true]) {
        const result = await tryPost(preflighted);
        assert.equal(result.read, false, `preflighted=${preflighted}: the page read ${q(result)}`);
        assert.match(result.error, /TypeError/);
      }
      // Chromium's reasons, as DevTools reports them (the events may trail the fetches).
      const cors = () => pc.net.failures.filter((f) => f.url === pc.endpoint && f.corsErrorStatus).map((f) => f.corsErrorStatus.corsError).sort();
      await waitUntil(() => cors().length >= 2, { timeout: 5000, what: () => `two CORS failures; saw ${q(pc.net.failures)}` });
      assert.deepEqual(cors(), ['MissingAllowOriginHeader', 'PreflightMissingAllowOriginHeader']);
    } finally {
      await pc.page.close();
    }

    // The same request from the listed origin is readable.
    const ok = await openPage(ROUTE.origins);
    try {
      const result = await ok.page.evaluate(async (endpoint) => {
        const message = [{ channel: '/meta/handshake', version: '1.0', supportedConnectionTypes: ['cross-origin-long-polling'] }];
        const res = await fetch(endpoint, {
          method: 'POST', credentials: 'include', headers: { 'Content-Type': 'application/x-www-form-urlencoded', Pragma: 'no-cache' },
          body: `message=${encodeURIComponent(JSON.stringify(message))}`,
        });
        return JSON.parse(await res.text());
      }, ok.endpoint);
      assert.equal(result[0].successful, true, q(result));
    } finally {
      await ok.page.close();
    }
  });
});
