'use strict';
// bayeux-edge processes for the edge operations tests: a routes.toml written by the test
// (so the test can edit it while the server runs), the ready file, SIGTERM with the exit
// status checked, `bayeux-edge check`, the admin endpoints, certificates made with
// openssl, and TLS handshakes that report the certificate the listener presented.
//
// Every child started here is tracked and, should the test process die, killed by PID.

const fs = require('fs');
const os = require('os');
const path = require('path');
const tls = require('tls');
const { spawn, spawnSync } = require('child_process');
const { waitUntil } = require('./wait');
const { request } = require('./http');
const { parsePrometheus } = require('./edge-metrics');

const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
const VERBOSE = process.env.INTEROP_VERBOSE === '1';
const KEEP_TMP = VERBOSE || process.env.INTEROP_KEEP_TMP === '1';
const START_TIMEOUT_MS = 20000;

const children = new Set();
process.on('exit', () => {
  for (const child of children) {
    try { process.kill(child.pid, 'SIGKILL'); } catch (_) { /* already gone */ }
  }
});

function edgeBinary() {
  return process.env.BAYEUX_EDGE_BIN || path.join(REPO_ROOT, 'target', 'release', 'bayeux-edge');
}

function tempDir(tag) {
  return fs.mkdtempSync(path.join(os.tmpdir(), `edge-${tag}-`));
}

function removeDir(dir) {
  if (!KEEP_TMP) fs.rmSync(dir, { recursive: true, force: true });
}

const q = (value) => JSON.stringify(String(value));

// routes.toml text. `listeners`: [{ name, port = 0, cert, key, dev }] (cert/key make it
// TLS; `dev: true` lets the server generate that certificate when the files are missing);
// `routes`: [{ prefix, upstream, tunables: { timeout_secs: 5, ... } }]; `adminTokenEnv` names the
// variable holding the admin console's token.
function routesToml({ graceSecs = 5, listeners, admin = true, adminTokenEnv, defaults = {}, routes }) {
  const lines = ['[server]', `drain_grace_secs = ${graceSecs}`];
  for (const l of listeners) {
    lines.push('', '[[server.listener]]', `name = ${q(l.name)}`, `addr = ${q(`127.0.0.1:${l.port || 0}`)}`);
    if (l.cert) lines.push(`certificates = [{ cert = ${q(l.cert)}, key = ${q(l.key)} }]`);
    if (l.dev) lines.push('dev_certificate = true');
  }
  if (admin) lines.push('', '[server.admin]', 'addr = "127.0.0.1:0"');
  if (admin && adminTokenEnv) lines.push(`token_env = ${q(adminTokenEnv)}`);
  lines.push('', '[defaults]');
  // Every test client connects from 127.0.0.1: lift the per-address limits
  // unless the test sets them.
  const perAddress = {
    max_sessions_per_ip: 1000000,
    handshake_rate_per_ip: 1000000,
    handshake_burst_per_ip: 1000000,
  };
  for (const [k, v] of Object.entries({ ...perAddress, ...defaults })) lines.push(`${k} = ${v}`);
  for (const r of routes) {
    lines.push('', '[[route]]', `prefix = ${q(r.prefix)}`);
    if (r.upstream) lines.push(`upstream = ${q(r.upstream)}`);
    for (const [k, v] of Object.entries(r.tunables || {})) lines.push(`${k} = ${v}`);
  }
  return lines.join('\n') + '\n';
}

// Replaces `file` atomically (write a sibling, then rename), as deployment tools do.
function replaceFile(file, contents) {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  fs.writeFileSync(tmp, contents);
  fs.renameSync(tmp, file);
}

function tail(file, bytes = 4000) {
  try {
    const text = fs.readFileSync(file, 'utf8');
    return text.length > bytes ? '…' + text.slice(-bytes) : text;
  } catch (_) {
    return '';
  }
}

function portOf(addr, what) {
  const match = /^127\.0\.0\.1:(\d+)$/.exec(addr || '');
  if (!match) throw new Error(`ready file has no usable ${what} address: ${addr}`);
  return Number(match[1]);
}

class EdgeProcess {
  // `dir` holds routes.toml (already written by the caller), the ready file and the log;
  // `env` adds variables to the child's environment (the secrets and the Redis URL the
  // file names).
  constructor(dir, { name = 'edge', env = {} } = {}) {
    this.dir = dir;
    this.name = name;
    this.env = env;
    this.config = path.join(dir, 'routes.toml');
    this.ready = path.join(dir, `${name}.ready.json`);
    this.logFile = path.join(dir, `${name}.log`);
    this.child = null;
    this.ports = null; // { <listener name>: port, admin: port }
  }

  async start() {
    const binary = edgeBinary();
    if (!fs.existsSync(binary)) {
      throw new Error(`bayeux-edge binary not found at ${binary}; build it (cargo build --release --bin bayeux-edge) or set BAYEUX_EDGE_BIN`);
    }
    fs.rmSync(this.ready, { force: true });
    const log = fs.openSync(this.logFile, 'a');
    const child = spawn(binary, ['serve', '--config', this.config, '--ready-file', this.ready], {
      cwd: this.dir,
      stdio: ['ignore', log, VERBOSE ? 'inherit' : log],
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info', ...this.env },
    });
    fs.closeSync(log);
    children.add(child);
    this.child = child;
    child.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        children.delete(child);
        resolve({ code, signal, at: Date.now() });
      });
    });
    let info;
    try {
      info = await waitUntil(() => {
        if (child.exitCode !== null || child.signalCode !== null) {
          throw new Error(`${this.name} exited (code ${child.exitCode}, signal ${child.signalCode}) before it was ready`);
        }
        return fs.existsSync(this.ready) && JSON.parse(fs.readFileSync(this.ready, 'utf8'));
      }, { timeout: START_TIMEOUT_MS, interval: 20, what: `${this.name} ready file` });
      if (info.pid !== child.pid) throw new Error(`ready file pid ${info.pid} is not the child's pid ${child.pid}`);
    } catch (error) {
      this.kill();
      throw new Error(`${error.message}\n--- ${this.name} log ---\n${this.logTail()}`);
    }
    this.ports = { admin: portOf(info.admin, 'admin') };
    for (const [name, addr] of Object.entries(info.listeners || {})) this.ports[name] = portOf(addr, name);
    return this;
  }

  get pid() { return this.child && this.child.pid; }

  origin(listener = 'http') {
    const port = this.ports[listener];
    if (!port) throw new Error(`${this.name} has no listener ${listener}`);
    return `${listener === 'https' ? 'https' : 'http'}://127.0.0.1:${port}`;
  }

  url(prefix, listener = 'http') { return this.origin(listener) + prefix; }

  adminUrl(pathname) { return `http://127.0.0.1:${this.ports.admin}${pathname}`; }

  async readyz() { return (await request(this.adminUrl('/readyz'))).status; }

  // Scrapes /metrics and parses it strictly (a malformed exposition fails the test).
  async metrics() {
    const res = await request(this.adminUrl('/metrics'));
    if (res.status !== 200) throw new Error(`${this.name} /metrics: HTTP ${res.status}`);
    return parsePrometheus(res.text);
  }

  // Sends SIGTERM to this child only.
  terminate() { this.child.kill('SIGTERM'); }

  // Resolves { code, signal, at } once the process exited, or null after `timeoutMs`.
  async waitExit(timeoutMs) {
    let timer;
    const result = await Promise.race([
      this.child.exited,
      new Promise((resolve) => { timer = setTimeout(() => resolve(null), timeoutMs); }),
    ]);
    clearTimeout(timer);
    return result;
  }

  // SIGTERM and wait; a process that outlives the deadline is killed and reported.
  async stop(timeoutMs = 15000) {
    const child = this.child;
    if (!child) return null;
    if (child.exitCode !== null || child.signalCode !== null) return child.exited;
    this.terminate();
    const result = await this.waitExit(timeoutMs);
    if (result) return result;
    this.kill();
    throw new Error(`${this.name} (pid ${child.pid}) did not exit within ${timeoutMs} ms of SIGTERM\n${this.logTail()}`);
  }

  kill() {
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }

  logTail(bytes) { return tail(this.logFile, bytes); }
}

// `bayeux-edge check --config FILE`: resolves { status, stdout, stderr }.
function check(configFile) {
  const result = spawnSync(edgeBinary(), ['check', '--config', configFile], { encoding: 'utf8', timeout: 15000 });
  if (result.error) throw result.error;
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

// Runs `bayeux-edge ARGS...` without blocking the event loop (clients keep running);
// resolves { status, stdout, stderr }. A run that outlives `timeoutMs` is killed and fails.
function cli(args, { timeoutMs = 15000 } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(edgeBinary(), args, { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`bayeux-edge ${args.join(' ')} did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
    child.once('error', (error) => { clearTimeout(timer); children.delete(child); reject(error); });
    child.once('close', (status) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ status, stdout, stderr });
    });
  });
}

function hasOpenssl() {
  return spawnSync('openssl', ['version'], { encoding: 'utf8' }).status === 0;
}

function openssl(args) {
  const result = spawnSync('openssl', args, { encoding: 'utf8', timeout: 30000 });
  if (result.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${result.stderr}`);
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2'];

// A throw-away certificate authority in `dir`: { cert, key } file paths.
function makeCa(dir, name = 'ca') {
  const cert = path.join(dir, `${name}.pem`);
  const key = path.join(dir, `${name}-key.pem`);
  openssl(['req', '-x509', ...EC, '-subj', `/CN=bayeux-edge test ${name}`, '-keyout', key, '-out', cert]);
  return { cert, key };
}

// A leaf certificate for localhost and 127.0.0.1 signed by `ca`, written to
// `${name}.pem` and `${name}-key.pem` in `dir`; returns the file paths.
function makeLeaf(dir, name, ca) {
  const cert = path.join(dir, `${name}.pem`);
  const key = path.join(dir, `${name}-key.pem`);
  openssl(['req', '-x509', '-CA', ca.cert, '-CAkey', ca.key, ...EC, '-subj', `/CN=localhost ${name}`,
    '-addext', 'basicConstraints=critical,CA:FALSE',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
    '-keyout', key, '-out', cert]);
  return { cert, key };
}

// One TLS handshake; resolves { fingerprint256, alpn } of what the listener presented.
function tlsPeer(port, { ca, ALPNProtocols = ['http/1.1'], timeout = 10000 } = {}) {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca, ALPNProtocols }, () => {
      const peer = socket.getPeerX509Certificate();
      const result = { fingerprint256: peer && peer.fingerprint256, alpn: socket.alpnProtocol };
      socket.destroy();
      resolve(result);
    });
    socket.setTimeout(timeout, () => socket.destroy(new Error(`TLS handshake with 127.0.0.1:${port} timed out`)));
    socket.on('error', reject);
  });
}

module.exports = {
  EdgeProcess, routesToml, replaceFile, check, cli, tempDir, removeDir, hasOpenssl, makeCa, makeLeaf, tlsPeer, edgeBinary,
};
