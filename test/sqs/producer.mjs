// producer.mjs: an outside producer and inspector of the SQS queue, using
// the official AWS SDK (@aws-sdk/client-sqs).  Prints one JSON object.
//
//   node producer.mjs <command> --endpoint URL [options]
//
// Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and
// AWS_SESSION_TOKEN) as the SDK reads them; the region from --region.
//
// Commands:
//   create   --queue NAME [--visibility S]     create a queue; prints its URL
//   send     --queue-url U --valid N --not-json N --invalid N --duplicates N
//            --conflicts N [--seed S]
//            valid payments, non-JSON bodies, schema-invalid bodies, exact
//            duplicates of valid ones, and same-key-different-body conflicts;
//            prints the paymentIds of each kind, and in message_ids the
//            MessageIds SQS gave each kind
//   create   --queue NAME.fifo --fifo true      a FIFO queue (ContentBasedDeduplication
//            false: every sender names its MessageDeduplicationId)
//   send-one --queue-url U --body B [--request-id R] [--group G --dedup D]
//            one message, with a PaymentRequestId attribute when given;
//            prints its MessageId
//   peek     --queue-url U                      receive up to 10 messages with their
//            system and message attributes, then make them visible again
//   count    --queue-url U                      visible / in flight / delayed
//   drain    --queue-url U [--expect N] [--loops L]
//            receive+delete until empty (or N deleted), in L concurrent
//            loops (default 1: serial); prints count and rate
//   badsig   --queue-url U                      one request signed with a
//            wrong secret; prints the error name
import { parseArgs } from "node:util";
import { randomUUID } from "node:crypto";
import {
  SQSClient, CreateQueueCommand, SendMessageBatchCommand, GetQueueAttributesCommand,
  ReceiveMessageCommand, DeleteMessageBatchCommand, SendMessageCommand,
  ChangeMessageVisibilityBatchCommand,
} from "@aws-sdk/client-sqs";

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    endpoint: { type: "string" }, region: { type: "string", default: "us-east-1" },
    queue: { type: "string" }, "queue-url": { type: "string" },
    visibility: { type: "string", default: "30" },
    valid: { type: "string", default: "0" }, "not-json": { type: "string", default: "0" },
    invalid: { type: "string", default: "0" }, duplicates: { type: "string", default: "0" },
    conflicts: { type: "string", default: "0" }, expect: { type: "string" },
    loops: { type: "string", default: "1" }, fifo: { type: "string", default: "false" },
    body: { type: "string" }, "request-id": { type: "string" },
    group: { type: "string" }, dedup: { type: "string" },
  },
});
const command = positionals[0];
const client = (creds) => new SQSClient({
  endpoint: values.endpoint, region: values.region, maxAttempts: 5,
  ...(creds ? { credentials: creds } : {}),
});
const sqs = client();
const queueUrl = values["queue-url"];
const out = (o) => console.log(JSON.stringify(o));

function payment(overrides = {}) {
  return {
    paymentId: randomUUID(), userId: randomUUID(),
    amount: Math.round(Math.random() * 100000) / 100, currency: "GBP",
    description: "Regular payment made to Netflix from HSBC account",
    dateTimestamp: String(1709553600 + Math.floor(Math.random() * 1e6)),
    ...overrides,
  };
}

// returns the MessageId of each body, in order
async function sendAll(bodies) {
  const ids = [];
  for (let i = 0; i < bodies.length; i += 10) {
    const chunk = bodies.slice(i, i + 10);
    const r = await sqs.send(new SendMessageBatchCommand({
      QueueUrl: queueUrl,
      Entries: chunk.map((b, j) => ({ Id: String(j), MessageBody: b })),
    }));
    if (r.Failed?.length) throw new Error(`send failed: ${JSON.stringify(r.Failed)}`);
    for (const ok of r.Successful) ids[i + Number(ok.Id)] = ok.MessageId;
  }
  return ids;
}

async function attributes() {
  const r = await sqs.send(new GetQueueAttributesCommand({
    QueueUrl: queueUrl,
    AttributeNames: ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                     "ApproximateNumberOfMessagesDelayed"],
  }));
  return {
    visible: Number(r.Attributes.ApproximateNumberOfMessages),
    in_flight: Number(r.Attributes.ApproximateNumberOfMessagesNotVisible),
    delayed: Number(r.Attributes.ApproximateNumberOfMessagesDelayed),
  };
}

switch (command) {
  case "create": {
    const r = await sqs.send(new CreateQueueCommand({
      QueueName: values.queue,
      Attributes: {
        VisibilityTimeout: values.visibility, MessageRetentionPeriod: "2000",
        ...(values.fifo === "true" ? { FifoQueue: "true", ContentBasedDeduplication: "false" } : {}),
      },
    }));
    out({ queueUrl: r.QueueUrl });
    break;
  }
  case "send": {
    const valid = Array.from({ length: Number(values.valid) }, () => payment());
    const notJson = Array.from({ length: Number(values["not-json"]) }, (_, i) => `not json ${i} {`);
    const invalid = Array.from({ length: Number(values.invalid) },
                               () => ({ ...payment(), amount: "twelve" }));
    const duplicates = valid.slice(0, Number(values.duplicates));
    // conflicts come from the end, duplicates from the start: no overlap
    const conflicts = valid.slice(valid.length - Number(values.conflicts))
      .map((p) => ({ ...p, amount: p.amount + 1 }));
    const kinds = { valid, not_json: notJson, invalid, duplicates, conflicts };
    const entries = Object.entries(kinds).flatMap(([kind, list]) =>
      list.map((p) => ({ kind, body: typeof p === "string" ? p : JSON.stringify(p) })));
    // interleave, so that each kind lands in many batches
    for (let i = entries.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [entries[i], entries[j]] = [entries[j], entries[i]];
    }
    const bodies = entries.map((e) => e.body);
    const started = Date.now();
    const ids = await sendAll(bodies);
    const messageIds = Object.fromEntries(Object.keys(kinds).map((k) => [k, []]));
    entries.forEach((e, i) => messageIds[e.kind].push(ids[i]));
    out({
      message_ids: messageIds,
      sent: bodies.length, seconds: (Date.now() - started) / 1000,
      valid: valid.map((p) => p.paymentId), invalid: invalid.map((p) => p.paymentId),
      not_json: notJson.length, duplicates: duplicates.map((p) => p.paymentId),
      conflicts: conflicts.map((p) => p.paymentId),
    });
    break;
  }
  case "send-one": {
    const r = await sqs.send(new SendMessageCommand({
      QueueUrl: queueUrl, MessageBody: values.body,
      ...(values["request-id"] ? { MessageAttributes: {
        PaymentRequestId: { DataType: "String", StringValue: values["request-id"] } } } : {}),
      ...(values.group ? { MessageGroupId: values.group, MessageDeduplicationId: values.dedup } : {}),
    }));
    out({ messageId: r.MessageId });
    break;
  }
  case "peek": {
    const r = await sqs.send(new ReceiveMessageCommand({
      QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 0, VisibilityTimeout: 30,
      MessageSystemAttributeNames: ["All"], MessageAttributeNames: ["All"],
    }));
    const messages = r.Messages ?? [];
    if (messages.length)
      await sqs.send(new ChangeMessageVisibilityBatchCommand({
        QueueUrl: queueUrl,
        Entries: messages.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0 })),
      }));
    out({ messages: messages.map((m) => ({
      messageId: m.MessageId, body: m.Body,
      groupId: m.Attributes?.MessageGroupId ?? null,
      dedupId: m.Attributes?.MessageDeduplicationId ?? null,
      attributes: Object.fromEntries(Object.entries(m.MessageAttributes ?? {})
        .map(([k, v]) => [k, v.StringValue])),
    })) });
    break;
  }
  case "count":
    out(await attributes());
    break;
  case "drain": {
    const expect = values.expect ? Number(values.expect) : Infinity;
    let deleted = 0;
    const started = process.hrtime.bigint();
    const loop = async () => {
      while (deleted < expect) {
        const r = await sqs.send(new ReceiveMessageCommand({
          QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: expect === Infinity ? 0 : 1,
        }));
        if (!r.Messages?.length) {
          if (expect === Infinity) break;
          continue;
        }
        await sqs.send(new DeleteMessageBatchCommand({
          QueueUrl: queueUrl,
          Entries: r.Messages.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle })),
        }));
        deleted += r.Messages.length;
      }
    };
    await Promise.all(Array.from({ length: Number(values.loops) }, loop));
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    out({ deleted, seconds, per_second: deleted / seconds });
    break;
  }
  case "badsig": {
    const bad = client({ accessKeyId: process.env.AWS_ACCESS_KEY_ID,
                         secretAccessKey: "not-the-secret", sessionToken: process.env.AWS_SESSION_TOKEN });
    bad.config.maxAttempts = async () => 1;
    try {
      await bad.send(new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ["All"] }));
      out({ error: null });
    } catch (e) {
      out({ error: e.name, status: e.$metadata?.httpStatusCode });
    }
    break;
  }
  default:
    console.error(`unknown command ${command}`);
    process.exit(2);
}
