'use strict';
// Plain HTTP requests, the way a backend (or curl) talks to the server: no handshake.

const http = require('http');
const https = require('https');

const REQUEST_TIMEOUT_MS = 15000;

const plainAgent = new http.Agent({ keepAlive: true, maxSockets: 8 });
const tlsAgents = new Map(); // CA PEM text -> agent

function agentFor(url, ca) {
  if (url.protocol === 'http:') return plainAgent;
  const key = ca || '';
  if (!tlsAgents.has(key)) {
    tlsAgents.set(key, new https.Agent({ keepAlive: true, maxSockets: 8, ca: ca || undefined, servername: 'localhost' }));
  }
  return tlsAgents.get(key);
}

// Sends `body` (a Buffer or string) and resolves { status, headers, text }.
function request(urlText, { method = 'GET', headers = {}, body, ca } = {}) {
  const url = new URL(urlText);
  const lib = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = lib.request(url, { method, headers, agent: agentFor(url, ca) }, (res) => {
      const chunks = [];
      res.on('data', (chunk) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(new Error(`${method} ${urlText}: no response within ${REQUEST_TIMEOUT_MS} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

// POSTs a JSON value with Content-Type application/json; resolves { status, headers, text, json }.
async function postJSON(url, value, { ca } = {}) {
  const body = Buffer.from(JSON.stringify(value), 'utf8');
  const res = await request(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'Content-Length': body.length },
    body,
    ca,
  });
  try {
    res.json = JSON.parse(res.text);
  } catch (_) {
    res.json = undefined;
  }
  return res;
}

// The backend's publish: one message, no clientId. Fails unless the server acknowledged it.
async function backendPublish(endpoint, channel, data, options) {
  const res = await postJSON(endpoint, { channel, data }, options);
  const ack = Array.isArray(res.json) ? res.json.find((m) => m && m.channel === channel) : undefined;
  if (res.status !== 200 || !ack || ack.successful !== true) {
    throw new Error(`backend publish to ${endpoint} ${channel} was not acknowledged: HTTP ${res.status} ${res.text.slice(0, 500)}`);
  }
  return res;
}

function closeAgents() {
  plainAgent.destroy();
  for (const agent of tlsAgents.values()) agent.destroy();
  tlsAgents.clear();
}

module.exports = { request, postJSON, backendPublish, closeAgents };
