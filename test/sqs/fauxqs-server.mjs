// fauxqs-server.mjs: the fauxqs SQS emulator on 127.0.0.1 only, for tests.
//
//   node fauxqs-server.mjs --port 56010
//
// The store's host is "" so that queue URLs take the request's Host header
// (http://127.0.0.1:PORT/000000000000/NAME).  Ready when GET /health answers
// 200; prints "fauxqs listening on <port>" once listening.
import { parseArgs } from "node:util";
import { buildApp } from "fauxqs";

const { values } = parseArgs({
  options: { port: { type: "string", default: "0" } },
});

// SqsStore is not exported by the package; load it next to the entry point.
const storeUrl = new URL("./sqs/sqsStore.js", import.meta.resolve("fauxqs"));
const { SqsStore } = await import(storeUrl.href);

const sqsStore = new SqsStore();
sqsStore.host = "";
const app = buildApp({ logger: false, stores: { sqsStore } });
await app.listen({ host: "127.0.0.1", port: Number(values.port) });
console.log(`fauxqs listening on ${app.server.address().port}`);

for (const sig of ["SIGTERM", "SIGINT"])
  process.on(sig, () => app.close().finally(() => process.exit(0)));
