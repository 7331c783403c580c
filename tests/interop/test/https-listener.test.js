'use strict';
// The TLS listener: the Node Faye client over wss:// and https long-polling, trusting only
// the listener's certificate; and the generated development certificate itself.

const { skipOrFail } = require('../support/required');
const { describe, test, before, after } = require('node:test');
const assert = require('assert/strict');
const crypto = require('crypto');
const tls = require('tls');
const { startTarget, edgeOnly } = require('../support/harness');
const { TracedClient, closeAll, NODE_TRANSPORTS } = require('../support/faye-node');
const { backendPublish, request, closeAgents } = require('../support/http');
const { waitUntil } = require('../support/wait');

const PREFIX = '/staging/faye';

describe('HTTPS listener', () => {
  let target;
  const clients = [];

  before(async () => { target = await startTarget(); });
  after(async () => {
    await closeAll(clients);
    closeAgents();
    if (target) await target.stop();
  });

  for (const transport of NODE_TRANSPORTS) {
    test(`Faye Node client over TLS (${transport === 'websocket' ? 'wss' : 'https long-polling'})`, async (t) => {
      if (!target.httpsOrigin) return skipOrFail(t, `the ${target.kind} target has no TLS listener (openssl missing?)`);
      const endpoint = target.url(PREFIX, { tls: true });
      const ca = target.tls.cert;
      const c = new TracedClient(endpoint, { transport, ca });
      clients.push(c);
      const got = [];
      const channel = `/tls-${transport}`;
      await c.subscribe(channel, (data) => got.push(data));
      await c.waitConnected();
      if (transport === 'websocket') {
        const socket = c.client._dispatcher._transport._socket;
        assert.ok(socket && /^wss:/.test(socket.url || ''), `expected a wss:// socket, got ${socket && socket.url}`);
      }
      await c.publish(channel, { via: 'client' });
      await backendPublish(endpoint, channel, { via: 'backend' }, { ca });
      await waitUntil(() => got.length >= 2, { what: () => `two deliveries over TLS\n${c.summary()}` });
      assert.deepEqual(got, [{ via: 'client' }, { via: 'backend' }]);
    });
  }

  test('the browser bundle is served on the TLS listener too', async (t) => {
    if (!target.httpsOrigin) return skipOrFail(t, `the ${target.kind} target has no TLS listener (openssl missing?)`);
    const [plain, secure] = await Promise.all([
      request(`${target.url(PREFIX)}/client.js`),
      request(`${target.url(PREFIX, { tls: true })}/client.js`, { ca: target.tls.cert }),
    ]);
    assert.equal(plain.status, 200);
    assert.equal(secure.status, 200);
    assert.match(secure.headers['content-type'], /javascript/);
    assert.ok(secure.text.length > 1000, 'client.js is suspiciously small');
    assert.equal(secure.text, plain.text, 'client.js differs between listeners');
  });

  test('the development certificate is valid for localhost and 127.0.0.1', { skip: edgeOnly('dev_certificate') || false }, async () => {
    const cert = new crypto.X509Certificate(target.tls.cert);
    assert.equal(cert.checkIP('127.0.0.1'), '127.0.0.1', `certificate SANs: ${cert.subjectAltName}`);
    assert.equal(cert.checkHost('localhost'), 'localhost', `certificate SANs: ${cert.subjectAltName}`);
    assert.ok(new Date(cert.validTo) > new Date(), `certificate expired: ${cert.validTo}`);
    assert.ok(crypto.createPrivateKey(target.tls.key), 'key does not parse');
    assert.ok(cert.checkPrivateKey(crypto.createPrivateKey(target.tls.key)), 'key does not match the certificate');
    const presented = await tlsHandshake(target.ports.https, target.tls.cert);
    assert.equal(presented.peer.fingerprint256, cert.fingerprint256, 'the listener presents another certificate');
  });

  test('the TLS listener negotiates HTTP/2 by ALPN (and HTTP/1.1 for clients that ask only for it)', { skip: edgeOnly('HTTP/2 on the TLS listener') || false }, async () => {
    assert.equal((await tlsHandshake(target.ports.https, target.tls.cert, ['h2', 'http/1.1'])).protocol, 'h2');
    assert.equal((await tlsHandshake(target.ports.https, target.tls.cert, ['http/1.1'])).protocol, 'http/1.1');
  });
});

// Completes a TLS handshake with the listener; resolves its certificate and ALPN choice.
function tlsHandshake(port, ca, ALPNProtocols = ['h2', 'http/1.1']) {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca, ALPNProtocols }, () => {
      const peer = socket.getPeerX509Certificate();
      const protocol = socket.alpnProtocol;
      socket.end();
      resolve({ peer, protocol });
    });
    socket.setTimeout(10000, () => socket.destroy(new Error('TLS handshake timed out')));
    socket.on('error', reject);
  });
}
