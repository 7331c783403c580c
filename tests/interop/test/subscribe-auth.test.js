'use strict';
// Subscribe authorization and the origin allow-list with the real npm Faye client.
//
// One bayeux-edge process, one route per policy:
//   /hs/faye       subscribe = "jwt", HS256 (secret from the environment), grants /{sub}, /{sub}/**
//   /rs/faye       subscribe = "jwt", RS256 (a public key written by the test)
//   /exp/faye      subscribe = "jwt", HS256, jwt_leeway_secs = 0 (a token that runs out)
//   /app/faye      subscribe = "backend": a real HTTP application allowing `user=42` on /42 only
//   /broken/faye   subscribe = "backend": the application answers 500
//   /silent/faye   subscribe = "backend": the application never answers (0.5 s timeout)
//   /origins/faye  allowed_origins = ["https://app.example.com"]
//
// The token goes in `ext.token` through an outgoing client extension added after the wire
// log's (so the log shows exactly what the server answered). Tokens are signed here with
// Node's crypto. Refusal reasons are also read from the server's debug log, so each bad
// token is shown to be refused for its own reason, not for a mistake in how the test made it.

const { describe, test, before, after } = require('node:test');
const assert = require('assert/strict');
const crypto = require('crypto');
const fs = require('fs');
const http = require('http');
const path = require('path');
const { edgeOnly } = require('../support/harness');
const { EdgeProcess, routesToml, tempDir, removeDir } = require('../support/edge-process');
const { TracedClient, closeAll } = require('../support/faye-node');
const { request, backendPublish, closeAgents } = require('../support/http');
const { waitUntil, withDeadline } = require('../support/wait');
const jwt = require('../support/jwt');
const { startAuthApp } = require('../support/auth-app');

const ROUTE = {
  hs: '/hs/faye',
  rs: '/rs/faye',
  exp: '/exp/faye',
  app: '/app/faye',
  broken: '/broken/faye',
  silent: '/silent/faye',
  origins: '/origins/faye',
};
const SECRET_ENV = 'INTEROP_AUTH_JWT_SECRET';
const SECRET = crypto.randomBytes(48).toString('base64url');
const ALLOWED_ORIGIN = 'https://app.example.com';
const TRANSPORTS = ['websocket', 'long-polling'];
const BACKEND_TIMEOUT_SECS = 0.5;

const q = JSON.stringify;

// Adds `ext.token` (from `getToken()`, called for each message) to the meta messages in
// `on`, the way a web app's extension does; after the wire log's extension.
function addToken(tc, getToken, { on = ['/meta/handshake', '/meta/subscribe'] } = {}) {
  tc.client.addExtension({
    outgoing(message, callback) {
      const token = on.includes(message.channel) ? getToken() : undefined;
      if (token !== undefined) message.ext = { ...(message.ext || {}), token };
      callback(message);
    },
  });
  return tc;
}

// Subscribes and expects a refusal; resolves the server's reply.
async function refusedSubscribe(tc, channel) {
  const before = tc.sentOn('/meta/subscribe').length;
  const subscription = tc.client.subscribe(channel, () => {});
  await assert.rejects(withDeadline(Promise.resolve(subscription), 15000, `the refusal of ${channel}\n${tc.summary()}`),
    (error) => !/timed out/.test(error.message), `subscribe ${channel} was not refused\n${tc.summary()}`);
  const sent = tc.sentOn('/meta/subscribe').slice(before).find((m) => m.subscription === channel);
  const reply = sent && tc.replyTo(sent);
  assert.ok(reply, `no /meta/subscribe reply for ${channel}\n${tc.summary()}`);
  return reply;
}

// Records on each message the time it arrived (`receivedAt`).
function stampArrivals(tc) {
  tc.client.addExtension({ incoming(message, callback) { message.receivedAt = Date.now(); callback(message); } });
  return tc;
}

// The first handshake reply, whatever it says.
async function firstHandshakeReply(tc) {
  tc.client.connect();
  return waitUntil(() => tc.repliesOn('/meta/handshake')[0], { timeout: 15000, what: () => `a handshake reply\n${tc.summary()}` });
}

describe('subscribe authorization with the npm Faye client', { skip: edgeOnly('subscribe authorization') || false }, () => {
  let dir;
  let edge;
  let keys;
  const apps = {};
  const clients = [];

  const url = (route) => edge.url(route);
  const metric = async (name, route) => (await edge.metrics()).get(name, { route }) || 0;
  const track = (tc) => { clients.push(tc); return tc; };

  before(async () => {
    dir = tempDir('auth');
    keys = jwt.rsaKeyPair();
    fs.writeFileSync(path.join(dir, 'jwt-public.pem'), keys.publicKey);
    apps.cookies = await startAuthApp('cookies');
    apps.error = await startAuthApp('error');
    apps.silent = await startAuthApp('silent');
    const jwtCommon = {
      subscribe: q('jwt'),
      jwt_issuer: q(jwt.ISSUER),
      jwt_audience: q(jwt.AUDIENCE),
      jwt_grants: '["/{sub}", "/{sub}/**"]',
    };
    const hs = { ...jwtCommon, jwt_algorithm: q('HS256'), jwt_secret_env: q(SECRET_ENV) };
    const backend = (app) => ({
      subscribe: q('backend'),
      subscribe_backend_url: q(app.url),
      subscribe_backend_headers: '["cookie"]',
      subscribe_backend_timeout_secs: BACKEND_TIMEOUT_SECS,
    });
    fs.writeFileSync(path.join(dir, 'routes.toml'), routesToml({
      listeners: [{ name: 'http' }],
      defaults: { timeout_secs: 10 },
      routes: [
        { prefix: ROUTE.hs, tunables: hs },
        { prefix: ROUTE.rs, tunables: { ...jwtCommon, jwt_algorithm: q('RS256'), jwt_public_key_file: q('jwt-public.pem') } },
        // Leeway 0 and a short hold, so the sweeper (a quarter of the hold) runs often.
        { prefix: ROUTE.exp, tunables: { ...hs, jwt_leeway_secs: 0, timeout_secs: 4 } },
        { prefix: ROUTE.app, tunables: backend(apps.cookies) },
        { prefix: ROUTE.broken, tunables: backend(apps.error) },
        { prefix: ROUTE.silent, tunables: backend(apps.silent) },
        { prefix: ROUTE.origins, tunables: { allowed_origins: `[${q(ALLOWED_ORIGIN)}]` } },
      ],
    }));
    // The edge reads the secret from its environment (it inherits ours); the debug lines
    // of the Bayeux handlers carry each refusal's reason.
    process.env[SECRET_ENV] = SECRET;
    process.env.RUST_LOG = 'info,rustls=error,bayeux_edge::engine::meta=debug';
    edge = await new EdgeProcess(dir, { name: 'edge-auth' }).start();
  });

  after(async () => {
    await closeAll(clients);
    closeAgents();
    for (const app of Object.values(apps)) await app.close();
    if (edge) {
      const exit = await edge.stop();
      assert.equal(exit && exit.code, 0, `bayeux-edge exit after SIGTERM: ${JSON.stringify(exit)}\n${edge.logTail()}`);
    }
    if (dir) removeDir(dir);
  });

  // === jwt ===

  for (const transport of TRANSPORTS) {
    test(`jwt over ${transport}: a token for user 42 receives /42 and is refused /43, /* and /**`, async () => {
      const token = jwt.hs256(jwt.claims(42), SECRET);
      const tc = track(addToken(new TracedClient(url(ROUTE.hs), { transport }), () => token));
      const refusedBefore = await metric('bayeux_edge_auth_refusals_total', ROUTE.hs);
      await tc.waitPublisherReady();
      assert.equal(tc.client._dispatcher._transport.connectionType, transport, 'subscribes go over the forced transport');
      const received = [];
      await tc.subscribe('/42', (data) => received.push(['/42', data]));
      await tc.subscribe('/42/inbox', (data) => received.push(['/42/inbox', data]));
      for (const channel of ['/43', '/*', '/**']) {
        const reply = await refusedSubscribe(tc, channel);
        assert.equal(reply.successful, false);
        assert.equal(reply.error, `403:${channel}:Forbidden channel`, JSON.stringify(reply));
      }
      assert.equal(await metric('bayeux_edge_auth_refusals_total', ROUTE.hs), refusedBefore + 3);

      await backendPublish(url(ROUTE.hs), '/43', { for: 43, transport });
      await backendPublish(url(ROUTE.hs), '/42/inbox', { for: '42/inbox', transport });
      await backendPublish(url(ROUTE.hs), '/42', { for: 42, transport });
      await waitUntil(() => received.length >= 2, { what: () => `the events for 42\n${tc.summary()}` });
      // The connection delivers in order: /43 (published first) would have come first.
      assert.deepEqual(received, [['/42/inbox', { for: '42/inbox', transport }], ['/42', { for: 42, transport }]]);
      assert.deepEqual(tc.events().map((m) => m.channel), ['/42/inbox', '/42']);
      if (transport === 'websocket') {
        assert.ok(tc.sentOn('/meta/connect').every((m) => m.connectionType === 'websocket'),
          `connects: ${q(tc.sentOn('/meta/connect').map((m) => m.connectionType))}`);
      }
      await tc.disconnect();
    });
  }

  test('jwt: a client without a token is refused /42 (its handshake is not)', async () => {
    const tc = track(new TracedClient(url(ROUTE.hs), { transport: 'long-polling' }));
    await tc.waitPublisherReady();
    const reply = await refusedSubscribe(tc, '/42');
    assert.equal(reply.error, '403:/42:Forbidden channel');
    await tc.disconnect();
  });

  test('jwt: expired, wrongly signed, wrong-issuer, wrong-audience, alg none and HS/RS-confused tokens are refused', async () => {
    const other = jwt.rsaKeyPair();
    const good = jwt.claims(42);
    const cases = [
      { what: 'expired', route: ROUTE.hs, reason: 'expired', token: jwt.hs256(jwt.claims(42, { exp: jwt.nowSecs() - 120 }), SECRET) },
      { what: 'wrong secret', route: ROUTE.hs, reason: 'bad_signature', token: jwt.hs256(good, crypto.randomBytes(48).toString('hex')) },
      { what: 'wrong issuer', route: ROUTE.hs, reason: 'wrong_issuer', token: jwt.hs256(jwt.claims(42, { iss: 'https://evil.example.com' }), SECRET) },
      { what: 'wrong audience', route: ROUTE.hs, reason: 'wrong_audience', token: jwt.hs256(jwt.claims(42, { aud: 'someone-else' }), SECRET) },
      { what: 'alg none', route: ROUTE.hs, reason: 'alg_none', token: jwt.unsigned(good) },
      { what: 'RS256 token on the HS256 route', route: ROUTE.hs, reason: 'public_key_against_hmac', token: jwt.rs256(good, keys.privateKey) },
      // The classic confusion: HMAC keyed with the route's public key, byte for byte.
      { what: 'HS256 keyed with the public key on the RS256 route', route: ROUTE.rs, reason: 'hmac_against_public_key', token: jwt.hs256(good, fs.readFileSync(path.join(dir, 'jwt-public.pem'))) },
      { what: 'RS256 signed by another key', route: ROUTE.rs, reason: 'bad_signature', token: jwt.rs256(good, other.privateKey) },
    ];

    // The same tokens are good once made right: the RS256 route takes its own key's token.
    const control = track(addToken(new TracedClient(url(ROUTE.rs), { transport: 'websocket' }), () => jwt.rs256(good, keys.privateKey)));
    await control.waitPublisherReady();
    await control.subscribe('/42');

    await Promise.all(cases.map(async (c) => {
      // On the handshake: Faye sends it over HTTP whatever the transport.
      const hsClient = track(stampArrivals(addToken(new TracedClient(url(c.route), { transport: 'long-polling' }), () => c.token)));
      const hs = await firstHandshakeReply(hsClient);
      assert.equal(hs.successful, false, `${c.what}: ${q(hs)}`);
      assert.equal(hs.error, '403::Authentication failed', c.what);
      assert.equal(hs.clientId, undefined, c.what);
      assert.deepEqual(hs.advice, { reconnect: 'handshake', interval: 1000 }, c.what);
      // Faye handshakes again by itself: after the advised second, not in a tight loop.
      const again = await waitUntil(() => hsClient.repliesOn('/meta/handshake')[1],
        { timeout: 5000, what: () => `${c.what}: the second handshake\n${hsClient.summary()}` });
      hsClient.close();
      assert.equal(again.error, '403::Authentication failed', c.what);
      assert.ok(again.receivedAt - hs.receivedAt >= 900, `${c.what}: handshook again after ${again.receivedAt - hs.receivedAt} ms`);

      // On a subscribe, after a handshake without a token, over each transport.
      for (const transport of TRANSPORTS) {
        const subClient = track(addToken(new TracedClient(url(c.route), { transport }), () => c.token, { on: ['/meta/subscribe'] }));
        await subClient.waitPublisherReady();
        const reply = await refusedSubscribe(subClient, '/42');
        subClient.close();
        assert.equal(reply.error, '403::Authentication failed', `${c.what} on a ${transport} subscribe: ${q(reply)}`);
      }
    }));

    // Each was refused for its own reason (the server logs the reason, never the token).
    const log = fs.readFileSync(edge.logFile, 'utf8');
    for (const c of cases) {
      for (const where of ['handshake', 'subscribe']) {
        const line = new RegExp(`${where} token refused route=${c.route} reason="?${c.reason}"?$`, 'm');
        assert.match(log, line, `${c.what}: no "${where} token refused … reason=${c.reason}" in the log`);
      }
      assert.ok(!log.includes(c.token.split('.')[2] || c.token), `${c.what}: the token appears in the log`);
    }
    await control.disconnect();
  });

  test('jwt: sessions whose token runs out stop receiving (websocket and long-polling), and come back with a fresh token', async (t) => {
    let token = jwt.hs256(jwt.claims(42, { exp: jwt.nowSecs() + 3 }), SECRET);
    const exp = jwt.expOf(token);
    const pair = TRANSPORTS.map((transport) => {
      // Arrival times, to time the expiry reply.
      return track(stampArrivals(addToken(new TracedClient(url(ROUTE.exp), { transport }), () => token)));
    });
    for (const tc of pair) {
      await tc.waitPublisherReady();
      await tc.subscribe('/42');
    }
    await backendPublish(url(ROUTE.exp), '/42', { n: 'before' });
    for (const tc of pair) {
      await waitUntil(() => tc.events('/42').length === 1, { what: () => `the event before expiry\n${tc.summary()}` });
    }
    assert.ok(Date.now() < exp * 1000, 'the set-up took longer than the token lives; the test proves nothing');

    const expiredReply = (tc) => tc.repliesOn('/meta/connect').find((m) => m.error === '401::Authentication expired');
    for (const tc of pair) {
      const reply = await waitUntil(() => expiredReply(tc), { timeout: 15000, what: () => `the 401 connect reply\n${tc.summary()}` });
      assert.equal(reply.successful, false);
      assert.deepEqual(reply.advice, { reconnect: 'handshake' });
      assert.ok(reply.receivedAt >= exp * 1000, `answered ${exp * 1000 - reply.receivedAt} ms before the token ran out`);
      // Answered by the route's sweeper (every quarter of the 4 s hold), not at the hold's end.
      assert.ok(reply.receivedAt - exp * 1000 < 3000, `answered ${reply.receivedAt - exp * 1000} ms after the token ran out`);
      t.diagnostic(`${tc.transport}: 401 ${reply.receivedAt - exp * 1000} ms after exp`);
    }
    // The clients handshake again with the same (expired) token, and are refused.
    for (const tc of pair) {
      await waitUntil(() => tc.repliesOn('/meta/handshake').some((m) => m.error === '403::Authentication failed'),
        { what: () => `the refused re-handshake\n${tc.summary()}` });
    }
    // Nothing is delivered any more: no subscription is left, and a publish to /42 is
    // accepted but queued for nobody.
    assert.equal(await metric('bayeux_edge_subscriptions', ROUTE.exp), 0);
    const published = await metric('bayeux_edge_messages_published_total', ROUTE.exp);
    const delivered = await metric('bayeux_edge_messages_delivered_total', ROUTE.exp);
    await backendPublish(url(ROUTE.exp), '/42', { n: 'after expiry' });
    assert.equal(await metric('bayeux_edge_messages_published_total', ROUTE.exp), published + 1);
    assert.equal(await metric('bayeux_edge_messages_delivered_total', ROUTE.exp), delivered, 'delivered after the token ran out');

    // A fresh token from the same function lets them back in: handshake, resubscribe, receive.
    token = jwt.hs256(jwt.claims(42), SECRET);
    for (const tc of pair) {
      await waitUntil(() => tc.handshakes().length >= 2 && tc.repliesOn('/meta/subscribe')
        .some((m) => m.successful && m.clientId === tc.clientId && m.subscription === '/42'),
      { what: () => `the handshake and resubscribe with a fresh token\n${tc.summary()}` });
    }
    await backendPublish(url(ROUTE.exp), '/42', { n: 'again' });
    for (const tc of pair) {
      await waitUntil(() => tc.events('/42').length === 2, { what: () => `the event with the fresh token\n${tc.summary()}` });
      assert.deepEqual(tc.events('/42').map((m) => m.data.n), ['before', 'again'], tc.transport);
    }
    await Promise.all(pair.map((tc) => tc.disconnect()));
  });

  // === backend ===

  for (const transport of TRANSPORTS) {
    test(`backend over ${transport}: the application allows user 42's cookie on /42 only`, async () => {
      const app = apps.cookies;
      const callsBefore = app.calls.length;
      const make = (cookie) => {
        const tc = track(new TracedClient(url(ROUTE.app), { transport }));
        // npm faye 1.4.3 copies these headers onto every long-polling POST and onto the
        // WebSocket upgrade request (the only request of a WebSocket the edge sees).
        if (cookie) tc.client.setHeader('Cookie', cookie);
        return tc;
      };
      const user42 = make('session=abc; user=42');
      const user43 = make('user=43');
      const anonymous = make(null);
      for (const tc of [user42, user43, anonymous]) {
        await tc.waitPublisherReady();
        assert.equal(tc.client._dispatcher._transport.connectionType, transport);
      }
      const received = [];
      await user42.subscribe('/42', (data) => received.push(data));
      for (const channel of ['/43', '/*', '/**']) {
        assert.equal((await refusedSubscribe(user42, channel)).error, `403:${channel}:Forbidden channel`);
      }
      assert.equal((await refusedSubscribe(user43, '/42')).error, '403:/42:Forbidden channel');
      assert.equal((await refusedSubscribe(anonymous, '/42')).error, '403:/42:Forbidden channel');

      // What the application was asked: one POST per check, JSON, with the cookie.
      const calls = app.calls.slice(callsBefore);
      const asked = (tc, channel) => calls.filter((c) => c.body && c.body.clientId === tc.clientId && c.body.channel === channel);
      assert.equal(asked(user42, '/42').length, 1, q(calls));
      for (const c of calls) {
        assert.equal(c.method, 'POST');
        assert.match(c.contentType || '', /^application\/json/);
        assert.deepEqual(Object.keys(c.body).sort(), ['channel', 'clientId']);
      }
      assert.equal(asked(user42, '/42')[0].cookie, 'session=abc; user=42');
      assert.equal(asked(user43, '/42')[0].cookie, 'user=43');
      assert.equal(asked(anonymous, '/42')[0].cookie, undefined);

      await backendPublish(url(ROUTE.app), '/43', { for: 43 });
      await backendPublish(url(ROUTE.app), '/42', { for: 42, transport });
      await waitUntil(() => received.length >= 1, { what: () => `the event for 42\n${user42.summary()}` });
      assert.deepEqual(received, [{ for: 42, transport }]);
      assert.deepEqual(user42.events().map((m) => m.channel), ['/42']);
      for (const tc of [user43, anonymous]) assert.deepEqual(tc.events(), []);
      await Promise.all([user42, user43, anonymous].map((tc) => tc.disconnect()));
    });
  }

  for (const [kind, route] of [['error', ROUTE.broken], ['silent', ROUTE.silent]]) {
    const what = kind === 'error' ? 'answers 500' : 'never answers';
    test(`backend: an application that ${what} refuses (websocket and long-polling)`, async () => {
      const app = apps[kind];
      await Promise.all(TRANSPORTS.map(async (transport) => {
        const tc = track(new TracedClient(url(route), { transport }));
        tc.client.setHeader('Cookie', 'user=42');
        await tc.waitPublisherReady();
        const started = Date.now();
        const reply = await refusedSubscribe(tc, '/42');
        const ms = Date.now() - started;
        assert.equal(reply.error, '403:/42:Forbidden channel', `${transport}: ${q(reply)}`);
        assert.ok(app.calls.some((c) => c.body && c.body.clientId === tc.clientId && c.body.channel === '/42' && c.cookie === 'user=42'),
          `${transport}: the application was not asked`);
        if (kind === 'silent') {
          assert.ok(ms >= BACKEND_TIMEOUT_SECS * 1000 - 50, `${transport}: refused after ${ms} ms, before the timeout`);
          assert.ok(ms < 5000, `${transport}: refused only after ${ms} ms`);
        }
        await tc.disconnect();
      }));
      assert.equal(await metric('bayeux_edge_subscriptions', route), 0);
    });
  }

  // === origins ===

  test('origins: other origins get no CORS headers, no WebSocket and no EventSource; requests without Origin are served', async () => {
    const endpoint = url(ROUTE.origins);
    const handshake = [{ channel: '/meta/handshake', version: '1.0', supportedConnectionTypes: ['long-polling'] }];
    const post = (headers) => request(endpoint, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', ...headers },
      body: JSON.stringify(handshake),
    });

    const allowed = await post({ Origin: ALLOWED_ORIGIN });
    assert.equal(allowed.status, 200);
    assert.equal(allowed.headers['access-control-allow-origin'], ALLOWED_ORIGIN);
    assert.equal(allowed.headers['access-control-allow-credentials'], 'true');
    assert.match(allowed.headers.vary || '', /\bOrigin\b/);

    for (const origin of ['https://evil.example.com', 'http://app.example.com', 'https://app.example.com:8443', 'null']) {
      const other = await post({ Origin: origin });
      assert.equal(other.headers['access-control-allow-origin'], undefined, origin);
      assert.equal(other.headers['access-control-allow-credentials'], undefined, origin);
      assert.match(other.headers.vary || '', /\bOrigin\b/, origin);
    }
    const plain = await post({});
    assert.equal(plain.status, 200);
    assert.equal(JSON.parse(plain.text)[0].successful, true, plain.text);
    assert.equal(plain.headers['access-control-allow-origin'], undefined);
    assert.match(plain.headers.vary || '', /\bOrigin\b/);

    const preflight = (origin) => request(endpoint, {
      method: 'OPTIONS',
      headers: { Origin: origin, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type,pragma' },
    });
    const okPreflight = await preflight(ALLOWED_ORIGIN);
    assert.equal(okPreflight.headers['access-control-allow-origin'], ALLOWED_ORIGIN);
    assert.match(okPreflight.headers['access-control-allow-headers'] || '', /Pragma/);
    const badPreflight = await preflight('https://evil.example.com');
    assert.equal(badPreflight.headers['access-control-allow-origin'], undefined);
    assert.equal(badPreflight.headers['access-control-allow-methods'], undefined);
    assert.match(badPreflight.headers.vary || '', /\bOrigin\b/);

    // WebSocket upgrades: refused with 403 from another origin, accepted from the listed one
    // and from a client that sends no Origin.
    const upgrade = (origin) => withDeadline(new Promise((resolve, reject) => {
      const headers = {
        Connection: 'Upgrade',
        Upgrade: 'websocket',
        'Sec-WebSocket-Version': '13',
        'Sec-WebSocket-Key': crypto.randomBytes(16).toString('base64'),
      };
      if (origin) headers.Origin = origin;
      const req = http.request(endpoint, { headers, agent: false });
      req.on('upgrade', (res, socket) => { socket.destroy(); resolve(res.statusCode); });
      req.on('response', (res) => { res.resume(); resolve(res.statusCode); });
      req.on('error', reject);
      req.end();
    }), 10000, `the upgrade answer for Origin ${origin}`);
    assert.equal(await upgrade('https://evil.example.com'), 403);
    assert.equal(await upgrade(ALLOWED_ORIGIN), 101);
    assert.equal(await upgrade(null), 101);

    // EventSource and JSONP from another origin.
    const es = await request(`${endpoint}/some-client-id`, { headers: { Accept: 'text/event-stream', Origin: 'https://evil.example.com' } });
    assert.equal(es.status, 403);
    const jsonp = (referer) => request(`${endpoint}?jsonp=cb&message=${encodeURIComponent(JSON.stringify(handshake))}`,
      { headers: { Referer: referer } });
    assert.equal((await jsonp('https://evil.example.com/page.html')).status, 403);
    // Deliberately also without Origin and Referer: a page can include the script with
    // referrerpolicy="no-referrer", so JSONP on a restricted route must say where it is used.
    const anonymousJsonp = await request(`${endpoint}?jsonp=cb&message=${encodeURIComponent(JSON.stringify(handshake))}`);
    assert.equal(anonymousJsonp.status, 403);
    const okJsonp = await jsonp(`${ALLOWED_ORIGIN}/page.html`);
    assert.equal(okJsonp.status, 200);
    assert.match(okJsonp.text, /cb\(/);
  });

  for (const transport of TRANSPORTS) {
    test(`origins: the Node Faye client (no Origin header) works on the restricted route over ${transport}`, async () => {
      const tc = track(new TracedClient(url(ROUTE.origins), { transport }));
      await tc.waitPublisherReady();
      const received = [];
      await tc.subscribe('/news', (data) => received.push(data));
      await tc.publish('/news', { transport });
      await waitUntil(() => received.length === 1, { what: () => `the event\n${tc.summary()}` });
      assert.deepEqual(received, [{ transport }]);
      await tc.disconnect();
    });
  }
});
