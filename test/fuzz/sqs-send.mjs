// sqs-send.mjs: the fuzzer's other producer.  Sends the generated SQS bodies
// (generate.mjs sqsInput) of inputs [from, from+count) with the AWS SDK and
// prints one JSON line per body: {i, expect, messageId} (messageId null when
// SQS itself refused the body, e.g. characters outside SQS's allowed set).
//
//   node sqs-send.mjs --endpoint URL --queue-url U --seed S --from I --count N
// Credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, as the SDK reads them.
import { parseArgs } from "node:util";
import { SQSClient, SendMessageBatchCommand } from "@aws-sdk/client-sqs";
import { sqsInput } from "./generate.mjs";

const { values } = parseArgs({
  options: {
    endpoint: { type: "string" }, region: { type: "string", default: "us-east-1" },
    "queue-url": { type: "string" }, seed: { type: "string", default: "1" },
    from: { type: "string", default: "0" }, count: { type: "string", default: "10" },
  },
});
const sqs = new SQSClient({ endpoint: values.endpoint, region: values.region, maxAttempts: 5 });
const from = Number(values.from), count = Number(values.count);
const LIMIT = 200 * 1024;   // bytes per SendMessageBatch, under SQS's 256 KiB

let batch = [], bytes = 0;
async function flush() {
  if (!batch.length) return;
  const r = await sqs.send(new SendMessageBatchCommand({
    QueueUrl: values["queue-url"],
    Entries: batch.map((x, j) => ({ Id: String(j), MessageBody: x.body })),
  }));
  const ids = new Map((r.Successful ?? []).map((s) => [Number(s.Id), s.MessageId]));
  const failed = new Map((r.Failed ?? []).map((f) => [Number(f.Id), f]));
  batch.forEach((x, j) => {
    if (!ids.has(j) && !failed.has(j)) throw new Error(`entry ${x.i}: neither sent nor failed`);
    if (failed.has(j) && failed.get(j).SenderFault === false) throw new Error(`entry ${x.i}: ${failed.get(j).Message}`);
    console.log(JSON.stringify({ i: x.i, expect: x.expect, messageId: ids.get(j) ?? null,
      refused: failed.get(j)?.Code }));
  });
  batch = []; bytes = 0;
}
for (let i = from; i < from + count; i++) {
  const x = { i, ...sqsInput(values.seed, i) };
  const size = Buffer.byteLength(x.body);
  if (batch.length === 10 || bytes + size > LIMIT) await flush();
  batch.push(x); bytes += size;
}
await flush();
