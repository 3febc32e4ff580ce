// sigv4-proxy.mjs: a loopback HTTP proxy in front of the SQS emulator that
// checks every request's AWS Signature V4 with @smithy/signature-v4 (an
// implementation independent of the extension's), and can simulate faults.
//
//   node sigv4-proxy.mjs --port 56011 --control-port 56012 \
//        --upstream http://127.0.0.1:56010 --region us-east-1 \
//        --keys '{"AKIDTEST":{"secret":"...","token":"..."}}'
//
// Data port: requests whose signature matches are forwarded; others get 403
// with an AWS-shaped error.  With --tls-port/--tls-cert/--tls-key the same
// service is also offered over HTTPS (to check that clients verify
// certificates).  Control port (plain HTTP, loopback):
//   GET  /__stats             counters as JSON
//   POST /__down              close the data port and every open connection
//   POST /__up                listen again
//   POST /__slow?ms=N[&op=O][&before=1]
//                             hold each answer (of operation O only, if given)
//                             N ms before sending it, or with before=1 hold
//                             the request before forwarding it (0: off)
//   POST /__fail?status=S&code=C&count=N[&op=O]
//                             answer the next N requests (of O) with S
//   POST /__reset             zero the counters
import fs from "node:fs";
import http from "node:http";
import https from "node:https";
import { parseArgs } from "node:util";
import signatureV4 from "@smithy/signature-v4";
import hashNode from "@smithy/hash-node";
import protocolHttp from "@smithy/protocol-http";

const { SignatureV4 } = signatureV4;
const { Hash } = hashNode;
const { HttpRequest } = protocolHttp;
const Sha256 = Hash.bind(null, "sha256");

const { values } = parseArgs({
  options: {
    port: { type: "string" },
    "control-port": { type: "string" },
    upstream: { type: "string" },
    region: { type: "string", default: "us-east-1" },
    keys: { type: "string" },
    "tls-port": { type: "string" },
    "tls-cert": { type: "string" },
    "tls-key": { type: "string" },
  },
});
const upstream = new URL(values.upstream);
const keys = JSON.parse(values.keys);
const MAX_SKEW_MS = 5 * 60 * 1000;

const freshStats = () => ({ accepted: 0, rejected: 0, forwarded_errors: 0, injected: 0, dropped: 0,
                           upstream_resets: 0,
                           connections: 0, tls_connections: 0, tls_handshakes: 0,
                           reasons: {}, byKey: {}, byOperation: {} });
const stats = freshStats();
let slow = { ms: 0, op: null, before: false };
let fail = null;   // { status, code, count, op }
const held = { requests: 0, messages: 0 };

function count(key, op, ok, reason) {
  ok ? stats.accepted++ : stats.rejected++;
  const k = (stats.byKey[key ?? "(none)"] ??= { accepted: 0, rejected: 0 });
  ok ? k.accepted++ : k.rejected++;
  stats.byOperation[op ?? "(none)"] = (stats.byOperation[op ?? "(none)"] ?? 0) + 1;
  if (!ok) stats.reasons[reason] = (stats.reasons[reason] ?? 0) + 1;
}

const AUTH_RE = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, SignedHeaders=([^,]+), Signature=([0-9a-f]{64})$/;

// Returns null if the signature is right, else why not.
async function verify(req, body) {
  const auth = req.headers.authorization;
  if (!auth) return { key: null, why: "MissingAuthenticationToken" };
  const m = AUTH_RE.exec(auth);
  if (!m) return { key: null, why: "IncompleteSignature" };
  const [, keyId, day, region, service, signedList] = m;
  const creds = keys[keyId];
  if (!creds) return { key: keyId, why: "UnrecognizedClientException" };
  if (region !== values.region || service !== "sqs")
    return { key: keyId, why: "SignatureDoesNotMatch(scope)" };
  const amzDate = req.headers["x-amz-date"] ?? "";
  const d = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(amzDate);
  if (!d || amzDate.slice(0, 8) !== day) return { key: keyId, why: "IncompleteSignature(date)" };
  const signingDate = new Date(Date.UTC(+d[1], +d[2] - 1, +d[3], +d[4], +d[5], +d[6]));
  if (Math.abs(Date.now() - signingDate.getTime()) > MAX_SKEW_MS)
    return { key: keyId, why: "RequestExpired" };
  if ((creds.token ?? undefined) !== (req.headers["x-amz-security-token"] ?? undefined))
    return { key: keyId, why: "InvalidClientTokenId(token)" };

  // Rebuild the request from what was signed, and sign it again.
  const signed = signedList.split(";");
  for (const required of ["host", "x-amz-date"])
    if (!signed.includes(required)) return { key: keyId, why: `IncompleteSignature(${required})` };
  const headers = {};
  for (const name of signed) {
    if (req.headers[name] === undefined) return { key: keyId, why: `IncompleteSignature(${name})` };
    headers[name] = req.headers[name];
  }
  const url = new URL(req.url, "http://placeholder");
  const query = Object.fromEntries(url.searchParams);
  const request = new HttpRequest({
    method: req.method, protocol: "http:", hostname: "unused",
    path: url.pathname, query, headers, body,
  });
  const signer = new SignatureV4({
    credentials: { accessKeyId: keyId, secretAccessKey: creds.secret, sessionToken: creds.token },
    region, service, sha256: Sha256, applyChecksum: false,
  });
  const expected = await signer.sign(request, { signingDate, signingRegion: region, signingService: service });
  if (expected.headers.authorization !== auth)
    return { key: keyId, why: "SignatureDoesNotMatch" };
  return { key: keyId, why: null };
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

const slowFor = (op) => slow.ms > 0 && (slow.op === null || slow.op === op);

// Hold for the slow setting, counting what is held (visible in /__stats).
function hold(messages, then) {
  held.requests++;
  held.messages += messages;
  setTimeout(() => { held.requests--; held.messages -= messages; then(); }, slow.ms);
}

function forward(req, res, body, op) {
  const up = http.request({
    host: upstream.hostname, port: upstream.port, method: req.method, path: req.url,
    headers: req.headers, agent,
  }, (upRes) => {
    const chunks = [];
    upRes.on("data", (c) => chunks.push(c));
    // an answer cut off upstream is cut off here too, as a reset, not a 502
    upRes.on("error", () => {
      stats.upstream_resets++;
      if (res.destroyed) return;
      if (res.headersSent) return res.destroy();
      res.writeHead(upRes.statusCode, upRes.headers);
      res.write(Buffer.concat(chunks), () => res.destroy());
    });
    upRes.on("end", () => {
      if (upRes.statusCode >= 400) stats.forwarded_errors++;
      const send = () => {
        if (res.destroyed) return;
        res.writeHead(upRes.statusCode, upRes.headers);
        res.end(Buffer.concat(chunks));
      };
      if (!slowFor(op) || slow.before) return send();
      let messages = 0;
      try { messages = JSON.parse(Buffer.concat(chunks).toString()).Messages?.length ?? 0; } catch { }
      hold(messages, send);
    });
  });
  up.on("error", (e) => {
    if (!res.headersSent && !res.destroyed) {
      res.writeHead(502, { "content-type": "text/plain" });
      res.end(`upstream: ${e.message}`);
    }
  });
  up.end(body);
}

function awsError(res, status, type, message) {
  res.writeHead(status, {
    "content-type": "application/x-amz-json-1.0",
    "x-amzn-query-error": `${type};Sender`,
  });
  res.end(JSON.stringify({ __type: `com.amazon.coral.service#${type}`, message }));
}

const sockets = new Set();
const handler = (req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", async () => {
    const body = Buffer.concat(chunks).toString("utf8");
    const op = (req.headers["x-amz-target"] ?? "").replace("AmazonSQS.", "") || null;
    let result;
    try {
      result = await verify(req, body);
    } catch (e) {
      result = { key: null, why: `VerifierError(${e.message})` };
    }
    count(result.key, op, result.why === null, result.why);
    if (result.why !== null)
      return awsError(res, 403, result.why.replace(/\(.*$/, ""),
                      "The request signature we calculated does not match the signature you provided.");
    if (fail && fail.count > 0 && (fail.op === null || fail.op === op)) {
      fail.count--;
      stats.injected++;
      return awsError(res, fail.status, fail.code, "injected by the test proxy");
    }
    // a held request whose client went away meanwhile is never forwarded
    if (slowFor(op) && slow.before)
      return hold(0, () => (req.socket.destroyed ? stats.dropped++ : forward(req, res, body, op)));
    forward(req, res, body, op);
  });
};
const server = http.createServer({ keepAliveTimeout: 65_000 }, handler);
server.on("connection", (s) => {
  stats.connections++;
  sockets.add(s);
  s.on("close", () => sockets.delete(s));
});

function listen() {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(Number(values.port), "127.0.0.1", () => { server.off("error", reject); resolve(); });
  });
}

const control = http.createServer((req, res) => {
  const url = new URL(req.url, "http://control");
  const reply = (obj) => { res.writeHead(200, { "content-type": "application/json" }); res.end(JSON.stringify(obj)); };
  switch (`${req.method} ${url.pathname}`) {
    case "GET /__stats": return reply({ ...stats, held });
    case "POST /__reset":
      Object.assign(stats, freshStats());
      return reply(stats);
    case "POST /__down":
      server.close();
      for (const s of sockets) s.destroy();
      return reply({ down: true });
    case "POST /__up":
      return listen().then(() => reply({ up: true }), (e) => { res.writeHead(500); res.end(e.message); });
    case "POST /__slow":
      slow = { ms: Number(url.searchParams.get("ms") ?? 0), op: url.searchParams.get("op"),
               before: url.searchParams.get("before") === "1" };
      return reply(slow);
    case "POST /__fail":
      fail = { status: Number(url.searchParams.get("status") ?? 503),
               code: url.searchParams.get("code") ?? "ServiceUnavailable",
               count: Number(url.searchParams.get("count") ?? 1),
               op: url.searchParams.get("op") };
      return reply(fail);
    default:
      res.writeHead(404); res.end();
  }
});

await listen();
if (values["tls-port"]) {
  const tls = https.createServer({ cert: fs.readFileSync(values["tls-cert"]),
                                   key: fs.readFileSync(values["tls-key"]) }, handler);
  tls.on("connection", () => stats.tls_connections++);
  tls.on("secureConnection", () => stats.tls_handshakes++);
  await new Promise((r) => tls.listen(Number(values["tls-port"]), "127.0.0.1", r));
}
await new Promise((r) => control.listen(Number(values["control-port"]), "127.0.0.1", r));
console.log(`sigv4-proxy listening on ${values.port}, control on ${values["control-port"]}`);
for (const sig of ["SIGTERM", "SIGINT"])
  process.on(sig, () => process.exit(0));
