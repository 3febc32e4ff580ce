// Differential check of validate_json against ajv (ajv-draft-04): generates
// documents from a seeded PRNG for a few draft-04 schemas and prints
// {"schemas": [...], "cases": [{"schema": i, "doc": ..., "valid": bool}]}
// with ajv's verdicts.  Usage: node ajv-verdicts.mjs COUNT SEED
//
// The schemas avoid "format": ajv-draft-04 checks no formats without the
// separate ajv-formats package (whose email/uri rules differ from ours);
// formats are covered by the official suite and the regression tests.
// multipleOfPrecision: ajv divides binary floats (0.07 / 0.01 is not 7 in
// IEEE 754); with it, ajv judges the short decimals generated here as
// exact decimal arithmetic does, which is what the spec means.
import Ajv from 'ajv-draft-04';

const count = Number(process.argv[2] || 2000);
let seed = Number(process.argv[3] || 42) >>> 0;

// mulberry32
function random() {
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = (a) => a[Math.floor(random() * a.length)];
const chance = (p) => random() < p;

const schemas = [
  { // a strict payment schema
    type: 'object',
    required: ['paymentId', 'userId', 'amount', 'currency'],
    additionalProperties: false,
    properties: {
      paymentId: { $ref: '#/definitions/id' },
      userId: { $ref: '#/definitions/id' },
      amount: { type: 'number', minimum: 0, exclusiveMinimum: true, maximum: 1000, multipleOf: 0.01 },
      currency: { enum: ['GBP', 'EUR', 'USD'] },
      dateTimestamp: { type: 'string', pattern: '^[0-9]{10}$' },
      description: { type: 'string', minLength: 1, maxLength: 8 },
      tags: { type: 'array', items: { type: 'string' }, uniqueItems: true, maxItems: 3 },
    },
    definitions: { id: { type: 'string', pattern: '^[0-9a-f]{4}-[0-9a-f]{4}$' } },
  },
  { // tuples
    type: 'array',
    items: [{ type: 'integer' }, { type: ['string', 'null'] }],
    additionalItems: { type: 'number', maximum: 10, exclusiveMaximum: true },
    minItems: 1, maxItems: 4, uniqueItems: true,
  },
  { // combinators, dependencies, patternProperties
    type: 'object',
    minProperties: 1, maxProperties: 4,
    patternProperties: { '^x-': { type: 'integer' }, '^[a-z]$': { not: { type: 'null' } } },
    dependencies: { a: ['b'], c: { required: ['d'] } },
    properties: {
      kind: { oneOf: [{ enum: ['card', 'bank'] }, { type: 'integer', minimum: 5 }] },
      n: { anyOf: [{ type: 'integer', multipleOf: 3 }, { type: 'number', maximum: 0.5 }] },
      e: { allOf: [{ type: 'string' }, { minLength: 2 }, { pattern: 'b' }] },
    },
  },
  { // recursion
    id: 'http://example.com/tree',
    type: 'object',
    required: ['value'],
    properties: {
      value: { type: 'integer', minimum: -2 },
      children: { type: 'array', items: { $ref: 'tree' }, maxItems: 2 },
      meta: { $ref: '#/definitions/meta' },
    },
    definitions: { meta: { type: 'object', additionalProperties: { type: 'boolean' } } },
  },
];

const numbers = [0, 1, -1, 2, 3, 5, 6, 9, 9.99, 10, 0.07, 0.5, 0.25, 1.001, 7.99, 12.34, 999.99, 1000, 1000.01, -2, -3, 0.1, 3.5, 1e3];
const strings = ['', 'a', 'b', 'ab', 'cab', 'GBP', 'EUR', 'gbp', 'USD ', 'card', 'bank', '1709553600', '170955360',
  'abcd-0123', 'ABCD-0123', 'abcd-01234', 'éééééééé', 'ééééééééé', 'x', 'null'];
const keys = ['paymentId', 'userId', 'amount', 'currency', 'dateTimestamp', 'description', 'tags', 'extra',
  'kind', 'n', 'e', 'a', 'b', 'c', 'd', 'x-1', 'x-y', 'value', 'children', 'meta', 'Z'];

function scalar() {
  switch (Math.floor(random() * 5)) {
    case 0: return pick(numbers);
    case 1: return pick(strings);
    case 2: return chance(0.5);
    case 3: return null;
    default: return Math.floor(random() * 7) - 2;
  }
}

function any(depth) {
  if (depth > 2 || chance(0.6)) return scalar();
  if (chance(0.5)) return Array.from({ length: Math.floor(random() * 4) }, () => any(depth + 1));
  const o = {};
  for (let i = Math.floor(random() * 4); i > 0; i--) o[pick(keys)] = any(depth + 1);
  return o;
}

// mostly valid documents, then a few mutations, so both verdicts are common
function near(i, depth = 0) {
  switch (i) {
    case 0: {
      const d = { paymentId: 'abcd-0123', userId: 'beef-0042', amount: pick([7.99, 0.07, 12.34, 999.99]), currency: pick(['GBP', 'EUR']) };
      if (chance(0.5)) d.dateTimestamp = '1709553600';
      if (chance(0.5)) d.description = pick(['rent', 'éééééééé']);
      if (chance(0.3)) d.tags = pick([['a'], ['a', 'b'], []]);
      return d;
    }
    case 1: return [3, pick(['x', null]), ...(chance(0.5) ? [9.5] : [])];
    case 2: return pick([{ kind: 'card' }, { n: 6 }, { e: 'abc', a: 1, b: 2 }, { 'x-1': 4, c: 1, d: 'ok' }, { kind: 7, n: 0.25 }]);
    default: {
      const d = { value: Math.floor(random() * 4) };
      if (depth < 3 && chance(0.5)) d.children = [near(3, depth + 1)];
      if (chance(0.3)) d.meta = { ok: true };
      return d;
    }
  }
}

function mutate(v, depth = 0) {
  if (v === null || typeof v !== 'object' || chance(0.2)) return chance(0.5) ? any(depth) : scalar();
  if (Array.isArray(v)) {
    const a = [...v];
    const r = random();
    if (r < 0.3 && a.length) a[Math.floor(random() * a.length)] = mutate(a[0], depth + 1);
    else if (r < 0.6) a.push(chance(0.5) ? a[0] : scalar());
    else if (a.length) a.pop();
    return a;
  }
  const o = { ...v };
  const ks = Object.keys(o);
  const r = random();
  if (r < 0.35 && ks.length) { const k = pick(ks); o[k] = mutate(o[k], depth + 1); }
  else if (r < 0.6 && ks.length) delete o[pick(ks)];
  else o[pick(keys)] = chance(0.5) ? scalar() : any(depth + 1);
  return o;
}

const ajv = new Ajv({ strict: false, multipleOfPrecision: 8 });
const validators = schemas.map((s) => ajv.compile(s));
const cases = [];
for (let n = 0; n < count; n++) {
  const i = n % schemas.length;
  let doc = near(i);
  for (let m = Math.floor(random() * 3); m > 0; m--) doc = mutate(doc);
  if (chance(0.05)) doc = any(0);
  cases.push({ schema: i, doc, valid: validators[i](doc) });
}
process.stdout.write(JSON.stringify({ schemas, cases }));
