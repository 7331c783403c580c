'use strict';

// A suite that cannot run for lack of a tool (a browser, openssl) is skipped
// when someone runs one test file by hand, but in the full run
// (`scripts/test`, and CI, which set BAYEUX_EDGE_REQUIRE_ALL=1) it is a
// failure: a green run must mean every suite really ran.

const { test } = require('node:test');
const assert = require('node:assert/strict');

const REQUIRED = process.env.BAYEUX_EDGE_REQUIRE_ALL === '1';

// `reason` is why the suite cannot run, or a falsy value when it can. Returns
// what to pass as `skip`; in the full run it also registers a failing test.
function unavailable(reason) {
  if (!reason) return false;
  if (REQUIRED) {
    test(`required suite could not run: ${reason}`, () => {
      assert.fail(`${reason} (BAYEUX_EDGE_REQUIRE_ALL=1: every suite must run)`);
    });
  }
  return reason;
}

// Inside a running test: skip it with `reason`, or fail it in the full run.
function skipOrFail(t, reason) {
  if (REQUIRED) assert.fail(`${reason} (BAYEUX_EDGE_REQUIRE_ALL=1: every suite must run)`);
  return t.skip(reason);
}

module.exports = { unavailable, skipOrFail, REQUIRED };
