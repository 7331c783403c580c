'use strict';
// A real Faye client against a running bayeux-edge route, for the run-as-image test:
//   node faye-smoke.js URL CA_FILE
// 1. GET URL/client.js serves the Faye browser bundle;
// 2. a Node faye.Client handshakes and subscribes to a channel;
// 3. a message POSTed to URL (as a backend publishes) reaches that subscriber.
// With PUBLISH_SECRET set (a route with publish = "secret"), a POST without it must
// be refused and never delivered, and the POST of step 3 sends it as
// `Authorization: Bearer`. With JWT_SECRET, JWT_ISSUER and JWT_AUDIENCE set (a
// route with subscribe = "jwt" and grants /{sub} and /{sub}/**), the client
// presents an HS256 token for user `deploy-smoke` as a web app's extension
// would, and a subscription outside that user's channels must be refused.
// Prints one JSON line with what happened; exit status 0 only when all of it holds.
// The npm `faye` package comes from tests/interop/node_modules (or FAYE_MODULE_DIR).

const fs = require('fs');
const https = require('https');
const path = require('path');

const [url, caFile] = process.argv.slice(2);
if (!url || !caFile) {
  console.error('usage: node faye-smoke.js URL CA_FILE');
  process.exit(2);
}
const moduleDir = process.env.FAYE_MODULE_DIR || path.resolve(__dirname, '..', 'interop', 'node_modules');
const faye = require(require.resolve('faye', { paths: [moduleDir] }));
const ca = fs.readFileSync(caFile, 'utf8');
// The test certificate names localhost; the URL uses the loopback address.
const tls = { ca, servername: 'localhost' };
const DEADLINE_MS = 15000;
const publishSecret = process.env.PUBLISH_SECRET || '';
const jwtSecret = process.env.JWT_SECRET || '';
const JWT_USER = 'deploy-smoke';

// An HS256 token for JWT_USER, valid for five minutes.
function token() {
  const b64 = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const claims = {
    sub: JWT_USER,
    iss: process.env.JWT_ISSUER,
    aud: process.env.JWT_AUDIENCE,
    exp: Math.floor(Date.now() / 1000) + 300,
  };
  const unsigned = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  const signature = require('crypto').createHmac('sha256', jwtSecret).update(unsigned).digest('base64url');
  return `${unsigned}.${signature}`;
}

function request(method, target, body, extraHeaders = {}) {
  return new Promise((resolve, reject) => {
    const headers = body ? { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } : {};
    const req = https.request(target, {
      method,
      ...tls,
      headers: { ...headers, ...extraHeaders },
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.setTimeout(DEADLINE_MS, () => req.destroy(new Error(`${method} ${target} timed out`)));
    req.on('error', reject);
    req.end(body);
  });
}

function withDeadline(promise, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: no answer in ${DEADLINE_MS} ms`)), DEADLINE_MS); }),
  ]).finally(() => clearTimeout(timer));
}

async function main() {
  const result = {};
  const bundle = await request('GET', `${url}/client.js`);
  result.clientJs = { status: bundle.status, bytes: bundle.body.length };
  if (bundle.status !== 200 || !bundle.body.includes('Faye')) {
    throw new Error(`GET ${url}/client.js: status ${bundle.status}, ${bundle.body.length} bytes, no Faye bundle`);
  }

  const client = new faye.Client(url, { retry: 1, tls });
  if (jwtSecret) {
    // What a web app's client extension does: a token on every handshake and subscribe.
    client.addExtension({
      outgoing(message, callback) {
        if (message.channel === '/meta/handshake' || message.channel === '/meta/subscribe') {
          message.ext = { ...(message.ext || {}), token: token() };
        }
        callback(message);
      },
    });
  }
  const channel = `/${JWT_USER}/${process.pid}`;
  const nonce = `${Date.now()}-${Math.random().toString(16).slice(2)}`;
  const refusedNonce = `${nonce}-without-secret`;
  let leaked = false;
  try {
    let deliver;
    const delivered = new Promise((resolve) => { deliver = resolve; });
    const subscription = client.subscribe(channel, (data) => {
      if (data && data.nonce === refusedNonce) leaked = true;
      if (data && data.nonce === nonce) deliver(data);
    });
    await withDeadline(new Promise((resolve, reject) => {
      subscription.then(resolve, (error) => reject(new Error(`subscribe failed: ${JSON.stringify(error)}`)));
    }), 'subscribe');
    result.clientId = client._dispatcher.clientId;
    result.subscribed = channel;

    if (jwtSecret) {
      const foreign = `/someone-else-${process.pid}`;
      const refusal = await withDeadline(new Promise((resolve) => {
        client.subscribe(foreign, () => {}).then(() => resolve(null), (error) => resolve(error));
      }), `subscribe to ${foreign}`);
      // A Faye error: code, params and message, as the server wrote `403:<channel>:…`.
      result.foreignSubscription = refusal &&
        (refusal.code ? `${refusal.code}:${(refusal.params || []).join(',')}:${refusal.message}` : String(refusal));
      if (!refusal) throw new Error(`a token for ${JWT_USER} was allowed to subscribe to ${foreign}`);
    }

    if (publishSecret) {
      const refused = await request('POST', url, JSON.stringify([{ channel, data: { nonce: refusedNonce } }]));
      const refusedReplies = JSON.parse(refused.body);
      result.unauthenticated = { status: refused.status, replies: refusedReplies };
      if (!Array.isArray(refusedReplies) || !refusedReplies[0] || refusedReplies[0].successful !== false) {
        throw new Error(`POST ${url} without the publish secret was not refused: ${refused.body}`);
      }
    }

    const auth = publishSecret ? { Authorization: `Bearer ${publishSecret}` } : {};
    const published = await request('POST', url, JSON.stringify([{ channel, data: { nonce } }]), auth);
    const replies = JSON.parse(published.body);
    result.publish = { status: published.status, replies };
    if (published.status !== 200 || !Array.isArray(replies) || !replies[0] || replies[0].successful !== true) {
      throw new Error(`POST ${url}: status ${published.status}: ${published.body}`);
    }
    result.received = await withDeadline(delivered, 'delivery to the subscriber');
    // Deliveries on a channel keep their order: a refused message would have come first.
    if (leaked) throw new Error('the message POSTed without the publish secret was delivered');
    result.transport = client._dispatcher._transport && client._dispatcher._transport.connectionType;
  } finally {
    client.disconnect();
  }
  return result;
}

main().then((result) => {
  console.log(JSON.stringify({ ok: true, ...result }));
  process.exit(0);
}, (error) => {
  console.log(JSON.stringify({ ok: false, error: error.message }));
  process.exit(1);
});
