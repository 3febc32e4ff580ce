// generate.mjs: the seeded input generator of the fuzzer (test/t/520_fuzz.pl).
//
// Input i of seed S is a pure function of (S, i): its own PRNG is seeded
// from both, so any input can be regenerated alone to reproduce a failure
// (node test/fuzz/generate.mjs --seed S --from i --count 1).  The JSON text
// is serialized here, not by JSON.stringify, so that it can carry duplicate
// keys, numbers no double can hold, raw and escaped odd unicode, and
// nesting deeper than any recursive serializer would allow.
//
// Each input says what it expects:
//   ok      a valid payment (or batch, or credential) that must be accepted
//   reject  broken on purpose in a way the schema must refuse (class 22)
//   any     a random mutation: anything but XX000 or a crash is acceptable
//
//   node generate.mjs --seed S --from I --count N [--target sql|sqs]
//        [--token T]... [--user UUID]
// sql: COPY text rows (i, kind, expect, a, b) for fuzz.input;
// sqs: JSON lines {i, expect, body} for test/fuzz/sqs-send.mjs.
import { parseArgs } from "node:util";

// xmur3-style string hash to 32 bits, then mulberry32: small, fast, seedable
function hash32(str) {
  let h = 1779033703 ^ str.length;
  for (let i = 0; i < str.length; i++) {
    h = Math.imul(h ^ str.charCodeAt(i), 3432918353);
    h = (h << 13) | (h >>> 19);
  }
  h = Math.imul(h ^ (h >>> 16), 2246822507);
  h = Math.imul(h ^ (h >>> 13), 3266489909);
  return (h ^= h >>> 16) >>> 0;
}

export function rngFor(seed, i) {
  let a = hash32(`${seed}:${i}`);
  const next = () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const r = {
    next,
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)),
    chance: (p) => next() < p,
    pick: (arr) => arr[Math.floor(next() * arr.length)],
    // a weighted choice: [[weight, value], ...]
    weighted: (pairs) => {
      let total = 0;
      for (const [w] of pairs) total += w;
      let x = next() * total;
      for (const [w, v] of pairs) if ((x -= w) < 0) return v;
      return pairs[pairs.length - 1][1];
    },
  };
  return r;
}

const hex = (r, n) => Array.from({ length: n }, () => "0123456789abcdef"[r.int(0, 15)]).join("");
export const uuid = (r) =>
  `${hex(r, 8)}-${hex(r, 4)}-4${hex(r, 3)}-${"89ab"[r.int(0, 3)]}${hex(r, 3)}-${hex(r, 12)}`;

// Odd but legal text: combining marks, bidi controls, zero-width, non-BMP,
// noncharacters, line separators, escapes of every shape JSON allows.
const ODD = [
  "\u0301", "\u202e", "\u200b", "\ufeff", "\u2028", "\u2029", "\ufffd", "\uffff", "\ufdd0",
  "😀", "𝕏", "\u{10fffd}", "ÿ", "ß", "İ", "中文", "\t", "\\n", "\\u00e9", "\\ud83d\\ude00",
  "\\u0000", "\\ud800", "\\udc00x", "\\\\", "\\\"", "\\/", "\\b\\f\\r", "%s%n", "'; --", "\x7f",
];

function oddString(r, max = 40) {
  const n = r.int(0, max);
  let s = "";
  for (let k = 0; k < n; k++)
    s += r.chance(0.5) ? String.fromCharCode(r.int(0x20, 0x7e)).replace(/["\\]/, "") : r.pick(ODD);
  return s;
}

// JSON text pieces: values are kept as already-serialized text
const str = (s) => `"${s}"`;
const plain = (s) => str(s.replace(/[\\"]/g, "").replace(/[\u0000-\u001f]/g, ""));

function longNumber(r) {
  return r.pick([
    () => "1" + "0".repeat(r.int(20, 2000)),
    () => "0." + "0".repeat(r.int(20, 2000)) + "1",
    () => `1e${r.pick(["308", "309", "-324", "999999999", "-999999999", "+0"])}`,
    () => "-" + "9".repeat(r.int(1, 1000)) + "." + "9".repeat(r.int(1, 1000)),
    () => r.pick(["-0", "0.0", "1E400", "-1e-400", "123456789012345678901234567890.5"]),
  ])();
}

function randomValue(r, depth = 0) {
  const kinds = depth > 3 ? ["s", "n", "b", "z"] : ["s", "n", "b", "z", "a", "o"];
  switch (r.pick(kinds)) {
    case "s": return str(oddString(r));
    case "n": return r.chance(0.3) ? longNumber(r) : String(r.int(-1e6, 1e6) / r.pick([1, 100, 3]));
    case "b": return r.pick(["true", "false"]);
    case "z": return "null";
    case "a": return "[" + Array.from({ length: r.int(0, 4) }, () => randomValue(r, depth + 1)).join(",") + "]";
    default: return "{" + Array.from({ length: r.int(0, 4) },
      () => `${str(oddString(r, 8))}:${randomValue(r, depth + 1)}`).join(",") + "}";
  }
}

function deep(r, inner) {
  const depth = r.weighted([[5, r.int(2, 20)], [3, r.int(20, 2000)], [1, r.int(2000, 20000)]]);
  const arr = r.chance(0.5);
  let open = "", close = "";
  for (let k = 0; k < depth; k++) {
    open += arr ? "[" : '{"a":';
    close += arr ? "]" : "}";
  }
  return open + inner + close;
}

// a payment as ordered [key, text] pairs
function payment(r, user) {
  return [
    ["paymentId", str(uuid(r))],
    ["userId", str(user ?? uuid(r))],
    ["dateTimestamp", str(String(1709553600 + r.int(0, 1e6)))],
    ["description", plain(r.pick(["Regular payment made to Netflix from HSBC account", "rent", "x",
      "caf\u00e9 \u00fcber \u4e2d\u6587 \ud83d\ude00"]))],
    ["currency", str(r.pick(["GBP", "EUR", "USD", "JPY"]))],
    ["amount", r.pick(["7.99", "0", "12.5", "1000000", "0.01"])],
  ];
}
const obj = (pairs) => "{" + pairs.map(([k, v]) => `${str(k)}: ${v}`).join(", ") + "}";
const FIELDS = ["paymentId", "userId", "dateTimestamp", "description", "currency", "amount"];

// Breaks the schema for sure: the front door and the workers must refuse it.
function breakIt(r, pairs) {
  const p = pairs.slice();
  const field = r.pick(FIELDS);
  const at = p.findIndex(([k]) => k === field);
  switch (r.int(0, 5)) {
    case 0: p.splice(at, 1); break;                                   // required missing
    case 1: p[at] = [field, field === "amount" ? str("twelve") : r.pick(["12", "true", "null", "[]", "{}"])]; break;
    case 2:                                                           // not a uuid / too long
      if (field === "paymentId" || field === "userId")
        p[at] = [field, str(r.pick(["not-a-uuid", "", uuid(r).slice(1), uuid(r) + "0"]))];
      else
        p[p.findIndex(([k]) => k === "description")] = ["description", str("d".repeat(r.int(257, 5000)))];
      break;
    case 3: return { text: r.pick(["[]", "\"payment\"", "42", "true", "[" + obj(p) + "]"]) };
    case 4: p[at] = [field, field === "amount" ? "[7.99]" : "{}"]; break;
    default: p[at] = [field, field === "amount" ? "null" : "12345"];
  }
  return { text: obj(p) };
}

// A random mutation: may or may not break the schema.
function mutate(r, pairs, small) {
  const p = pairs.slice();
  const n = r.int(1, 3);
  let text = null;
  for (let k = 0; k < n; k++) {
    const at = r.int(0, p.length - 1);
    const op = r.weighted([[4, "value"], [2, "addkey"], [2, "dupkey"], [2, "odd"], [2, "deep"],
      [small ? 0 : 1, "huge"], [2, "long"], [2, "uuid"], [1, "del"]]);
    if (p.length === 0) break;
    switch (op) {
      case "value": p[at] = [p[at][0], randomValue(r)]; break;
      case "addkey": p.splice(at, 0, [oddString(r, 12).replace(/["\\]/g, ""), randomValue(r)]); break;
      case "dupkey": p.splice(r.int(0, p.length), 0, [p[at][0], r.chance(0.5) ? p[at][1] : randomValue(r)]); break;
      case "odd": p[at] = [p[at][0], str(oddString(r, 300))]; break;
      case "deep": p[at] = [p[at][0], small ? "[[[[[[[[[[1]]]]]]]]]]" : deep(r, p[at][1])]; break;
      case "huge": p[at] = [p[at][0], str("\u00e9x".repeat(r.weighted([[8, r.int(100, 20000)], [1, r.int(300000, 700000)]])))]; break;
      case "long": p[at] = [p[at][0], longNumber(r)]; break;
      case "uuid": p[at] = [p[at][0], str(r.pick([
        (u) => u.toUpperCase(), (u) => `{${u}}`, (u) => u.replace(/-/g, ""), (u) => `urn:uuid:${u}`,
        (u) => u.slice(0, 35) + "g", (u) => ` ${u}`, (u) => u.replace(/-/, "--"),
      ])(uuid(r)))]; break;
      default: p.splice(at, 1);
    }
  }
  text = obj(p);
  // text-level damage: the JSON may no longer parse at all
  if (r.chance(0.15)) {
    const pos = r.int(0, text.length);
    text = r.pick([
      () => text.slice(0, pos),
      () => text.slice(0, pos) + r.pick(["\"", "}", "{", ",", ":", "\\", "\u0000x", "\\u", "]"]) + text.slice(pos),
      () => text.slice(0, pos) + text.slice(pos + 1),
    ])();
    text = text.replace(/\u0000/g, "");  // a text value cannot hold NUL
  }
  return { text };
}

// a payment document: { text, expect }
export function document(r, user, small = false) {
  const pairs = payment(r, user);
  const mode = r.weighted([[3, "ok"], [2, "reject"], [6, "any"], [1, "random"]]);
  if (mode === "ok") {
    // extra properties are allowed and kept in body
    if (r.chance(0.3)) pairs.push(["x_" + hex(r, 6), r.pick(["true", "null", "[1, 2]", '{"note": "extra"}', plain(oddString(r, 20))])]);
    return { text: obj(pairs), expect: "ok" };
  }
  if (mode === "reject") return { ...breakIt(r, pairs), expect: "reject" };
  if (mode === "random") return { text: r.chance(0.5) || small ? randomValue(r) : deep(r, randomValue(r)), expect: "any" };
  return { ...mutate(r, pairs, small), expect: "any" };
}

// random draft-04 schemas, some valid, some not
export function schema(r, depth = 0) {
  const types = ["object", "array", "string", "number", "integer", "boolean", "null"];
  const kw = [];
  const n = r.int(0, 5);
  for (let k = 0; k < n; k++) {
    switch (r.int(0, 11)) {
      case 0: kw.push(["type", r.chance(0.8) ? str(r.pick(types)) : randomValue(r)]); break;
      case 1: kw.push(["required", r.chance(0.8) ? "[" + FIELDS.slice(0, r.int(0, 6)).map(str).join(",") + "]" : randomValue(r)]); break;
      case 2: kw.push(["properties", depth < 4 && r.chance(0.8)
        ? "{" + Array.from({ length: r.int(0, 4) }, () => `${str(r.pick(FIELDS))}:${schema(r, depth + 1)}`).join(",") + "}"
        : randomValue(r)]); break;
      case 3: kw.push(["format", str(r.pick(["uuid", "date-time", "email", "", oddString(r, 5)]))]); break;
      case 4: kw.push([r.pick(["minLength", "maxLength", "minimum", "maximum", "minItems", "maxItems"]),
        r.chance(0.7) ? String(r.int(-2, 300)) : r.pick([longNumber(r), "\"5\"", "1.5", "-1e999"])]); break;
      case 5: kw.push(["pattern", str(r.pick(["^[a-z]+$", "(a+)+$", "[", "\\\\p{L}", "(?=x)", "a{1,99999}", oddString(r, 10)]))]); break;
      case 6: kw.push(["enum", "[" + Array.from({ length: r.int(0, 3) }, () => randomValue(r)).join(",") + "]"]); break;
      case 7: kw.push(["items", depth < 4 ? schema(r, depth + 1) : "{}"]); break;
      case 8: kw.push(["$ref", str(r.pick(["#", "#/definitions/x", "http://127.0.0.1:1/s", oddString(r, 8)]))]); break;
      case 9: kw.push([r.pick(["allOf", "anyOf", "oneOf"]), depth < 3 ? "[" + schema(r, depth + 1) + "," + schema(r, depth + 1) + "]" : "[]"]); break;
      case 10: kw.push(["additionalProperties", r.chance(0.5) ? r.pick(["false", "true"]) : schema(r, depth + 1)]); break;
      default: kw.push(["$schema", str("http://json-schema.org/draft-04/schema#")]);
    }
  }
  const text = obj(kw);
  return r.chance(0.05) ? deep(r, text) : text;
}

// A mutated credential from a valid token: bit flips in any segment, segments
// swapped, dropped or repeated, a re-encoded header or payload, random bytes.
export function credential(r, tokens) {
  const t = r.pick(tokens);
  const parts = t.split(".");
  const b64 = (s) => Buffer.from(s).toString("base64url");
  switch (r.int(0, 9)) {
    case 0: return t;   // unmutated: may be valid
    case 1: { const k = r.int(0, t.length - 1); return t.slice(0, k) + r.pick("AZaz09-_.=+/ ") + t.slice(k + 1); }
    case 2: return parts.slice(0, r.int(0, 3)).join(".");
    case 3: return [parts[0], parts[0], parts[2]].join(".");
    case 4: return [b64(r.pick(['{"alg":"none"}', '{"alg":"RS256","kid":' + randomValue(r) + "}",
      '{"alg":"RS256","kid":"key-1","crit":["x"]}', randomValue(r), "not json"])), parts[1], parts[2]].join(".");
    case 5: return [parts[0], b64(r.chance(0.5) ? randomValue(r) : '{"sub":' + randomValue(r) + ',"exp":' + longNumber(r) + "}"), parts[2]].join(".");
    case 6: return t + ".".repeat(r.int(1, 5)) + parts[1].repeat(r.int(1, 50));
    case 7: return r.pick(["Bearer ", "bearer  ", "Basic ", "", "Bearer\t"]) + t;
    case 8: return Array.from({ length: r.int(0, 2000) }, () => String.fromCodePoint(r.pick([r.int(1, 0x7f), r.int(0x80, 0xd7ff), r.int(0xe000, 0x10ffff)]))).join("");
    default: return parts.map((p) => p.slice(0, r.int(0, p.length))).join(".");
  }
}

function headers(r, tokens) {
  switch (r.int(0, 5)) {
    case 0: return `{"authorization": "Bearer ${credential(r, tokens).replace(/["\\]/g, "")}"}`;
    case 1: return `{"authorization": ${randomValue(r)}}`;
    case 2: return `{"Authorization": "Bearer ${r.pick(tokens)}", "authorization": "Bearer x"}`;
    case 3: return `{"x-api-key": ${str(oddString(r, 60))}, "authorization": ${str(oddString(r, 60))}}`;
    case 4: return deep(r, `{"authorization": "Bearer ${r.pick(tokens)}"}`);
    default: return oddString(r, 200).replace(/\u0000/g, "");
  }
}

// one input for the SQL entry points: { kind, expect, a, b }
export function sqlInput(seed, i, ctx) {
  const r = rngFor(seed, i);
  const kind = r.weighted([[40, "submit"], [14, "submits"], [14, "credential"], [8, "headers"],
    [10, "validate_json"], [6, "set_schema"], [4, "status"], [4, "wrong_sql_type"]]);
  switch (kind) {
    case "submit": {
      const d = document(r);
      return { kind, expect: d.expect, a: d.text, b: null };
    }
    case "submits": {
      if (r.chance(0.1)) return { kind, expect: "reject", a: r.pick(["{}", "\"x\"", "42", obj(payment(r))]), b: null };
      const docs = Array.from({ length: r.weighted([[1, 0], [8, r.int(1, 12)], [1, r.int(13, 200)]]) }, () => document(r, undefined, true));
      // refused for sure, with class 22, only when no other element may fail differently first
      const expect = docs.some((d) => d.expect === "reject") && docs.every((d) => d.expect !== "any") ? "reject"
        : docs.every((d) => d.expect === "ok") ? (docs.length ? "ok" : "any") : "any";
      return { kind, expect, a: "[" + docs.map((d) => d.text).join(",") + "]", b: null };
    }
    case "credential": {
      const c = credential(r, ctx.tokens);
      return { kind, expect: "any", a: obj(payment(r, ctx.user)), b: c };
    }
    case "headers":
      return { kind, expect: "any", a: obj(payment(r, ctx.user)), b: headers(r, ctx.tokens) };
    case "validate_json":
      return { kind, expect: "any", a: document(r).text, b: schema(r) };
    case "set_schema":
      return { kind, expect: "any", a: schema(r), b: null };
    case "status":
      return { kind, expect: "any", a: r.chance(0.5) ? uuid(r) : oddString(r, 40), b: r.chance(0.5) ? credential(r, ctx.tokens) : null };
    default:  // a payload that is not even jsonb text; the cast must refuse it
      return { kind: "submit", expect: "any", a: oddString(r, 100).replace(/\u0000/g, ""), b: null };
  }
}

// SQS refuses characters outside #x9 #xA #xD #x20-#xD7FF #xE000-#xFFFD #x10000-#x10FFFF;
// fauxqs 1.9.2 also refuses all of #x10000-#x10FFFF (its check reads UTF-16
// code units): those go as JSON escapes of their surrogate pairs
const sqsSafe = (text) => text.replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\uffff\ufffe]/g, "\ufffd")
  .replace(/[\u{10000}-\u{10ffff}]/gu,
    (c) => [...Array(c.length).keys()].map((k) => "\\u" + c.charCodeAt(k).toString(16)).join(""));

// one body for the SQS queue from another producer: { expect, body }
export function sqsInput(seed, i) {
  const r = rngFor(seed, `sqs:${i}`);
  const mode = r.weighted([[3, "doc"], [1, "bytes"], [1, "notjson"]]);
  if (mode === "bytes")
    return { expect: "invalid", body: sqsSafe("\u00ff" + Array.from({ length: r.int(0, 3000) },
      () => String.fromCodePoint(r.pick([r.int(0x20, 0x7e), r.int(0xa0, 0xd7ff), r.int(0xe000, 0xfffd)]))).join("")) };
  if (mode === "notjson")
    return { expect: "invalid", body: sqsSafe(r.pick(["", " ", "{", "[1,", "not json", "{\"paymentId\": }", "\"\\ud800\"x", "nul\u00ffl"]) + oddString(r, 30)) };
  const d = document(r);
  const expect = d.expect === "ok" ? "stored" : d.expect === "reject" ? "invalid" : "any";
  // SQS allows up to 256 KiB (fauxqs: 1 MiB); a cut body is not JSON
  if (d.text.length > 200000) return { expect: "invalid", body: sqsSafe(d.text.slice(0, 200000)) };
  return { expect, body: sqsSafe(d.text) };
}

// COPY text format: backslash, tab, newline, carriage return escaped
const copy = (v) => (v == null ? "\\N" : v.replace(/\\/g, "\\\\").replace(/\t/g, "\\t").replace(/\n/g, "\\n").replace(/\r/g, "\\r"));

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      seed: { type: "string", default: "1" }, from: { type: "string", default: "0" },
      count: { type: "string", default: "10" }, target: { type: "string", default: "sql" },
      token: { type: "string", multiple: true, default: ["a.b.c"] },
      user: { type: "string", default: "0fa8ca85-d50d-44f9-8a00-5ad67a6d29e4" },
    },
  });
  const from = Number(values.from), count = Number(values.count);
  const ctx = { tokens: values.token, user: values.user };
  const lines = [];
  for (let i = from; i < from + count; i++) {
    if (values.target === "sqs") {
      lines.push(JSON.stringify({ i, ...sqsInput(values.seed, i) }));
    } else {
      const x = sqlInput(values.seed, i, ctx);
      lines.push([String(i), x.kind, x.expect, copy(x.a), copy(x.b)].join("\t"));
    }
    if (lines.length >= 200) { process.stdout.write(lines.join("\n") + "\n"); lines.length = 0; }
  }
  if (lines.length) process.stdout.write(lines.join("\n") + "\n");
}
