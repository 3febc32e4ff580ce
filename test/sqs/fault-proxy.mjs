// fault-proxy.mjs: a loopback HTTP proxy in front of the SQS emulator that
// injects faults into a configurable share of the requests, chosen by a
// seeded PRNG, for the chaos tests.  Only AWS JSON 1.0 requests are seen
// (X-Amz-Target: AmazonSQS.<Op>); bodies are forwarded untouched except for
// the DeleteMessageBatch entries it makes fail.
//
//   node fault-proxy.mjs --port 56021 --control-port 56022 \
//        --upstream http://127.0.0.1:56010 [--rate 0.1] [--seed 1] \
//        [--delay-ms 5000] [--kinds http500,http503,...] [--fault-keys AKID1,AKID2]
//        [--ops SendMessage,ReceiveMessage,...]
//
// Kinds (one is drawn uniformly among those that apply to the operation):
//   http500        500 InternalError, not forwarded
//   http503        503 ServiceUnavailable, not forwarded
//   throttle       400 ThrottlingException or RequestThrottled, not forwarded
//   reset          forwarded; the answer's headers and half its body are sent,
//                  then the connection is destroyed
//   delay          forwarded; the answer is held --delay-ms (set it beyond
//                  the client's timeout) before it is sent
//   truncated      forwarded; a 200 answer cut to a prefix that is not JSON
//                  (Content-Length adjusted: a well-formed HTTP answer)
//   delete_failed  DeleteMessageBatch: some entries are answered in Failed
//                  and not forwarded; the others are
//   replay         ReceiveMessage: an earlier non-empty answer is sent again
//                  (the same messages delivered twice), not forwarded
// Only requests signed with one of --fault-keys, and of one of --ops (all
// when empty), are faulted, so an outside producer can pass untouched.
//
// Control port (plain HTTP, loopback):
//   GET  /__stats                     requests, faults per kind, per operation
//   POST /__config?rate=R&seed=S&kinds=K&ops=O&delay_ms=D   change any of them
//   POST /__reset                     zero the counters
//
// The PRNG makes the sequence of decisions reproducible for a seed; which
// request gets which decision still depends on the order requests arrive.
import http from "node:http";
import { parseArgs } from "node:util";

const ALL_KINDS = ["http500", "http503", "throttle", "reset", "delay", "truncated",
                   "delete_failed", "replay"];

const { values } = parseArgs({
  options: {
    port: { type: "string" },
    "control-port": { type: "string" },
    upstream: { type: "string" },
    rate: { type: "string", default: "0.1" },
    seed: { type: "string", default: "1" },
    "delay-ms": { type: "string", default: "5000" },
    kinds: { type: "string", default: ALL_KINDS.join(",") },
    "fault-keys": { type: "string", default: "" },
    ops: { type: "string", default: "" },
  },
});
const upstream = new URL(values.upstream);

const config = {
  rate: Number(values.rate),
  seed: Number(values.seed),
  delay_ms: Number(values["delay-ms"]),
  kinds: parseKinds(values.kinds),
  fault_keys: values["fault-keys"].split(",").filter(Boolean),
  ops: values.ops.split(",").filter(Boolean),
};

function parseKinds(list) {
  const kinds = list.split(",").filter(Boolean);
  for (const k of kinds)
    if (!ALL_KINDS.includes(k)) throw new Error(`unknown fault kind ${k}`);
  return kinds;
}

// xorshift32 on the seed: test randomness, reproducible, not for secrets
let prngState = 1;
function reseed(seed) { prngState = (seed >>> 0) || 0x9e3779b9; }
function random() {
  prngState ^= prngState << 13; prngState >>>= 0;
  prngState ^= prngState >>> 17;
  prngState ^= prngState << 5; prngState >>>= 0;
  return prngState / 0x100000000;
}
reseed(config.seed);

const freshStats = () => ({ requests: 0, faulted_requests: 0, passed: 0, upstream_errors: 0,
                            injected: Object.fromEntries(ALL_KINDS.map((k) => [k, 0])),
                            failed_delete_entries: 0, replayed_messages: 0, byOperation: {} });
const stats = freshStats();

let lastReceive = null;   // body of the last non-empty ReceiveMessage answer

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

function keyOf(req) {
  return /Credential=([^/]+)\//.exec(req.headers.authorization ?? "")?.[1] ?? null;
}

function applicable(op) {
  return config.kinds.filter((k) =>
    (k !== "delete_failed" || op === "DeleteMessageBatch") &&
    (k !== "replay" || (op === "ReceiveMessage" && lastReceive !== null)));
}

// The fault for this request, or null.  Always two draws per request, so
// that the decision sequence does not depend on which kinds apply.
function decide(req, op) {
  const key = keyOf(req);
  const roll = random();
  const pick = random();
  if (config.fault_keys.length && !config.fault_keys.includes(key)) return null;
  if (config.ops.length && !config.ops.includes(op)) return null;
  if (roll >= config.rate) return null;
  const kinds = applicable(op);
  return kinds.length ? kinds[Math.floor(pick * kinds.length)] : null;
}

function awsError(res, status, type, message) {
  const body = JSON.stringify({ __type: `com.amazonaws.sqs#${type}`, message });
  res.writeHead(status, {
    "content-type": "application/x-amz-json-1.0",
    "x-amzn-query-error": `${type};${status >= 500 ? "Receiver" : "Sender"}`,
    "content-length": Buffer.byteLength(body),
  });
  res.end(body);
}

// Forward body upstream; then(status, headers, Buffer) or onError(err).
function forward(req, body, then, onError) {
  const headers = { ...req.headers, "content-length": Buffer.byteLength(body) };
  const up = http.request({
    host: upstream.hostname, port: upstream.port, method: req.method, path: req.url,
    headers, agent,
  }, (upRes) => {
    const chunks = [];
    upRes.on("data", (c) => chunks.push(c));
    upRes.on("end", () => then(upRes.statusCode, upRes.headers, Buffer.concat(chunks)));
    upRes.on("error", onError);
  });
  up.on("error", onError);
  up.end(body);
}

function send(res, status, headers, buf) {
  if (res.destroyed) return;
  const h = { ...headers, "content-length": buf.length };
  delete h["transfer-encoding"];
  res.writeHead(status, h);
  res.end(buf);
}

// Some entries of a DeleteMessageBatch fail, without reaching the queue.
function deleteSomeFailed(req, res, body) {
  let request;
  try { request = JSON.parse(body); } catch { return false; }
  const entries = request.Entries ?? [];
  if (!entries.length) return false;
  const failing = entries.filter(() => random() < 0.5);
  if (!failing.length) failing.push(entries[Math.floor(random() * entries.length)]);
  stats.failed_delete_entries += failing.length;
  const failed = failing.map((e) => ({ Id: e.Id, SenderFault: false, Code: "InternalError",
                                       Message: "injected by the fault proxy" }));
  const kept = entries.filter((e) => !failing.includes(e));
  const answer = (successful) => send(res, 200, { "content-type": "application/x-amz-json-1.0" },
    Buffer.from(JSON.stringify({ Successful: successful, Failed: failed })));
  if (!kept.length) { answer([]); return true; }
  forward(req, JSON.stringify({ ...request, Entries: kept }), (status, headers, buf) => {
    if (status !== 200) return send(res, status, headers, buf);
    let up;
    try { up = JSON.parse(buf.toString()); } catch { return send(res, status, headers, buf); }
    failed.push(...(up.Failed ?? []));
    answer(up.Successful ?? []);
  }, () => { stats.upstream_errors++; res.destroy(); });
  return true;
}

function inject(kind, req, res, body, op) {
  switch (kind) {
    case "http500":
      return awsError(res, 500, "InternalError", "We encountered an internal error. Please try again.");
    case "http503":
      return awsError(res, 503, "ServiceUnavailable", "The request has failed due to a temporary failure of the server.");
    case "throttle":
      return random() < 0.5
        ? awsError(res, 400, "ThrottlingException", "Rate exceeded")
        : awsError(res, 400, "RequestThrottled", "Request is throttled.");
    case "replay": {
      const buf = Buffer.from(lastReceive);
      try { stats.replayed_messages += JSON.parse(lastReceive).Messages.length; } catch { }
      return send(res, 200, { "content-type": "application/x-amz-json-1.0" }, buf);
    }
    case "delete_failed":
      if (!deleteSomeFailed(req, res, body)) passThrough(req, res, body, op);
      return;
  }
  // the rest happen to a forwarded request's answer
  forward(req, body, (status, headers, buf) => {
    remember(op, status, buf);
    if (kind === "reset") {
      if (res.destroyed) return;
      const h = { ...headers, "content-length": buf.length };
      delete h["transfer-encoding"];
      res.writeHead(status, h);
      res.write(buf.subarray(0, Math.floor(buf.length / 2)), () => res.destroy());
    } else if (kind === "delay") {
      setTimeout(() => send(res, status, headers, buf), config.delay_ms);
    } else {   // truncated: a prefix of at most half, never a whole JSON text
      send(res, 200, headers, buf.subarray(0, Math.max(1, Math.floor(buf.length / 2))));
    }
  }, () => { stats.upstream_errors++; res.destroy(); });
}

function remember(op, status, buf) {
  if (op !== "ReceiveMessage" || status !== 200) return;
  try {
    if (JSON.parse(buf.toString()).Messages?.length) lastReceive = buf.toString();
  } catch { }
}

function passThrough(req, res, body, op) {
  stats.passed++;
  forward(req, body, (status, headers, buf) => {
    remember(op, status, buf);
    send(res, status, headers, buf);
  }, () => { stats.upstream_errors++; res.destroy(); });
}

const server = http.createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks).toString("utf8");
    const op = (req.headers["x-amz-target"] ?? "").replace("AmazonSQS.", "") || "(none)";
    stats.requests++;
    const o = (stats.byOperation[op] ??= { requests: 0, faulted: 0 });
    o.requests++;
    const kind = decide(req, op);
    if (kind === null) return passThrough(req, res, body, op);
    stats.faulted_requests++;
    stats.injected[kind]++;
    o.faulted++;
    o[kind] = (o[kind] ?? 0) + 1;
    inject(kind, req, res, body, op);
  });
});

const control = http.createServer((req, res) => {
  const url = new URL(req.url, "http://control");
  const reply = (obj) => { res.writeHead(200, { "content-type": "application/json" }); res.end(JSON.stringify(obj)); };
  try {
    switch (`${req.method} ${url.pathname}`) {
      case "GET /__stats":
        return reply({ ...stats, config });
      case "POST /__reset":
        Object.assign(stats, freshStats());
        return reply(stats);
      case "POST /__config": {
        const p = url.searchParams;
        if (p.has("rate")) config.rate = Number(p.get("rate"));
        if (p.has("delay_ms")) config.delay_ms = Number(p.get("delay_ms"));
        if (p.has("kinds")) config.kinds = parseKinds(p.get("kinds"));
        if (p.has("ops")) config.ops = p.get("ops").split(",").filter(Boolean);
        if (p.has("seed")) { config.seed = Number(p.get("seed")); reseed(config.seed); }
        return reply(config);
      }
      default:
        res.writeHead(404); res.end();
    }
  } catch (e) {
    res.writeHead(400); res.end(e.message);
  }
});

await new Promise((r) => server.listen(Number(values.port), "127.0.0.1", r));
await new Promise((r) => control.listen(Number(values["control-port"]), "127.0.0.1", r));
console.log(`fault-proxy listening on ${values.port}, control on ${values["control-port"]}, ` +
            `rate ${config.rate}, seed ${config.seed}`);
for (const sig of ["SIGTERM", "SIGINT"])
  process.on(sig, () => process.exit(0));
