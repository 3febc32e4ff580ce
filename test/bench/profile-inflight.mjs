// profile-inflight.mjs: where a worker's time goes per batch, from the log
// test/sqs/latency-proxy.mjs keeps with --log (scale.sh: LATENCY_LOG=file).
//
//   node profile-inflight.mjs FILE
//
// For each phase of scale.sh (elastic, fixed, sdk), from the proxy's side:
// the round trip of receives and deletes (the injected latency plus the
// emulator's and the proxy's own time), how long a client held a batch
// between its receive's answer and its delete's arrival (for the workers:
// parsing, storing, the durable commit), the requests in flight on
// average, and the batches per second.
import fs from "node:fs";

const lines = fs.readFileSync(process.argv[2], "utf8").split("\n").filter(Boolean);
const phases = [];
let current = { name: "start", entries: [] };
for (const line of lines) {
  const e = JSON.parse(line);
  if (e.op === "phase") {
    phases.push(current);
    current = { name: e.name, entries: [] };
  } else current.entries.push(e);
}
phases.push(current);

const pct = (xs, p) => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))];
};
const fmt = (xs) => `median ${pct(xs, 0.5)} ms, p90 ${pct(xs, 0.9)} ms`;

for (const { name, entries } of phases) {
  if (!entries.length) continue;
  const receives = entries.filter((e) => e.op === "ReceiveMessage");
  const full = receives.filter((e) => e.receipts.length > 0);
  const deletes = entries.filter((e) => e.op === "DeleteMessageBatch");
  const answeredAt = new Map();
  for (const r of full) for (const h of r.receipts) answeredAt.set(h, r.answered);
  const held = deletes.map((d) => d.arrive - answeredAt.get(d.receipts[0]))
    .filter((x) => Number.isFinite(x));
  const start = Math.min(...entries.map((e) => e.arrive));
  const end = Math.max(...entries.map((e) => e.answered));
  const busy = entries.reduce((s, e) => s + (e.answered - e.arrive), 0);
  const messages = full.reduce((s, r) => s + r.receipts.length, 0);
  console.log(`${name}: ${receives.length} receives (${full.length} with messages, ` +
              `${(messages / Math.max(1, full.length)).toFixed(1)} a batch), ` +
              `${deletes.length} deletes over ${((end - start) / 1000).toFixed(1)} s`);
  console.log(`  receive round trip  ${fmt(full.map((e) => e.answered - e.arrive))}`);
  console.log(`  delete round trip   ${fmt(deletes.map((e) => e.answered - e.arrive))}`);
  console.log(`  batch held (receive answered -> delete sent) ${fmt(held)}`);
  console.log(`  requests in flight on average ${(busy / (end - start)).toFixed(1)}; ` +
              `${(deletes.length / ((end - start) / 1000)).toFixed(0)} batches/s`);
}
