'use strict';
// The operator's console on the admin listener, in headless Chromium: the three routes,
// presence of a Node Faye client on /staging/faye, a tap showing a backend POST, the
// test-publish form reaching the Faye client, a production tap that sees none of it, and,
// with `token_env` set, a page that refuses without the token and works after logging in.
// Screenshots of the page are written to tests/interop/output/console/ (gitignored).

const fs = require('fs');
const path = require('path');
const { describe, test, before, after } = require('node:test');
const assert = require('assert/strict');
const { EdgeProcess, routesToml, tempDir, removeDir } = require('../support/edge-process');
const { edgeOnly } = require('../support/harness');
const { launchBrowser, browserMissing } = require('../support/browser');
const { unavailable } = require('../support/required');
const { TracedClient, closeAll } = require('../support/faye-node');
const { request, backendPublish, closeAgents } = require('../support/http');
const { waitUntil } = require('../support/wait');

const OUTPUT = path.resolve(__dirname, '..', 'output', 'console');
const ROUTES = ['/development/faye', '/staging/faye', '/production/faye'];
const STAGING = '/staging/faye';
const PRODUCTION = '/production/faye';
const TOKEN = 'console-test-token-5d1f0c';

const skip = edgeOnly('the operator console') || unavailable(browserMissing());

describe('operator console in Chromium', { skip: skip || false }, () => {
  let browser;
  const dirs = [];
  const edges = [];
  const clients = [];

  async function startEdge({ token } = {}) {
    const dir = tempDir('console');
    dirs.push(dir);
    fs.writeFileSync(path.join(dir, 'routes.toml'), routesToml({
      listeners: [{ name: 'http' }],
      adminTokenEnv: token ? 'ADMIN_TOKEN' : undefined,
      defaults: { timeout_secs: 10 },
      routes: ROUTES.map((prefix) => ({ prefix })),
    }));
    const edge = new EdgeProcess(dir, { env: token ? { ADMIN_TOKEN: token } : {} });
    edges.push(edge);
    return edge.start();
  }

  async function openPage() {
    const page = await browser.context.newPage();
    await page.setViewportSize({ width: 1400, height: 1000 });
    const problems = [];
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(`console error: ${message.text()}`);
    });
    page.problems = problems;
    return page;
  }

  // The text of `selector`, once `check(text)` holds.
  async function textWhen(page, selector, check, what) {
    return waitUntil(async () => {
      const text = await page.locator(selector).first().textContent().catch(() => null);
      return text !== null && check(text) ? text : null;
    }, { timeout: 15000, what: () => `${what} (${selector})` });
  }

  async function startTap(page, route, pattern) {
    await page.selectOption('#tap-route', route);
    await page.fill('#tap-pattern', pattern);
    await page.click('#tap-start');
    const panel = `.tap[data-route="${route}"][data-pattern="${pattern}"]`;
    await textWhen(page, `${panel} .tap-state`, (t) => t === 'live', `the ${route} tap to be live`);
    return panel;
  }

  before(async () => {
    fs.mkdirSync(OUTPUT, { recursive: true });
    browser = await launchBrowser();
  });

  after(async () => {
    await closeAll(clients);
    closeAgents();
    if (browser) await browser.close();
    for (const edge of edges) await edge.stop().catch(() => edge.kill());
    for (const dir of dirs) removeDir(dir);
  });

  test('routes, presence, a tap and the test publish, live', async () => {
    const edge = await startEdge();
    const page = await openPage();
    const response = await page.goto(edge.adminUrl('/'));
    assert.equal(response.status(), 200);
    const prefixes = await page.locator('article.route').evaluateAll((cards) => cards.map((c) => c.dataset.prefix));
    assert.deepEqual([...prefixes].sort(), [...ROUTES].sort());
    await textWhen(page, '#updated', (t) => t.startsWith('updated'), 'the first poll');

    // A Faye client (Node) on /staging/faye, subscribed to /123 over WebSocket.
    const faye = new TracedClient(edge.url(STAGING), { transport: 'websocket' });
    clients.push(faye);
    const got = [];
    await faye.subscribe('/123', (data) => got.push(data));
    await faye.waitConnected();

    // Presence: one WebSocket session, with its address.
    await page.selectOption('#presence-route', STAGING);
    await page.fill('#presence-channel', '/123');
    await page.click('#presence-go');
    await textWhen(page, '#presence-count', (t) => t === '1', 'one session in presence');
    const row = page.locator('#presence-result tr.presence-row');
    assert.equal(await row.count(), 1);
    assert.equal(await row.locator('td.transport').textContent(), 'websocket');
    assert.equal(await row.locator('td').first().textContent(), faye.clientId);
    assert.equal(await row.locator('td').last().textContent(), '127.0.0.1');

    // Taps on /123 in staging and in production.
    const stagingTap = await startTap(page, STAGING, '/123');
    const productionTap = await startTap(page, PRODUCTION, '/123');

    // A backend POST shows in the staging tap and reaches the Faye client.
    await backendPublish(edge.url(STAGING), '/123', { text: 'a share for user 123', from: 'backend' });
    await waitUntil(() => got.length === 1, { what: () => `the backend message at the Faye client\n${faye.summary()}` });
    await textWhen(page, `${stagingTap} .tap-count`, (t) => t === '1', 'the backend message in the tap');
    const logged = await page.locator(`${stagingTap} .tap-log li .data`).first().textContent();
    assert.deepEqual(JSON.parse(logged), { text: 'a share for user 123', from: 'backend' });

    // The test-publish form reaches the Faye client, the tap and the delivery counter.
    const delivered = Number(await page.locator(`article.route[data-prefix="${STAGING}"] [data-field="delivered"]`).textContent());
    await page.selectOption('#publish-route', STAGING);
    await page.fill('#publish-channel', '/123');
    await page.fill('#publish-data', '{"text": "hello from the console", "from": "console"}');
    await page.click('#publish-go');
    await textWhen(page, '#publish-result', (t) => t.includes('queued for 1 session'), 'the publish result');
    await waitUntil(() => got.length === 2, { what: () => `the console's message at the Faye client\n${faye.summary()}` });
    assert.deepEqual(got[1], { text: 'hello from the console', from: 'console' });
    await textWhen(page, `${stagingTap} .tap-count`, (t) => t === '2', 'the console message in the tap');
    await textWhen(page, `article.route[data-prefix="${STAGING}"] [data-field="delivered"]`,
      (t) => Number(t.replace(/,/g, '')) >= delivered + 1, 'the delivery counter to move');

    // The production tap saw nothing, and the tap is no session of production's.
    assert.equal(await page.locator(`${productionTap} .tap-count`).textContent(), '0');
    assert.equal(await page.locator(`${productionTap} .tap-log li.empty`).count(), 1);
    const api = JSON.parse((await request(edge.adminUrl('/api/routes'))).text);
    const production = api.routes.find((r) => r.prefix === PRODUCTION);
    assert.equal(production.sessions, 0);
    assert.equal(production.taps, 1);
    const staging = api.routes.find((r) => r.prefix === STAGING);
    assert.equal(staging.sessions, 1, 'the taps are not sessions');
    assert.equal(staging.connections.websocket, 1);

    // Some traffic on staging and development until the history holds 20 samples, so
    // the sparklines have something to show; then keep a picture of the page.
    const development = new TracedClient(edge.url('/development/faye'), { transport: 'long-polling' });
    clients.push(development);
    await development.subscribe('/announcements');
    let sent = 0;
    await waitUntil(async () => {
      sent += 1;
      await backendPublish(edge.url(STAGING), '/123', { text: `update ${sent}`, from: 'backend' });
      if (sent % 3 === 0) await backendPublish(edge.url('/development/faye'), '/announcements', { n: sent });
      const history = JSON.parse((await request(edge.adminUrl('/api/history'))).text);
      return history.routes.find((r) => r.prefix === STAGING).points.length >= 20;
    }, { timeout: 40000, interval: 150, what: '20 samples of history' });
    await waitUntil(async () => (await page.locator(`article.route[data-prefix="${STAGING}"] svg.spark path.line`).count()) === 4,
      { timeout: 15000, what: 'the sparklines to be drawn' });
    await textWhen(page, `${stagingTap} .tap-count`, (t) => Number(t.replace(/,/g, '')) === 2 + sent,
      'every message in the tap');
    assert.equal(await page.locator(`${productionTap} .tap-count`).textContent(), '0');
    await page.screenshot({ path: path.join(OUTPUT, 'console.png'), fullPage: true });
    assert.deepEqual(page.problems, []);
    await page.close();
  });

  test('with token_env, the page refuses without the token and works after logging in', async () => {
    const edge = await startEdge({ token: TOKEN });
    // Health, readiness and metrics stay open; the API does not.
    assert.equal((await request(edge.adminUrl('/readyz'))).status, 200);
    assert.equal((await request(edge.adminUrl('/metrics'))).status, 200);
    assert.equal((await request(edge.adminUrl('/api/routes'))).status, 401);

    const page = await openPage();
    const refused = await page.goto(edge.adminUrl('/'));
    assert.equal(refused.status(), 401);
    assert.equal(await page.locator('article.route').count(), 0);
    assert.equal(await page.locator('#login-form').count(), 1);
    await page.screenshot({ path: path.join(OUTPUT, 'login.png') });

    await page.fill('#token', 'not the token');
    await Promise.all([page.waitForNavigation(), page.click('#login-form button')]);
    assert.match(await page.locator('#login-error').textContent(), /not the token/);
    assert.equal(await page.locator('article.route').count(), 0);

    await page.fill('#token', TOKEN);
    await Promise.all([page.waitForNavigation(), page.click('#login-form button')]);
    assert.equal(await page.locator('article.route').count(), ROUTES.length);
    const cookies = await browser.context.cookies(edge.adminUrl('/'));
    const cookie = cookies.find((c) => c.name === 'bayeux_admin');
    assert.ok(cookie, `login cookie missing: ${JSON.stringify(cookies)}`);
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.sameSite, 'Strict');
    assert.notEqual(cookie.value, TOKEN, 'the cookie is not the token');

    // Signed in, presence and the test publish work (the CSRF token comes from the page).
    const faye = new TracedClient(edge.url(STAGING), { transport: 'long-polling' });
    clients.push(faye);
    const got = [];
    await faye.subscribe('/123', (data) => got.push(data));
    await faye.waitConnected();
    await page.selectOption('#presence-route', STAGING);
    await page.click('#presence-go');
    await textWhen(page, '#presence-count', (t) => t === '1', 'one session in presence');
    assert.equal(await page.locator('#presence-result td.transport').textContent(), 'long-polling');
    await page.selectOption('#publish-route', STAGING);
    await page.click('#publish-go');
    await textWhen(page, '#publish-result', (t) => t.includes('queued for 1 session'), 'the publish result');
    await waitUntil(() => got.length === 1, { what: () => `the console's message\n${faye.summary()}` });
    await page.screenshot({ path: path.join(OUTPUT, 'signed-in.png') });

    // Signing out ends it.
    await Promise.all([page.waitForNavigation(), page.click('form[action="/logout"] button')]);
    assert.equal(await page.locator('#login-form').count(), 1);
    assert.deepEqual(page.problems.filter((p) => !p.includes('401')), []);
    await page.close();
  });
});
