// Validates notesaga's AsyncAPI document with @asyncapi/parser and its Avro schema
// parser (so every message payload is parsed as Avro too), then, when given, compares
// the channels with the topics a live broker holds and the Avro messages of the flow
// topics with the subjects a live registry holds.
//
// Usage: node asyncapi-check.mjs DOC.json [TOPICS.json SUBJECTS.json]
//   NODE_PATH must reach @asyncapi/parser and @asyncapi/avro-schema-parser
//   (scripts/check-contracts.sh installs them, pinned, under ~/.cache/notesaga-asyncapi).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(process.env.NOTESAGA_ASYNCAPI_MODULES + '/');
const { Parser } = require('@asyncapi/parser');
const { AvroSchemaParser } = require('@asyncapi/avro-schema-parser');

const [docPath, topicsPath, subjectsPath] = process.argv.slice(2);
const text = readFileSync(docPath, 'utf8');
const parser = new Parser();
parser.registerSchemaParser(AvroSchemaParser());
const { document, diagnostics } = await parser.parse(text);
// Severity 0 is an error; warnings and hints are printed but do not fail.
const errors = diagnostics.filter((d) => d.severity === 0);
for (const d of diagnostics) {
  const level = ['error', 'warning', 'info', 'hint'][d.severity] ?? d.severity;
  console.error(`${level}: ${d.message} at ${JSON.stringify(d.path)}`);
}
if (!document || errors.length > 0) {
  console.error(`asyncapi: the document is not valid (${errors.length} errors)`);
  process.exit(1);
}
// @asyncapi/parser 3.6 runs a custom schema parser's validation only for AsyncAPI 2
// documents (its spectral rule is v2-only); for this 3.0 document the payloads are only
// converted. So every Avro payload is validated here with the same Avro schema parser.
const avro = AvroSchemaParser();
const avroFormats = new Set(avro.getMimeTypes());
const rawDoc = JSON.parse(text);
let invalidPayloads = 0;
for (const [id, message] of Object.entries(rawDoc.components?.messages ?? {})) {
  const payload = message.payload;
  if (!payload || !avroFormats.has(payload.schemaFormat)) continue;
  const found = await avro.validate({
    asyncapi: { semver: { major: 3, minor: 0, patch: 0 }, source: '', parsed: rawDoc, input: text },
    data: payload.schema,
    meta: { message },
    path: ['components', 'messages', id, 'payload', 'schema'],
    schemaFormat: payload.schemaFormat,
    defaultSchemaFormat: 'application/vnd.aai.asyncapi;version=3.0.0',
  });
  for (const d of found) {
    console.error(`error: ${id}: invalid Avro payload: ${d.message}`);
    invalidPayloads += 1;
  }
}
if (invalidPayloads > 0) {
  console.error(`asyncapi: ${invalidPayloads} message payloads are not valid Avro`);
  process.exit(1);
}
const channels = document.channels().all();
const messages = document.messages().all();
console.log(`asyncapi: valid AsyncAPI ${document.version()}: ${channels.length} channels, ${messages.length} messages (Avro payloads valid), ${document.operations().all().length} operations`);
if (!topicsPath) process.exit(0);

const raw = rawDoc;
const addresses = new Set(Object.values(raw.channels).map((c) => c.address));
// Broker-internal topics (the group coordinator's) are the broker's, not notesaga's.
// A list of names, or kcat's `-L -J` metadata ({"topics": [{"topic": …}]}).
const listed = JSON.parse(readFileSync(topicsPath, 'utf8'));
const names = Array.isArray(listed) ? listed : listed.topics.map((t) => t.topic);
const topics = new Set(names.filter((t) => !t.startsWith('__')));
const expectedSubjects = new Set();
for (const channel of Object.values(raw.channels)) {
  for (const ref of Object.values(channel.messages)) {
    const id = ref.$ref.split('/').pop();
    const message = raw.components.messages[id];
    // Dead letters and redrives reuse the flow's schema ids: no subjects of their own.
    if (message.headers?.$ref === '#/components/schemas/FlowHeaders') {
      expectedSubjects.add(`${channel.address}-${message.title}`);
    }
  }
}
const subjects = new Set(JSON.parse(readFileSync(subjectsPath, 'utf8')));
let drift = 0;
const diff = (what, a, aName, b, bName) => {
  for (const x of [...a].sort()) {
    if (!b.has(x)) {
      console.error(`drift: ${what} ${x} is in ${aName} but not in ${bName}`);
      drift += 1;
    }
  }
};
diff('topic', addresses, 'the document', topics, 'the broker');
diff('topic', topics, 'the broker', addresses, 'the document');
diff('subject', expectedSubjects, 'the document', subjects, 'the registry');
diff('subject', subjects, 'the registry', expectedSubjects, 'the document');
if (drift > 0) {
  console.error(`asyncapi: ${drift} differences between the document and the live broker and registry`);
  process.exit(1);
}
console.log(`asyncapi: matches the broker (${topics.size} topics) and the registry (${subjects.size} subjects)`);
