// bayeux-edge operator console. Plain script, no build step, nothing fetched
// from elsewhere. It polls the JSON API while the page is visible, draws the
// sparklines as inline SVG, and drives presence, taps and the test publish.
'use strict';

(() => {
  const POLL_MS = 2000;
  const SPARK_POINTS = 300; // five minutes at one sample per second
  const TAP_LOG = 100; // lines kept on screen per tap
  const SVG = 'http://www.w3.org/2000/svg';
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const $ = (id) => document.getElementById(id);

  const series = new Map(); // prefix -> array of points
  let since = 0;
  let polling = false;

  // '/staging/faye' + '/123' -> '/api/routes/staging/faye/channels/123', each segment escaped.
  const encodePath = (p) => p.split('/').map(encodeURIComponent).join('/');
  const routeUrl = (prefix, rest = '') => '/api/routes' + encodePath(prefix) + rest;

  async function api(url, options = {}) {
    const response = await fetch(url, { credentials: 'same-origin', ...options });
    let body;
    try {
      body = await response.json();
    } catch (_) {
      body = { error: response.statusText };
    }
    if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
    return body;
  }

  const number = (n) => (typeof n === 'number' ? n.toLocaleString('en-US') : String(n));
  const rate = (n) => (n >= 100 ? Math.round(n).toLocaleString('en-US') : String(Math.round(n * 10) / 10));
  const clock = (ms) => new Date(ms).toLocaleTimeString([], { hour12: false });
  function ago(ms) {
    const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (s < 60) return `${s} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min ago`;
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === 'class') node.className = v;
      else if (k === 'text') node.textContent = v;
      else node.setAttribute(k, v);
    }
    for (const child of children) node.append(child);
    return node;
  }

  function card(prefix) {
    return document.querySelector(`article.route[data-prefix="${CSS.escape(prefix)}"]`);
  }

  function setField(root, name, value) {
    const node = root.querySelector(`[data-field="${name}"]`);
    if (node && node.textContent !== String(value)) node.textContent = String(value);
  }

  // --- route cards -------------------------------------------------------

  function renderRoutes(data) {
    $('draining').hidden = !data.draining;
    const known = new Set([...document.querySelectorAll('article.route')].map((n) => n.dataset.prefix));
    const now = new Set(data.routes.map((r) => r.prefix));
    const changed = known.size !== now.size || [...now].some((p) => !known.has(p));
    showRoutesChanged(changed);
    for (const r of data.routes) {
      const root = card(r.prefix);
      if (!root || r.kind !== 'engine') continue;
      setField(root, 'engine', r.engine + (r.redis ? (r.redis.up ? ' · up' : ' · unreachable') : '') + (r.retired ? ' · retired' : ''));
      setField(root, 'sessions', number(r.sessions));
      setField(root, 'subscriptions', number(r.subscriptions));
      setField(root, 'published_per_sec', rate(r.published_per_sec));
      setField(root, 'delivered_per_sec', rate(r.delivered_per_sec));
      setField(root, 'published', number(r.published));
      setField(root, 'delivered', number(r.delivered));
      setField(root, 'dropped', number(r.dropped));
      setField(root, 'overflows', number(r.overflows));
      setField(root, 'taps', number(r.taps));
      for (const [name, value] of Object.entries(r.connections)) setField(root, `conn-${name}`, number(value));
      for (const [name, value] of Object.entries(r.policies)) setField(root, `policy-${name}`, value);
      root.classList.toggle('has-drops', r.dropped > 0 || r.overflows > 0);
    }
  }

  function showRoutesChanged(changed) {
    let note = $('routes-changed');
    if (!changed) {
      if (note) note.remove();
      return;
    }
    if (note) return;
    note = el('p', { id: 'routes-changed', class: 'notice' },
      'The route table changed (a reload). ',
      el('button', { type: 'button', class: 'ghost', text: 'Show the new routes' }));
    note.querySelector('button').addEventListener('click', () => window.location.reload());
    $('routes').prepend(note);
  }

  function renderHistory(data) {
    for (const route of data.routes) {
      const points = series.get(route.prefix) || [];
      points.push(...route.points);
      if (points.length > SPARK_POINTS) points.splice(0, points.length - SPARK_POINTS);
      series.set(route.prefix, points);
      if (route.points.length) since = Math.max(since, route.points[route.points.length - 1].t);
      const root = card(route.prefix);
      if (!root) continue;
      for (const svg of root.querySelectorAll('svg.spark')) {
        spark(svg, points.map((p) => p[svg.dataset.series]));
      }
    }
  }

  // A line and its shaded area in a 120×28 box, scaled to the largest value. The box
  // spans the last minute until more history exists, then up to five minutes.
  function spark(svg, values) {
    const width = 120;
    const height = 28;
    const max = Math.max(1, ...values);
    const span = Math.min(SPARK_POINTS, Math.max(60, values.length));
    const step = width / (span - 1);
    const offset = width - step * (values.length - 1);
    const xy = values.map((v, i) => [offset + i * step, height - 1 - (v / max) * (height - 3)]);
    svg.replaceChildren();
    if (xy.length < 2) return;
    const line = xy.map(([x, y], i) => `${i ? 'L' : 'M'}${x.toFixed(1)} ${y.toFixed(1)}`).join(' ');
    const area = document.createElementNS(SVG, 'path');
    area.setAttribute('class', 'area');
    area.setAttribute('d', `${line} L${width} ${height} L${offset.toFixed(1)} ${height} Z`);
    const path = document.createElementNS(SVG, 'path');
    path.setAttribute('class', 'line');
    path.setAttribute('d', line);
    const title = document.createElementNS(SVG, 'title');
    title.textContent = `last ${values.length} s, peak ${rate(Math.max(...values))}`;
    svg.append(title, area, path);
  }

  function renderReloads(data) {
    const rows = $('reload-rows');
    if (!data.reloads.length) return;
    rows.replaceChildren(...data.reloads.map((r) => el('tr', { class: r.result },
      el('td', { text: `${new Date(r.at).toLocaleString([], { hour12: false })}` }),
      el('td', { text: r.result }),
      el('td', {}, el('pre', { text: r.detail })))));
  }

  async function poll() {
    if (polling || document.hidden) return;
    polling = true;
    const updated = $('updated');
    try {
      const [routes, history, reloads] = await Promise.all([
        api('/api/routes'),
        api(`/api/history?since=${since}`),
        api('/api/reloads'),
      ]);
      renderRoutes(routes);
      renderHistory(history);
      renderReloads(reloads);
      updated.textContent = `updated ${clock(routes.now)}`;
      updated.classList.remove('bad');
    } catch (error) {
      updated.textContent = `not updating: ${error.message}`;
      updated.classList.add('bad');
    } finally {
      polling = false;
    }
  }

  // --- presence ----------------------------------------------------------

  $('presence-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const route = $('presence-route').value;
    const channel = $('presence-channel').value.trim();
    const out = $('presence-result');
    out.replaceChildren(el('p', { class: 'muted', text: 'Looking up…' }));
    try {
      const data = await api(routeUrl(route, '/channels' + encodePath(channel)));
      const summary = el('p', { class: 'result' },
        el('span', { class: 'count', id: 'presence-count', text: number(data.count) }),
        ` session${data.count === 1 ? '' : 's'} would receive a publish to `,
        el('code', { text: data.channel }), ' on ', el('code', { text: data.route }),
        data.sessions.length < data.count ? ` (first ${data.sessions.length} shown)` : '',
        data.this_node_only ? ' on this node (a Redis route: other nodes hold their own sessions)' : '');
      if (!data.sessions.length) {
        out.replaceChildren(summary);
        return;
      }
      const head = el('tr', {}, ...['client id', 'transport', 'connected since', 'queued', 'client IP']
        .map((h) => el('th', { text: h })));
      const rows = data.sessions.map((s) => el('tr', { class: 'presence-row' },
        el('td', { class: 'mono', text: s.client_id }),
        el('td', { class: 'transport', text: s.transport || 'not connected yet' }),
        el('td', { text: `${clock(s.connected_since)} (${ago(s.connected_since)})` }),
        el('td', { text: number(s.queued) }),
        el('td', { class: 'mono', text: s.client_ip || 'unknown' })));
      const table = el('table', { class: 'list' }, el('thead', {}, head), el('tbody', {}, ...rows));
      out.replaceChildren(summary, el('div', { class: 'table-scroll' }, table));
    } catch (error) {
      out.replaceChildren(el('p', { class: 'error', text: error.message }));
    }
  });

  // --- taps ----------------------------------------------------------------

  $('tap-form').addEventListener('submit', (event) => {
    event.preventDefault();
    openTap($('tap-route').value, $('tap-pattern').value.trim());
  });

  function openTap(route, pattern) {
    const count = el('span', { class: 'tap-count', text: '0' });
    const dropped = el('span', { class: 'tap-dropped', text: '0' });
    const state = el('span', { class: 'tap-state', text: 'opening…' });
    const stop = el('button', { type: 'button', class: 'ghost', text: 'Stop' });
    const log = el('ol', { class: 'tap-log' }, el('li', { class: 'empty', text: 'Waiting for messages…' }));
    const panel = el('div', { class: 'tap', 'data-route': route, 'data-pattern': pattern },
      el('div', { class: 'tap-head' },
        el('span', { class: 'where', text: `${route} ${pattern}` }), state,
        el('span', {}, count, ' messages'), el('span', {}, dropped, ' dropped'), stop),
      log);
    $('tap-list').prepend(panel);

    const controller = new AbortController();
    let received = 0;
    let pending = [];
    let frame = 0;
    stop.addEventListener('click', () => {
      controller.abort();
      panel.remove();
    });

    // Messages can arrive far faster than a screen can show them: the count is
    // exact, the list shows the latest few, redrawn once per animation frame.
    function flush() {
      frame = 0;
      count.textContent = number(received);
      if (!pending.length) return;
      const items = pending.slice(-TAP_LOG).map(({ at, message }) => el('li', {},
        el('span', { class: 't', text: clock(at) }),
        el('span', { class: 'ch', text: message.channel }),
        el('span', { class: 'data', text: JSON.stringify(message.data) })));
      pending = [];
      const empty = log.querySelector('.empty');
      if (empty) empty.remove();
      log.prepend(...items.reverse());
      while (log.children.length > TAP_LOG) log.lastChild.remove();
    }

    function onEvent(type, data) {
      if (type === 'open') {
        state.textContent = 'live';
        state.className = 'tap-state live';
      } else if (type === 'dropped') {
        const n = JSON.parse(data).dropped;
        dropped.textContent = number(n);
        dropped.classList.toggle('some', n > 0);
      } else {
        received += 1;
        pending.push({ at: Date.now(), message: JSON.parse(data) });
        if (!frame) frame = requestAnimationFrame(flush);
      }
    }

    (async () => {
      try {
        const response = await fetch(routeUrl(route, '/tap' + encodePath(pattern)), {
          credentials: 'same-origin',
          headers: { Accept: 'text/event-stream' },
          signal: controller.signal,
        });
        if (!response.ok) {
          const body = await response.json().catch(() => ({}));
          throw new Error(body.error || `HTTP ${response.status}`);
        }
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let end;
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            let type = 'message';
            const data = [];
            for (const line of block.split('\n')) {
              if (line.startsWith('event: ')) type = line.slice(7);
              else if (line.startsWith('data: ')) data.push(line.slice(6));
            }
            if (data.length) onEvent(type, data.join('\n'));
          }
        }
        state.textContent = 'ended (the route was retired or the server is stopping)';
        state.className = 'tap-state ended';
      } catch (error) {
        if (controller.signal.aborted) return;
        state.textContent = error.message;
        state.className = 'tap-state ended';
      }
    })();
  }

  // --- test publish --------------------------------------------------------

  $('publish-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const out = $('publish-result');
    let data;
    try {
      data = JSON.parse($('publish-data').value);
    } catch (error) {
      out.className = 'error';
      out.textContent = `The data is not JSON: ${error.message}`;
      return;
    }
    const route = $('publish-route').value;
    const channel = $('publish-channel').value.trim();
    out.className = 'muted';
    out.textContent = 'Publishing…';
    try {
      const result = await api(routeUrl(route, '/publish'), {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
        body: JSON.stringify({ channel, data }),
      });
      out.className = 'okay';
      out.textContent = result.recipients === null
        ? `Published on ${route} ${result.channel}: recorded in Redis; each node delivers it to its sessions.`
        : `Published on ${route} ${result.channel}: queued for ${number(result.recipients)} ` +
          `session${result.recipients === 1 ? '' : 's'}.`;
      poll();
    } catch (error) {
      out.className = 'error';
      out.textContent = error.message;
    }
  });

  setInterval(poll, POLL_MS);
  document.addEventListener('visibilitychange', poll);
  poll();
})();
