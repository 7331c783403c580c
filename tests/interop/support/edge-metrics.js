'use strict';
// A strict reader of the Prometheus text exposition format (version 0.0.4), so that every
// scrape a test makes also checks the format: HELP and TYPE at most once per family and
// before its samples, no sample without a TYPE, families not interleaved, no duplicate
// series, well-formed names, labels and values, and histograms whose buckets are sorted,
// cumulative, end with +Inf and agree with _count.

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

function parseValue(text, where) {
  if (text === '+Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  if (text === 'NaN') return NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) throw new Error(`${where}: bad value ${JSON.stringify(text)}`);
  return Number(text);
}

// Parses `{a="x",b="y"}` starting at text[i] === '{'; returns [labels, next index].
function parseLabels(text, i, where) {
  const labels = {};
  i += 1;
  for (;;) {
    if (text[i] === '}') return [labels, i + 1];
    const eq = text.indexOf('=', i);
    if (eq < 0) throw new Error(`${where}: unterminated label set`);
    const name = text.slice(i, eq);
    if (!LABEL.test(name) || name.startsWith('__')) throw new Error(`${where}: bad label name ${JSON.stringify(name)}`);
    if (Object.prototype.hasOwnProperty.call(labels, name)) throw new Error(`${where}: label ${name} repeated`);
    if (text[eq + 1] !== '"') throw new Error(`${where}: label ${name} value is not quoted`);
    let j = eq + 2;
    let value = '';
    for (;;) {
      const c = text[j];
      if (c === undefined) throw new Error(`${where}: unterminated label value`);
      if (c === '"') break;
      if (c === '\\') {
        const e = text[j + 1];
        if (e === '\\') value += '\\';
        else if (e === '"') value += '"';
        else if (e === 'n') value += '\n';
        else throw new Error(`${where}: bad escape \\${e} in label ${name}`);
        j += 2;
      } else {
        value += c;
        j += 1;
      }
    }
    labels[name] = value;
    i = j + 1;
    if (text[i] === ',') i += 1;
    else if (text[i] !== '}') throw new Error(`${where}: expected , or } after label ${name}`);
  }
}

function familyOf(name, families) {
  if (families.has(name)) return name;
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (name.endsWith(suffix)) {
      const base = name.slice(0, -suffix.length);
      const f = families.get(base);
      if (f && (f.type === 'histogram' || (f.type === 'summary' && suffix !== '_bucket'))) return base;
    }
  }
  return null;
}

const seriesKey = (name, labels) => name + JSON.stringify(Object.keys(labels).sort().map((k) => [k, labels[k]]));

function checkHistogram(family) {
  const groups = new Map();
  for (const s of family.samples) {
    const { le, ...rest } = s.labels;
    const key = JSON.stringify(Object.keys(rest).sort().map((k) => [k, rest[k]]));
    if (!groups.has(key)) groups.set(key, { buckets: [], sum: undefined, count: undefined });
    const g = groups.get(key);
    if (s.name === `${family.name}_bucket`) {
      if (le === undefined) throw new Error(`${family.name}: bucket without le`);
      g.buckets.push({ le: parseValue(le, `${family.name} le`), value: s.value });
    } else if (s.name === `${family.name}_sum`) g.sum = s.value;
    else if (s.name === `${family.name}_count`) g.count = s.value;
    else throw new Error(`${family.name}: unexpected sample ${s.name} in a histogram`);
  }
  if (groups.size === 0) throw new Error(`${family.name}: histogram without samples`);
  for (const g of groups.values()) {
    if (g.buckets.length === 0) throw new Error(`${family.name}: no buckets`);
    for (let i = 1; i < g.buckets.length; i++) {
      if (!(g.buckets[i].le > g.buckets[i - 1].le)) throw new Error(`${family.name}: bucket bounds not increasing at le=${g.buckets[i].le}`);
      if (g.buckets[i].value < g.buckets[i - 1].value) throw new Error(`${family.name}: bucket le=${g.buckets[i].le} (${g.buckets[i].value}) below le=${g.buckets[i - 1].le} (${g.buckets[i - 1].value}): buckets must be cumulative`);
    }
    const last = g.buckets[g.buckets.length - 1];
    if (last.le !== Infinity) throw new Error(`${family.name}: the last bucket is not le="+Inf"`);
    if (g.count === undefined || g.sum === undefined) throw new Error(`${family.name}: _sum or _count missing`);
    if (last.value !== g.count) throw new Error(`${family.name}: +Inf bucket ${last.value} != _count ${g.count}`);
    if (g.sum < 0) throw new Error(`${family.name}: negative _sum`);
  }
}

// Returns { families: Map(name -> { name, type, help, samples }), get(name, labels) }.
function parsePrometheus(text) {
  if (text.length > 0 && !text.endsWith('\n')) throw new Error('exposition does not end with a newline');
  const families = new Map();
  const series = new Set();
  let current = null;
  const finished = new Set();
  const lines = text.split('\n');
  lines.pop();
  lines.forEach((line, index) => {
    const where = `metrics line ${index + 1} ${JSON.stringify(line.slice(0, 120))}`;
    if (line === '') return;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+)(?: (.*))?$/.exec(line);
      if (!m) return; // a plain comment
      const [, kind, name, rest = ''] = m;
      if (!NAME.test(name)) throw new Error(`${where}: bad metric name`);
      if (finished.has(name)) throw new Error(`${where}: family ${name} appears again after other families`);
      let f = families.get(name);
      if (!f) {
        f = { name, type: undefined, help: undefined, samples: [] };
        families.set(name, f);
      }
      if (current && current !== f) finished.add(current.name);
      current = f;
      if (f.samples.length > 0) throw new Error(`${where}: ${kind} after samples of ${name}`);
      if (kind === 'HELP') {
        if (f.help !== undefined) throw new Error(`${where}: second HELP for ${name}`);
        f.help = rest;
      } else {
        if (f.type !== undefined) throw new Error(`${where}: second TYPE for ${name}`);
        if (!TYPES.has(rest)) throw new Error(`${where}: unknown type ${JSON.stringify(rest)}`);
        f.type = rest;
      }
      return;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)/.exec(line);
    if (!m) throw new Error(`${where}: not a sample`);
    const name = m[1];
    let i = name.length;
    let labels = {};
    if (line[i] === '{') [labels, i] = parseLabels(line, i, where);
    if (line[i] !== ' ') throw new Error(`${where}: expected a space before the value`);
    const parts = line.slice(i + 1).split(' ');
    if (parts.length < 1 || parts.length > 2 || parts[0] === '') throw new Error(`${where}: expected "value [timestamp]"`);
    const value = parseValue(parts[0], where);
    if (parts.length === 2 && !/^-?\d+$/.test(parts[1])) throw new Error(`${where}: bad timestamp`);
    const familyName = familyOf(name, families);
    if (!familyName) throw new Error(`${where}: sample of ${name} without a TYPE line`);
    const f = families.get(familyName);
    if (!f.type) throw new Error(`${where}: family ${familyName} has no TYPE`);
    if (finished.has(familyName)) throw new Error(`${where}: family ${familyName} interleaved with others`);
    if (current && current !== f) finished.add(current.name);
    current = f;
    const key = seriesKey(name, labels);
    if (series.has(key)) throw new Error(`${where}: duplicate series`);
    series.add(key);
    if (f.type === 'counter' && !(value >= 0)) throw new Error(`${where}: counter is negative or NaN`);
    f.samples.push({ name, labels, value });
  });
  for (const f of families.values()) {
    if (f.type === 'histogram') checkHistogram(f);
  }
  return {
    families,
    // The value of the one sample `name` whose labels include `labels`; undefined if none.
    get(name, labels = {}) {
      const f = families.get(familyOf(name, families) || name);
      if (!f) return undefined;
      const found = f.samples.filter((s) => s.name === name &&
        Object.entries(labels).every(([k, v]) => s.labels[k] === v));
      if (found.length > 1) throw new Error(`${name} ${JSON.stringify(labels)} matches ${found.length} series`);
      return found.length ? found[0].value : undefined;
    },
  };
}

module.exports = { parsePrometheus };
