'use strict';
// JSON Web Tokens made by the tests with Node's crypto only: HS256 (HMAC), RS256 with a
// key pair generated here, unsigned (`alg: none`), and the claims a route checks.

const crypto = require('crypto');

const ISSUER = 'https://app.example.com';
const AUDIENCE = 'notifications';

const b64url = (value) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

const nowSecs = () => Math.floor(Date.now() / 1000);

// Claims for user `sub`, valid for an hour unless `exp` (seconds since the epoch) says
// otherwise; `overrides` replaces any claim (e.g. a wrong `iss`).
function claims(sub, overrides = {}) {
  return { sub: String(sub), iss: ISSUER, aud: AUDIENCE, iat: nowSecs(), exp: nowSecs() + 3600, ...overrides };
}

function signingInput(alg, payload) {
  return `${b64url({ alg, typ: 'JWT' })}.${b64url(payload)}`;
}

// HS256 with `key` (a string or Buffer): the route's secret, or deliberately another one.
function hs256(payload, key) {
  const input = signingInput('HS256', payload);
  return `${input}.${crypto.createHmac('sha256', key).update(input).digest('base64url')}`;
}

// RS256 with a private key (a KeyObject or PEM text).
function rs256(payload, privateKey) {
  const input = signingInput('RS256', payload);
  return `${input}.${crypto.sign('sha256', Buffer.from(input), privateKey).toString('base64url')}`;
}

// `alg: none`: no signature at all.
function unsigned(payload) {
  return `${signingInput('none', payload)}.`;
}

// A fresh RSA-2048 key pair as PEM text: { publicKey ("PUBLIC KEY", SPKI), privateKey }.
function rsaKeyPair() {
  return crypto.generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
}

// The `exp` of a token made here (read back, not verified), in seconds.
function expOf(token) {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8')).exp;
}

module.exports = { ISSUER, AUDIENCE, nowSecs, claims, hs256, rs256, unsigned, rsaKeyPair, expOf };
