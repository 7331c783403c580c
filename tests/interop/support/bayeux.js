'use strict';
// Raw Bayeux probes over plain HTTP, used to check server state from outside a client.

const assert = require('assert/strict');
const { postJSON } = require('./http');

// Asserts the server no longer knows `clientId`: a /meta/subscribe for it must fail with
// 401 (PROTOCOL.md §2.3: unknown client -> "401:<clientId>:Unknown client").
async function assertClientUnknown(endpoint, clientId, options) {
  const request = { channel: '/meta/subscribe', clientId, subscription: '/probe-unknown', id: 'probe' };
  const res = await postJSON(endpoint, [request], options);
  assert.equal(res.status, 200, `probe ${JSON.stringify(request)} got HTTP ${res.status}: ${res.text}`);
  const reply = Array.isArray(res.json) && res.json.find((m) => m.channel === '/meta/subscribe');
  assert.ok(reply, `no /meta/subscribe reply in ${res.text}`);
  assert.equal(reply.successful, false, `client ${clientId} is still known to the server: ${res.text}`);
  assert.match(String(reply.error), /^401:/, `expected a 401 Unknown client error, got ${res.text}`);
}

module.exports = { assertClientUnknown };
