// Sends one create with amqplib, then prints the reply and the event it caused as JSON.
// Everything it needs comes from the documented wire contract: names, properties, body.
// The current trace context goes with the command as W3C traceparent/tracestate headers; a
// TRACEPARENT (and TRACESTATE) in the environment is taken as the parent, as OpenTelemetry's
// environment carrier says, when no span of the process is current.
import { context, propagation, trace } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import amqp from "amqplib";
import { randomUUID } from "node:crypto";

propagation.setGlobalPropagator(new W3CTraceContextPropagator());

const url = process.env.OUTPLAN_AMQP_URL ?? "amqp://guest:guest@127.0.0.1:5672/";
const commands = process.env.OUTPLAN_COMMAND_EXCHANGE ?? "outplan.commands";
const events = process.env.OUTPLAN_EVENT_EXCHANGE ?? "outplan.events";
const customerId = process.env.CUSTOMER_ID ?? randomUUID();

const connection = await amqp.connect(url);
const channel = await connection.createConfirmChannel();
const timeout = setTimeout(() => { console.error("timed out"); process.exit(2); }, 15000);

// A private queue for the events, bound before the command is sent.
const { queue: eventQueue } = await channel.assertQueue("", { exclusive: true });
await channel.bindQueue(eventQueue, events, "outplan_created");
const { queue: replyQueue } = await channel.assertQueue("", { exclusive: true });

const wait = (queue, accept) => new Promise((resolve) => {
  channel.consume(queue, (message) => {
    if (accept(message)) resolve(message);
  }, { noAck: true });
});

const messageId = randomUUID();
const replied = wait(replyQueue, (m) => m.properties.correlationId === messageId);
const announced = wait(eventQueue, (m) => JSON.parse(m.content.toString()).customerid === customerId);

const body = {
  customer_id: customerId,
  name: "from node",
  source: { type: "tel", target: "+1 555 987 6543" },
  dial_timeout: 30000,
  try_interval: 600000,
  max_try_count_0: 5,
};
const headers = {};
let active = context.active();
if (!trace.getSpanContext(active) && process.env.TRACEPARENT) {
  active = propagation.extract(active, {
    traceparent: process.env.TRACEPARENT,
    tracestate: process.env.TRACESTATE,
  });
}
propagation.inject(active, headers);
channel.publish(commands, "outplan.create", Buffer.from(JSON.stringify(body)), {
  contentType: "application/json",
  messageId,
  correlationId: messageId,
  replyTo: replyQueue,
  persistent: true,
  headers,
});
await channel.waitForConfirms();

const reply = await replied;
const event = await announced;
clearTimeout(timeout);
console.log(JSON.stringify({
  reply: JSON.parse(reply.content.toString()),
  replyContentType: reply.properties.contentType,
  replyHeaders: reply.properties.headers,
  sentHeaders: headers,
  event: JSON.parse(event.content.toString()),
  eventProperties: {
    messageId: event.properties.messageId,
    type: event.properties.type,
    contentType: event.properties.contentType,
    correlationId: event.properties.correlationId,
  },
  messageId,
}));
await connection.close();
