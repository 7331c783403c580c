'use strict';
// A real redis-server per test: a free port (found by binding and releasing, since Redis
// cannot pick one; a collision shows as an early exit and another port is tried), its own
// temporary directory with an append-only file (so a restart keeps the data, as a
// replicated ElastiCache does across a failover), stopped or killed by its PID.
// `redisCli(port, ...args)` runs one command through redis-cli.

const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');
const { spawn, spawnSync } = require('child_process');
const { waitUntil } = require('./wait');

const children = new Set();
process.on('exit', () => {
  for (const child of children) {
    try { process.kill(child.pid, 'SIGKILL'); } catch (_) { /* already gone */ }
  }
});

function hasRedis() {
  return spawnSync('redis-server', ['--version'], { encoding: 'utf8' }).status === 0;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function redisCli(port, ...args) {
  const r = spawnSync('redis-cli', ['-p', String(port), '--no-raw', ...args.map(String)], { encoding: 'utf8', timeout: 10000 });
  if (r.status !== 0) throw new Error(`redis-cli ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

class RedisServer {
  constructor() {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edge-redis-'));
    this.port = 0;
    this.child = null;
  }

  get url() { return `redis://127.0.0.1:${this.port}/`; }

  async start() {
    for (let attempt = 0; attempt < 10; attempt++) {
      if (!this.port || attempt > 0) this.port = await freePort();
      if (await this.spawn()) return this;
    }
    throw new Error('redis-server did not start on any of 10 free ports');
  }

  // Starts the server again on the same port and directory (its data comes back).
  async restart() {
    for (let attempt = 0; attempt < 50; attempt++) {
      if (await this.spawn()) return this;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`redis-server did not restart on port ${this.port}`);
  }

  async spawn() {
    const child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '',
      '--appendonly', 'yes', '--appendfsync', 'always', '--dir', this.dir], { stdio: 'ignore' });
    children.add(child);
    child.exited = new Promise((resolve) => child.once('exit', () => { children.delete(child); resolve(); }));
    this.child = child;
    try {
      await waitUntil(() => {
        if (child.exitCode !== null || child.signalCode !== null) throw new Error('exited');
        try { return redisCli(this.port, 'PING').includes('PONG'); } catch (_) { return false; }
      }, { timeout: 10000, interval: 20, what: `redis-server on ${this.port}` });
      return true;
    } catch (_) {
      this.kill();
      return false;
    }
  }

  // Calls of each command since start (or the last CONFIG RESETSTAT), from INFO commandstats.
  commandStats() {
    const out = {};
    for (const line of redisCli(this.port, 'INFO', 'commandstats').split('\n')) {
      const m = /^cmdstat_([^:]+):calls=(\d+)/.exec(line.trim());
      if (m) out[m[1]] = Number(m[2]);
    }
    return out;
  }

  resetStats() { redisCli(this.port, 'CONFIG', 'RESETSTAT'); }

  async stop() {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    await Promise.race([child.exited, new Promise((r) => setTimeout(r, 5000))]);
    this.kill();
  }

  kill() {
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }

  async remove() {
    await this.stop();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

// A node of a Redis route: routes.toml `routes` entry for `prefix` on `redis`. Commands get
// 5 s instead of 1 s: a loaded test machine must not pass for an unreachable Redis.
function redisRoute(prefix, tunables = {}) {
  return { prefix, tunables: { engine: '"redis"', redis_url_env: '"EDGE_TEST_REDIS_URL"', redis_timeout_secs: 5, ...tunables } };
}

module.exports = { RedisServer, hasRedis, redisCli, redisRoute, freePort };
