'use strict';
// Payload fidelity and ordering: a 256 KiB message, unicode text, 500 ordered messages.

const { describe, test, before, after } = require('node:test');
const assert = require('assert/strict');
const crypto = require('crypto');
const { isDeepStrictEqual } = require('util');
const { startTarget } = require('../support/harness');
const { TracedClient, closeAll, NODE_TRANSPORTS } = require('../support/faye-node');
const { backendPublish, closeAgents } = require('../support/http');
const { waitUntil, withDeadline } = require('../support/wait');

const PREFIX = '/staging/faye';
const ORDERED_COUNT = 500;

// 256 KiB of varied ASCII (so truncation or a shifted chunk shows), with its digest.
function bigPayload() {
  const text = crypto.randomBytes(192 * 1024).toString('base64');
  assert.equal(text.length, 256 * 1024);
  return { kind: 'big', bytes: text.length, sha256: crypto.createHash('sha256').update(text).digest('hex'), text };
}

const UNICODE = {
  emoji: 'grinning 😀, thumbs 👍🏽, family 👩‍👩‍👧‍👦, flag 🇯🇵, keycap 1️⃣',
  cjk: '漢字かなカナ 한국어 中文简体 繁體中文',
  separators: 'line\u2028separator and paragraph\u2029separator',
  rtl: 'עברית שלום \u200fمرحبا بالعالم\u200e mixed',
  combining: 'e\u0301 a\u0308 n\u0303 Z\u0351\u0317',
  controls: 'tab\tnewline\nquote" backslash\\ slash/ bom\ufeff',
  astral: '𝄞 𐍈 🜁',
  '键 with ключ': 'unicode key',
  list: ['😀', '\u2028', '\u2029', 'שלום', '漢'],
};

// JSON text with object keys sorted: key order carries no meaning in JSON.
function canonical(value) {
  return JSON.stringify(value, (key, v) => (v && typeof v === 'object' && !Array.isArray(v)
    ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, v[k]]))
    : v));
}

function describeMismatch(got, expected) {
  if (isDeepStrictEqual(got, expected)) return 'equal';
  const a = canonical(got);
  const b = canonical(expected);
  let i = 0;
  while (i < a.length && a[i] === b[i]) i++;
  return `first difference at canonical JSON offset ${i}: got …${a.slice(i, i + 60)}… expected …${b.slice(i, i + 60)}…`;
}

describe('payloads', () => {
  let target;
  const clients = [];
  const track = (client) => { clients.push(client); return client; };

  before(async () => { target = await startTarget(); });
  after(async () => {
    await closeAll(clients);
    closeAgents();
    if (target) await target.stop();
  });

  for (const transport of NODE_TRANSPORTS) {
    const tag = transport === 'websocket' ? 'ws' : 'lp';

    test(`a 256 KiB message and unicode payloads arrive intact over ${transport}`, async () => {
      const endpoint = target.url(PREFIX);
      const subscriber = track(new TracedClient(endpoint, { transport }));
      const publisher = track(new TracedClient(endpoint, { transport, copySent: false }));
      const channel = `/payloads-${tag}`;
      const got = [];
      await subscriber.subscribe(channel, (data) => got.push(data));
      await subscriber.waitConnected();
      await publisher.waitPublisherReady();

      const big = bigPayload();
      const expected = [
        big,
        { kind: 'unicode', via: 'client', ...UNICODE },
        { kind: 'unicode', via: 'backend', ...UNICODE },
        { kind: 'big', via: 'backend', ...big },
      ];
      await publisher.publish(channel, expected[0], { timeout: 30000 });
      await publisher.publish(channel, expected[1]);
      await backendPublish(endpoint, channel, expected[2]);
      await backendPublish(endpoint, channel, expected[3]);

      await waitUntil(() => got.length >= expected.length, {
        timeout: 30000, what: () => `${expected.length} payloads, got ${got.length}\n${subscriber.summary()}`,
      });
      assert.equal(got.length, expected.length);
      for (let i = 0; i < expected.length; i++) {
        const mismatch = describeMismatch(got[i], expected[i]);
        assert.equal(mismatch, 'equal', `payload #${i} (${expected[i].kind}) changed: ${mismatch}`);
      }
      assert.equal(crypto.createHash('sha256').update(got[0].text).digest('hex'), big.sha256);
      assert.equal(got[1].separators.length, UNICODE.separators.length);
      assert.ok(got[1].separators.includes('\u2028') && got[1].separators.includes('\u2029'));
    });
  }

  test(`${ORDERED_COUNT} messages from one publisher arrive in order`, async () => {
    const endpoint = target.url(PREFIX);
    const channel = '/ordered';
    const publisher = track(new TracedClient(endpoint, { transport: 'websocket', copySent: false }));
    const subscribers = NODE_TRANSPORTS.map((transport) => {
      const c = track(new TracedClient(endpoint, { transport, copySent: false }));
      c.got = [];
      return c;
    });
    await Promise.all(subscribers.map((c) => c.subscribe(channel, (data) => c.got.push(data.seq))));
    await Promise.all(subscribers.map((c) => c.waitConnected()));
    await publisher.waitPublisherReady();

    // Published back to back without waiting for acks; the client sends them in order.
    const acks = [];
    for (let seq = 0; seq < ORDERED_COUNT; seq++) {
      acks.push(publisher.client.publish(channel, { seq, text: `message ${seq}` }));
    }
    await withDeadline(Promise.all(acks), 30000, `${ORDERED_COUNT} publish acks`);

    const expected = Array.from({ length: ORDERED_COUNT }, (_, i) => i);
    for (const c of subscribers) {
      await waitUntil(() => c.got.length >= ORDERED_COUNT, {
        timeout: 30000, what: () => `${ORDERED_COUNT} messages at the ${c.transport} subscriber, got ${c.got.length}`,
      });
      assert.deepEqual(c.got, expected, `${c.transport} subscriber saw them out of order or duplicated`);
    }
  });
});
