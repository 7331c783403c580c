'use strict';
// Waiting primitives. Every wait has a deadline; polling loops are bounded by it.

const { setTimeout: delay } = require('timers/promises');

// Polls `check` (sync or async) until it returns a truthy value, which is returned.
// `what` is a string or a function producing a string (called only on failure) that says
// what was awaited and, ideally, what was seen instead.
async function waitUntil(check, { timeout = 10000, interval = 10, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await check();
    if (value) return value;
    const left = deadline - Date.now();
    if (left <= 0) {
      const detail = typeof what === 'function' ? what() : what;
      throw new Error(`timed out after ${timeout} ms waiting for ${detail}`);
    }
    await delay(Math.min(interval, left));
  }
}

// Resolves like `promise`, or rejects once `timeout` ms have passed.
function withDeadline(promise, timeout, what) {
  let timer;
  const expired = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeout} ms waiting for ${what}`)), timeout);
  });
  return Promise.race([Promise.resolve(promise), expired]).finally(() => clearTimeout(timer));
}

// Runs `worker(item, index)` over `items` with at most `limit` in flight.
async function mapLimit(items, limit, worker) {
  const results = new Array(items.length);
  let next = 0;
  const lanes = [];
  for (let lane = 0; lane < Math.min(limit, items.length); lane++) {
    lanes.push((async () => {
      while (next < items.length) {
        const index = next++;
        results[index] = await worker(items[index], index);
      }
    })());
  }
  await Promise.all(lanes);
  return results;
}

module.exports = { waitUntil, withDeadline, mapLimit, delay };
