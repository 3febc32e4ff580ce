// latency-proxy.mjs: a loopback HTTP proxy that adds network latency to
// every request, so that tests and benchmarks see SQS as a client in an AWS
// region does (ReceiveMessage, DeleteMessageBatch: milliseconds each), not
// as an emulator on loopback answers (well under a millisecond).
//
//   node latency-proxy.mjs --port 56020 --upstream http://127.0.0.1:56010 \
//        --latency-ms 20 [--control-port 56021]
//
// Each request is held half the latency before it is forwarded and half
// after the answer, as a round trip is.  Requests are independent: many in
// flight at once are each delayed, none queues behind another.
// Control port (plain HTTP, loopback):
//   POST /__latency?ms=N      change the latency (0: none)
//   POST /__max_receive?n=N   ReceiveMessage asks for at most N messages, as
//                             real SQS often answers fewer than asked while
//                             many wait (0: as the client asked)
//   GET  /__stats             {"requests": n, "in_flight": n, "latency_ms": n,
//                              "max_receive": n}
// With --log FILE, each ReceiveMessage and DeleteMessageBatch is appended to
// FILE as a JSON line when it is answered: {"op", "arrive", "answered" (ms
// since the epoch, as the request reached the proxy and as its answer left),
// "receipts" (the handles received or deleted), "ids" (ReceiveMessage: the
// MessageId of each receipt)}, so that a test can check the order of what a
// client did.
import fs from "node:fs";
import http from "node:http";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    port: { type: "string" },
    upstream: { type: "string" },
    "latency-ms": { type: "string", default: "20" },
    "control-port": { type: "string" },
    log: { type: "string" },
  },
});
const upstream = new URL(values.upstream);
let latencyMs = Number(values["latency-ms"]);
let maxReceive = 0;
const stats = { requests: 0, in_flight: 0 };
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
const later = (ms, f) => (ms > 0 ? setTimeout(f, ms) : f());

const LOGGED = ["AmazonSQS.ReceiveMessage", "AmazonSQS.DeleteMessageBatch"];
function logExchange(target, arrive, request, status, answer) {
  if (!values.log || !LOGGED.includes(target)) return;
  const entry = { op: target.slice("AmazonSQS.".length), arrive, answered: Date.now(),
                  status, receipts: [], ids: [] };
  try {
    if (entry.op === "DeleteMessageBatch") {
      entry.receipts = JSON.parse(request.toString("utf8")).Entries.map((e) => e.ReceiptHandle);
    } else if (status === 200) {
      for (const m of JSON.parse(answer.toString("utf8")).Messages ?? []) {
        entry.receipts.push(m.ReceiptHandle);
        entry.ids.push(m.MessageId);
      }
    }
  } catch (e) {
    entry.error = String(e);
  }
  fs.appendFileSync(values.log, JSON.stringify(entry) + "\n");
}

const server = http.createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const arrive = Date.now();
    stats.requests++;
    stats.in_flight++;
    const half = latencyMs / 2;
    const done = () => stats.in_flight--;
    let body = Buffer.concat(chunks);
    const headers = { ...req.headers };
    if (maxReceive > 0 && req.headers["x-amz-target"] === "AmazonSQS.ReceiveMessage") {
      // after the SigV4 proxy checked the signature; fauxqs checks none
      const r = JSON.parse(body.toString("utf8"));
      r.MaxNumberOfMessages = Math.min(r.MaxNumberOfMessages ?? 1, maxReceive);
      body = Buffer.from(JSON.stringify(r));
      headers["content-length"] = String(body.length);
    }
    later(half, () => {
      const up = http.request({
        host: upstream.hostname, port: upstream.port, method: req.method,
        path: req.url, headers, agent,
      }, (upRes) => {
        const answer = [];
        upRes.on("data", (c) => answer.push(c));
        upRes.on("end", () => later(half, () => {
          done();
          if (res.destroyed) return;
          res.writeHead(upRes.statusCode, upRes.headers);
          res.end(Buffer.concat(answer));
          logExchange(req.headers["x-amz-target"], arrive, body, upRes.statusCode,
                      Buffer.concat(answer));
        }));
      });
      up.on("error", (e) => {
        done();
        if (res.headersSent || res.destroyed) return;
        res.writeHead(502, { "content-type": "text/plain" });
        res.end(`upstream: ${e.message}`);
      });
      up.end(body);
    });
  });
});
server.listen(Number(values.port), "127.0.0.1", () =>
  console.log(`latency proxy on ${values.port}, ${latencyMs} ms per request`));

if (values["control-port"]) {
  http.createServer((req, res) => {
    const url = new URL(req.url, "http://127.0.0.1");
    if (req.method === "POST" && url.pathname === "/__latency") {
      latencyMs = Math.max(0, Number(url.searchParams.get("ms") ?? 0));
    } else if (req.method === "POST" && url.pathname === "/__max_receive") {
      maxReceive = Math.max(0, Number(url.searchParams.get("n") ?? 0));
    } else if (url.pathname !== "/__stats") {
      res.writeHead(404);
      return res.end();
    }
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ ...stats, latency_ms: latencyMs, max_receive: maxReceive }));
  }).listen(Number(values["control-port"]), "127.0.0.1");
}

for (const sig of ["SIGTERM", "SIGINT"])
  process.on(sig, () => {
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 500).unref();
  });
