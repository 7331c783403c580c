'use strict';
// Starts the server under test on 127.0.0.1 with ports chosen by the OS.
//
// INTEROP_TARGET=edge (default): the bayeux-edge binary (BAYEUX_EDGE_BIN, default
//   <repo>/target/release/bayeux-edge) with a generated routes.toml in a temporary
//   directory; readiness is its --ready-file.
// INTEROP_TARGET=faye: support/faye-server.js (the npm faye NodeAdapter), one engine
//   per route prefix; with openssl available it also gets a TLS listener.
//
// Only child processes started here are ever signalled, by their PID.

const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawn, spawnSync } = require('child_process');
const { waitUntil } = require('./wait');

const INTEROP_DIR = path.resolve(__dirname, '..');
const REPO_ROOT = path.resolve(INTEROP_DIR, '..', '..');
const TARGET = process.env.INTEROP_TARGET || 'edge';
const VERBOSE = process.env.INTEROP_VERBOSE === '1';

if (TARGET !== 'edge' && TARGET !== 'faye') {
  throw new Error(`INTEROP_TARGET must be "edge" or "faye", not ${JSON.stringify(TARGET)}`);
}

const DEFAULT_ROUTES = ['/staging/faye', '/production/faye'];
const START_TIMEOUT_MS = 20000;
const DRAIN_GRACE_SECS = 2;
// The process must be gone this long after SIGTERM (drain grace plus slack).
const STOP_TIMEOUT_MS = (DRAIN_GRACE_SECS + 8) * 1000;

// Every live child, so that a crashing test process does not leave servers behind.
const children = new Set();
function killChildren() {
  for (const child of children) {
    try { process.kill(child.pid, 'SIGKILL'); } catch (_) { /* already gone */ }
  }
}
process.on('exit', killChildren);
for (const [signal, status] of [['SIGINT', 130], ['SIGTERM', 143]]) {
  process.once(signal, () => {
    killChildren();
    process.exit(status);
  });
}

function edgeBinary() {
  return process.env.BAYEUX_EDGE_BIN || path.join(REPO_ROOT, 'target', 'release', 'bayeux-edge');
}

function isEdge() { return TARGET === 'edge'; }

// Reason to skip a test that needs a bayeux-edge-only feature, or null when it can run.
function edgeOnly(feature) {
  return isEdge() ? null : `${feature} is a bayeux-edge feature; INTEROP_TARGET=${TARGET}`;
}

function tomlString(value) {
  return JSON.stringify(value);
}

function edgeConfig({ routes, timeoutSecs, ports }) {
  const addr = (name) => tomlString(`127.0.0.1:${ports ? ports[name] : 0}`);
  const lines = [
    '[server]',
    `drain_grace_secs = ${DRAIN_GRACE_SECS}`,
    '',
    '[[server.listener]]',
    'name = "http"',
    `addr = ${addr('http')}`,
    '',
    '[[server.listener]]',
    'name = "https"',
    `addr = ${addr('https')}`,
    'dev_certificate = true',
    'certificates = [{ cert = "certs/cert.pem", key = "certs/key.pem" }]',
    '',
    '[server.admin]',
    `addr = ${addr('admin')}`,
    '',
    '[defaults]',
    `timeout_secs = ${timeoutSecs}`,
    // Every test client connects from 127.0.0.1: lift the per-address limits.
    'max_sessions_per_ip = 1000000',
    'handshake_rate_per_ip = 1000000',
    'handshake_burst_per_ip = 1000000',
  ];
  for (const prefix of routes) {
    lines.push('', '[[route]]', `prefix = ${tomlString(prefix)}`);
  }
  return lines.join('\n') + '\n';
}

function tail(file, bytes = 4000) {
  try {
    const text = fs.readFileSync(file, 'utf8');
    return text.length > bytes ? '…' + text.slice(-bytes) : text;
  } catch (_) {
    return '';
  }
}

function spawnLogged(command, args, logFile, options = {}) {
  const log = fs.openSync(logFile, 'a');
  const child = spawn(command, args, {
    stdio: ['ignore', options.stdout === 'pipe' ? 'pipe' : log, VERBOSE ? 'inherit' : log],
    cwd: options.cwd,
    env: options.env || process.env,
  });
  fs.closeSync(log);
  children.add(child);
  child.exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      children.delete(child);
      resolve({ code, signal });
    });
  });
  child.once('error', () => children.delete(child));
  return child;
}

async function waitForExit(child, timeoutMs) {
  let timer;
  const result = await Promise.race([
    child.exited,
    new Promise((resolve) => { timer = setTimeout(() => resolve(null), timeoutMs); }),
  ]);
  clearTimeout(timer);
  return result;
}

// Sends SIGTERM to our child and waits for it to exit. If it outlives the deadline it
// is killed and an error is raised: a server that does not stop is a bug.
async function terminate(child, what) {
  if (child.exitCode !== null || child.signalCode !== null) return child.exited;
  child.kill('SIGTERM');
  const result = await waitForExit(child, STOP_TIMEOUT_MS);
  if (result) return result;
  child.kill('SIGKILL');
  await waitForExit(child, 5000);
  throw new Error(`${what} (pid ${child.pid}) did not exit within ${STOP_TIMEOUT_MS} ms of SIGTERM`);
}

function makeCertificate(dir) {
  const which = spawnSync('openssl', ['version'], { encoding: 'utf8' });
  if (which.status !== 0) return null;
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  const made = spawnSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-days', '2', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
    '-keyout', key, '-out', cert,
  ], { encoding: 'utf8' });
  if (made.status !== 0) return null;
  return { certFile: cert, keyFile: key };
}

class Target {
  constructor({ routes = DEFAULT_ROUTES, timeoutSecs = 5 } = {}) {
    this.kind = TARGET;
    this.routes = routes;
    this.timeoutSecs = timeoutSecs;
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), `interop-${TARGET}-`));
    this.logFile = path.join(this.dir, 'server.log');
    this.child = null;
    this.ports = null; // { http, https, admin }
    this.tls = null; // { cert, key } PEM text, when the target has a TLS listener
    this.generation = 0;
  }

  // Starts a server. Pass `ports` to reuse the ones a previous process had.
  async start(ports) {
    this.generation += 1;
    fs.appendFileSync(this.logFile, `\n===== start #${this.generation} =====\n`);
    if (this.kind === 'edge') await this._startEdge(ports);
    else await this._startFaye(ports);
    return this;
  }

  async _startEdge(ports) {
    const binary = edgeBinary();
    if (!fs.existsSync(binary)) {
      throw new Error(`bayeux-edge binary not found at ${binary}; build it or set BAYEUX_EDGE_BIN`);
    }
    const config = path.join(this.dir, 'routes.toml');
    const ready = path.join(this.dir, 'ready.json');
    fs.writeFileSync(config, edgeConfig({ routes: this.routes, timeoutSecs: this.timeoutSecs, ports }));
    fs.rmSync(ready, { force: true });

    const child = spawnLogged(binary, ['serve', '--config', config, '--ready-file', ready], this.logFile, { cwd: this.dir });
    this.child = child;
    let info;
    try {
      info = await waitUntil(() => {
        if (child.exitCode !== null || child.signalCode !== null) {
          throw new Error(`bayeux-edge exited (code ${child.exitCode}, signal ${child.signalCode}) before it was ready`);
        }
        if (!fs.existsSync(ready)) return null;
        const text = fs.readFileSync(ready, 'utf8');
        try {
          return JSON.parse(text);
        } catch (error) {
          // The contract is an atomic write (temporary file + rename), so this is a bug.
          throw new Error(`ready file ${ready} is not valid JSON (${error.message}): ${JSON.stringify(text)}`);
        }
      }, { timeout: START_TIMEOUT_MS, interval: 20, what: `bayeux-edge ready file ${ready}` });
    } catch (error) {
      child.kill('SIGKILL');
      throw new Error(`${error.message}\n--- server log ---\n${tail(this.logFile)}`);
    }
    const port = (addr, name) => {
      const match = /:(\d+)$/.exec(addr || '');
      if (!match) throw new Error(`ready file has no usable ${name} address: ${JSON.stringify(info)}`);
      return Number(match[1]);
    };
    if (info.pid !== undefined && info.pid !== child.pid) {
      throw new Error(`ready file pid ${info.pid} is not the child's pid ${child.pid}`);
    }
    this.ports = {
      http: port(info.listeners && info.listeners.http, 'http'),
      https: port(info.listeners && info.listeners.https, 'https'),
      admin: port(info.admin, 'admin'),
    };
    this.tls = {
      cert: fs.readFileSync(path.join(this.dir, 'certs', 'cert.pem'), 'utf8'),
      key: fs.readFileSync(path.join(this.dir, 'certs', 'key.pem'), 'utf8'),
    };
  }

  async _startFaye(ports) {
    if (this._certFiles === undefined) this._certFiles = makeCertificate(this.dir);
    const args = [path.join(__dirname, 'faye-server.js'), '--timeout', String(this.timeoutSecs)];
    for (const prefix of this.routes) args.push('--mount', prefix);
    if (ports) args.push('--port', String(ports.http));
    if (this._certFiles) {
      args.push('--cert', this._certFiles.certFile, '--key', this._certFiles.keyFile);
      if (ports && ports.https) args.push('--tls-port', String(ports.https));
    }
    const child = spawnLogged(process.execPath, args, this.logFile, { stdout: 'pipe' });
    this.child = child;
    let line;
    try {
      line = await new Promise((resolve, reject) => {
        let buffered = '';
        const timer = setTimeout(() => reject(new Error('faye-server did not report its port in time')), START_TIMEOUT_MS);
        child.stdout.setEncoding('utf8');
        child.stdout.on('data', (chunk) => {
          buffered += chunk;
          const newline = buffered.indexOf('\n');
          if (newline >= 0) {
            clearTimeout(timer);
            resolve(buffered.slice(0, newline));
          }
        });
        child.once('exit', (code) => {
          clearTimeout(timer);
          reject(new Error(`faye-server exited with code ${code} before reporting its port`));
        });
      });
    } catch (error) {
      child.kill('SIGKILL');
      throw new Error(`${error.message}\n--- server log ---\n${tail(this.logFile)}`);
    }
    child.stdout.resume();
    const info = JSON.parse(line);
    this.ports = { http: info.port, https: info.tlsPort || null, admin: null };
    this.tls = this._certFiles ? {
      cert: fs.readFileSync(this._certFiles.certFile, 'utf8'),
      key: fs.readFileSync(this._certFiles.keyFile, 'utf8'),
    } : null;
  }

  get httpOrigin() { return `http://127.0.0.1:${this.ports.http}`; }

  get httpsOrigin() { return this.ports.https ? `https://127.0.0.1:${this.ports.https}` : null; }

  // Endpoint URL of a route, e.g. url('/staging/faye') or url('/staging/faye', { tls: true }).
  url(prefix = this.routes[0], { tls = false } = {}) {
    const origin = tls ? this.httpsOrigin : this.httpOrigin;
    if (!origin) throw new Error(`${this.kind} target has no TLS listener`);
    return origin + prefix;
  }

  // Stops the current process (SIGTERM, graceful) and starts a new one on the same ports.
  async restart() {
    const ports = { ...this.ports };
    await this.stopProcess();
    await this.start(ports);
  }

  async stopProcess() {
    const child = this.child;
    this.child = null;
    if (!child) return null;
    const result = await terminate(child, this.kind === 'edge' ? 'bayeux-edge' : 'faye-server');
    if (this.kind === 'edge' && result && result.code !== 0) {
      throw new Error(`bayeux-edge exited with ${JSON.stringify(result)} after SIGTERM, expected status 0\n--- server log ---\n${tail(this.logFile)}`);
    }
    return result;
  }

  async stop() {
    try {
      await this.stopProcess();
    } finally {
      if (!VERBOSE && process.env.INTEROP_KEEP_TMP !== '1') fs.rmSync(this.dir, { recursive: true, force: true });
    }
  }

  logTail(bytes) { return tail(this.logFile, bytes); }
}

async function startTarget(options) {
  const target = new Target(options);
  try {
    await target.start();
  } catch (error) {
    await target.stop().catch(() => {});
    throw error;
  }
  return target;
}

module.exports = { startTarget, Target, TARGET, isEdge, edgeOnly, REPO_ROOT, INTEROP_DIR };
