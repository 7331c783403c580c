'use strict';
// The npm Faye client in Node, wrapped with a wire log.
//
// A client extension records every message the client sends (after the client filled in
// ids and connectionType) and every message it receives, before the client dispatches it.
// Tests assert on that log, which shows what the server actually delivered even after the
// client itself dropped a listener.

const faye = require('faye');
const { waitUntil, withDeadline } = require('./wait');

const NODE_TRANSPORTS = ['websocket', 'long-polling'];

function isEvent(message) {
  return message && message.successful === undefined && typeof message.channel === 'string' &&
    !message.channel.startsWith('/meta/') && message.data !== undefined;
}

class TracedClient {
  // transport: 'websocket' or 'long-polling'. `ca`: PEM text trusted for https endpoints.
  constructor(endpoint, { transport = 'websocket', retry = 1, ca, copySent = true } = {}) {
    if (!NODE_TRANSPORTS.includes(transport)) throw new Error(`unknown Node Faye transport ${transport}`);
    this.endpoint = endpoint;
    this.transport = transport;
    const options = { retry };
    if (ca) options.tls = { ca };
    this.client = new faye.Client(endpoint, options);
    // The Node client knows only these two; long-polling is mandatory for the handshake,
    // so forcing long-polling means disabling websocket.
    if (transport === 'long-polling') this.client.disable('websocket');
    this.sent = [];
    this.received = [];
    const self = this;
    this.client.addExtension({
      outgoing(message, callback) {
        self.sent.push(copySent ? JSON.parse(JSON.stringify(message)) : message);
        callback(message);
      },
      incoming(message, callback) {
        self.received.push(message);
        callback(message);
      },
    });
  }

  get clientId() { return this.client._dispatcher.clientId; }

  // The reply to a sent message, matched by channel and id.
  replyTo(request) {
    return this.received.find((m) => m.successful !== undefined && m.id === request.id && m.channel === request.channel);
  }

  sentOn(channel) { return this.sent.filter((m) => m.channel === channel); }

  repliesOn(channel) { return this.received.filter((m) => m.channel === channel && m.successful !== undefined); }

  events(channel) {
    return this.received.filter((m) => isEvent(m) && (channel === undefined || m.channel === channel));
  }

  // Successful /meta/connect round trips, as { request, reply }.
  successfulConnects() {
    const out = [];
    for (const request of this.sentOn('/meta/connect')) {
      const reply = this.replyTo(request);
      if (reply && reply.successful === true) out.push({ request, reply });
    }
    return out;
  }

  // Successful handshake replies, oldest first.
  handshakes() { return this.repliesOn('/meta/handshake').filter((m) => m.successful === true); }

  summary() {
    const last = (list) => list.slice(-3).map((m) => JSON.stringify(m).slice(0, 300)).join('\n    ');
    return `client on ${this.endpoint} (${this.transport}), clientId ${this.clientId}\n` +
      `  last sent:\n    ${last(this.sent)}\n  last received:\n    ${last(this.received)}`;
  }

  // Resolves once the client is connected on its forced transport, counting only connects
  // sent after `since` messages had been sent: for long-polling a /meta/connect of that type
  // succeeded; for websocket (whose connect is held by the server for the whole timeout) a
  // websocket /meta/connect went out over an open socket and has not failed.
  async waitConnected({ timeout = 15000, since = 0 } = {}) {
    await waitUntil(() => this.sent.slice(since).some((request) => {
      if (request.channel !== '/meta/connect' || request.connectionType !== this.transport) return false;
      const reply = this.replyTo(request);
      if (reply) return reply.successful === true;
      if (this.transport !== 'websocket') return false;
      const active = this.client._dispatcher._transport;
      return Boolean(active && active.connectionType === 'websocket' && active._socket && active._socket.readyState === 1);
    }), { timeout, what: () => `a successful ${this.transport} /meta/connect\n${this.summary()}` });
  }

  // For a client that only publishes: connects and resolves once the handshake succeeded
  // and the dispatcher uses the forced transport (with its socket open for websocket),
  // without waiting for a held /meta/connect to come back.
  async waitPublisherReady({ timeout = 15000 } = {}) {
    this.client.connect();
    await waitUntil(() => {
      if (this.handshakes().length === 0) return false;
      const active = this.client._dispatcher._transport;
      if (!active || active.connectionType !== this.transport) return false;
      return this.transport !== 'websocket' || Boolean(active._socket && active._socket.readyState === 1);
    }, { timeout, what: () => `the publisher to be ready on ${this.transport}\n${this.summary()}` });
  }

  // Subscribes and resolves once the server acknowledged it; `onData` gets each delivery.
  async subscribe(channel, onData = () => {}, { timeout = 15000 } = {}) {
    const subscription = this.client.subscribe(channel, onData);
    await withDeadline(subscription, timeout, `subscribe ack for ${channel}\n${this.summary()}`);
    return subscription;
  }

  // Publishes through the client and resolves with once the server acknowledged it.
  async publish(channel, data, { timeout = 15000 } = {}) {
    await withDeadline(this.client.publish(channel, data), timeout, `publish ack for ${channel}\n${this.summary()}`);
  }

  // Unsubscribes and resolves once the server's successful unsubscribe reply arrived.
  async unsubscribe(channel, subscription, { timeout = 15000 } = {}) {
    const before = this.sentOn('/meta/unsubscribe').length;
    if (subscription) subscription.cancel();
    else this.client.unsubscribe(channel);
    await waitUntil(() => this.sentOn('/meta/unsubscribe').slice(before).some((request) => {
      const reply = this.replyTo(request);
      return request.subscription === channel && reply && reply.successful === true;
    }), { timeout, what: () => `unsubscribe ack for ${channel}\n${this.summary()}` });
  }

  // Sends /meta/disconnect and resolves with the server's reply (success or not).
  async disconnect({ timeout = 15000 } = {}) {
    const before = this.sentOn('/meta/disconnect').length;
    const promise = this.client.disconnect();
    if (promise) promise.then(() => {}, () => {});
    return waitUntil(() => {
      const request = this.sentOn('/meta/disconnect')[before];
      return request && this.replyTo(request);
    }, { timeout, what: () => `a /meta/disconnect reply\n${this.summary()}` });
  }

  // Tears the client down without talking to the server (safe to call twice). Whatever is
  // still in flight must not bring it back: the reply to a handshake sent before this
  // (Faye re-handshakes at once after a refused one) would set the client's state back
  // and start a retry loop, and the dispatcher resends a failed message for ever, which
  // keeps the test process alive once the server is gone. So handshake and connect become
  // no-ops, pending messages are dropped with their timers, and every socket is closed.
  close() {
    const client = this.client;
    client._state = client.DISCONNECTED;
    client.handshake = () => {};
    client.connect = () => {};
    const dispatcher = client._dispatcher;
    for (const envelope of dispatcher._envelopes.values()) clearTimeout(envelope.timer);
    dispatcher._envelopes.clear();
    try { dispatcher.close(); } catch (_) { /* ignore */ }
    for (const byEndpoint of Object.values(dispatcher.transports || {})) { // Maps of WebSocket transports
      for (const transport of byEndpoint.values()) {
        try { transport.close(); } catch (_) { /* ignore */ }
      }
    }
  }
}

// Shuts many clients: disconnects politely when possible, then closes local transports.
async function closeAll(clients, { timeout = 10000 } = {}) {
  await withDeadline(Promise.allSettled(clients.map(async (c) => {
    if (c.client._state === c.client.CONNECTED) {
      const promise = c.client.disconnect();
      if (promise) await promise.then(() => {}, () => {});
    }
  })), timeout, 'clients to disconnect').catch(() => {});
  for (const c of clients) c.close();
}

module.exports = { TracedClient, closeAll, isEvent, NODE_TRANSPORTS };
