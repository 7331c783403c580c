'use strict';
// The Faye browser bundle inside a Chromium page, driven from Node.
//
// The page gets a small harness (window.fayeHarness) that creates a Faye.Client, records
// every message it sends and receives through a client extension, and every delivery to a
// subscription. From Node, PageClient reads that log and the requests Chromium made
// (Playwright request events and a DevTools protocol session for EventSource/WebSocket).

const { waitUntil } = require('./wait');

// Runs inside the page. Kept free of Node APIs.
/* eslint-env browser */
function installHarness() {
  if (window.fayeHarness) return;
  const copy = (value) => JSON.parse(JSON.stringify(value));
  const h = {
    client: null,
    sent: [],
    received: [],
    deliveries: [],
    subscriptions: {},
    create(endpoint, disabled, options) {
      const client = new window.Faye.Client(endpoint, Object.assign({ retry: 1 }, options || {}));
      for (const feature of disabled || []) client.disable(feature);
      client.addExtension({
        outgoing(message, callback) { h.sent.push(copy(message)); callback(message); },
        incoming(message, callback) { h.received.push(copy(message)); callback(message); },
      });
      h.client = client;
      return true;
    },
    subscribe(channel) {
      const subscription = h.client.subscribe(channel, (data) => h.deliveries.push({ channel, data }));
      h.subscriptions[channel] = subscription;
      return subscription.then(() => true, (error) => { throw new Error(`subscribe ${channel} failed: ${error && error.message}`); });
    },
    unsubscribe(channel) {
      h.subscriptions[channel].cancel();
      delete h.subscriptions[channel];
      return true;
    },
    publish(channel, data) {
      return h.client.publish(channel, data).then(() => true, (error) => { throw new Error(`publish ${channel} failed: ${error && error.message}`); });
    },
    disconnect() {
      const promise = h.client.disconnect();
      if (promise) promise.then(() => {}, () => {});
      return true;
    },
    state() {
      return {
        clientId: h.client && h.client._dispatcher.clientId,
        connectionType: h.client && h.client._dispatcher.connectionType,
        sent: h.sent,
        received: h.received,
        deliveries: h.deliveries,
      };
    },
  };
  window.fayeHarness = h;
}

const HARNESS_SOURCE = `(${installHarness.toString()})();`;

// The Bayeux messages carried by a request Chromium made, whatever the transport encoding.
function bayeuxMessagesOf(request) {
  let text = null;
  try {
    const url = new URL(request.url);
    if (request.method === 'GET' && url.searchParams.has('message')) text = url.searchParams.get('message');
    else if (request.method === 'POST' && request.postData) {
      const contentType = (request.headers['content-type'] || '').split(';')[0].trim();
      text = contentType === 'application/json' ? request.postData : new URLSearchParams(request.postData).get('message');
    }
    if (text === null) return [];
    return [].concat(JSON.parse(text));
  } catch (_) {
    return [];
  }
}

class PageClient {
  constructor(page, { endpoint, transport }) {
    this.page = page;
    this.endpoint = endpoint;
    this.transport = transport;
    this.requests = [];
    this.websockets = [];
    this.eventSourceMessages = [];
    this.consoleErrors = [];
    this.latest = { sent: [], received: [], deliveries: [], clientId: null, connectionType: null };
    page.on('request', (request) => {
      this.requests.push({
        method: request.method(),
        url: request.url(),
        type: request.resourceType(),
        headers: request.headers(),
        postData: request.postData(),
      });
    });
    page.on('websocket', (ws) => this.websockets.push(ws.url()));
    page.on('console', (message) => { if (message.type() === 'error') this.consoleErrors.push(message.text()); });
    page.on('pageerror', (error) => this.consoleErrors.push(String(error)));
  }

  // Opens a DevTools protocol session on the page to see EventSource messages.
  async watchDevTools() {
    this.cdp = await this.page.context().newCDPSession(this.page);
    this.cdp.on('Network.eventSourceMessageReceived', (event) => this.eventSourceMessages.push(event));
    await this.cdp.send('Network.enable');
  }

  async install() {
    await this.page.addScriptTag({ content: HARNESS_SOURCE });
  }

  // Creates the Faye client with every transport but `this.transport` disabled.
  async create(disabled) {
    await this.page.evaluate(([endpoint, off]) => window.fayeHarness.create(endpoint, off), [this.endpoint, disabled]);
  }

  async refresh() {
    this.latest = await this.page.evaluate(() => window.fayeHarness.state());
    return this.latest;
  }

  get clientId() { return this.latest.clientId; }

  replyTo(request) {
    return this.latest.received.find((m) => m.successful !== undefined && m.id === request.id && m.channel === request.channel);
  }

  handshakes() { return this.latest.received.filter((m) => m.channel === '/meta/handshake' && m.successful === true); }

  events(channel) {
    return this.latest.received.filter((m) => m.successful === undefined && m.data !== undefined &&
      typeof m.channel === 'string' && !m.channel.startsWith('/meta/') && (channel === undefined || m.channel === channel));
  }

  deliveries(channel) {
    return this.latest.deliveries.filter((d) => channel === undefined || d.channel === channel).map((d) => d.data);
  }

  // Requests to the Bayeux endpoint that carried a /meta/connect.
  connectRequests() {
    return this.requests.filter((r) => bayeuxMessagesOf(r).some((m) => m.channel === '/meta/connect'));
  }

  summary() {
    const last = (list) => list.slice(-4).map((m) => JSON.stringify(m).slice(0, 300)).join('\n    ');
    const requests = this.requests.slice(-6).map((r) => `${r.method} ${r.type} ${r.url.slice(0, 160)}`).join('\n    ');
    return `page client on ${this.endpoint} (${this.transport}), clientId ${this.latest.clientId}, ` +
      `using ${this.latest.connectionType}\n  last sent:\n    ${last(this.latest.sent)}\n` +
      `  last received:\n    ${last(this.latest.received)}\n  last requests:\n    ${requests}\n` +
      `  websockets: ${JSON.stringify(this.websockets)}\n  page errors: ${JSON.stringify(this.consoleErrors.slice(-5))}`;
  }

  async waitFor(predicate, what, timeout = 15000) {
    return waitUntil(async () => {
      await this.refresh();
      return predicate(this);
    }, { timeout, interval: 25, what: () => `${what}\n${this.summary()}` });
  }

  async subscribe(channel) {
    await this.page.evaluate((ch) => window.fayeHarness.subscribe(ch), channel);
  }

  async unsubscribe(channel) {
    const before = this.latest.sent.length;
    await this.page.evaluate((ch) => window.fayeHarness.unsubscribe(ch), channel);
    await this.waitFor(() => this.latest.sent.slice(before).some((request) => {
      if (request.channel !== '/meta/unsubscribe' || request.subscription !== channel) return false;
      const reply = this.replyTo(request);
      return reply && reply.successful === true;
    }), `unsubscribe ack for ${channel}`);
  }

  async publish(channel, data) {
    await this.page.evaluate(([ch, d]) => window.fayeHarness.publish(ch, d), [channel, data]);
  }

  // Sends /meta/disconnect; resolves with the server's reply.
  async disconnect() {
    const before = this.latest.sent.length;
    await this.page.evaluate(() => window.fayeHarness.disconnect());
    let reply;
    await this.waitFor(() => {
      const request = this.latest.sent.slice(before).find((m) => m.channel === '/meta/disconnect');
      reply = request && this.replyTo(request);
      return Boolean(reply);
    }, 'the /meta/disconnect reply');
    return reply;
  }

  // Resolves once a /meta/connect sent with the forced type (after `since` sent messages)
  // succeeded.
  async waitConnected({ since = 0, timeout = 15000 } = {}) {
    await this.waitFor(() => this.latest.sent.slice(since).some((request) => {
      if (request.channel !== '/meta/connect' || request.connectionType !== this.transport) return false;
      const reply = this.replyTo(request);
      return reply && reply.successful === true;
    }), `a successful ${this.transport} /meta/connect`, timeout);
  }
}

module.exports = { PageClient, HARNESS_SOURCE, bayeuxMessagesOf };
