// The note pipeline as a Restate workflow, for `make bench-compare`: the same steps as
// notesaga's note-pipeline saga with the benchmark's settings (built-in hash embedder,
// silent narration): embed the note, narrate it, publish it; a step that fails for good
// compensates the steps done, in reverse order, and marks the note failed.
//
// Each step is a `ctx.run`, whose result Restate journals durably before the workflow
// goes on (its log is fsynced by default: bifrost.local rocksdb-disable-wal-fsync =
// false), as notesaga's saga appends each transition to `saga.note-pipeline`.
import * as restate from "@restatedev/restate-sdk";
import { createHash } from "node:crypto";

// The SDK uses Promise.withResolvers (Node.js 22); this machine has Node.js 20.
if (typeof Promise.withResolvers !== "function") {
  Promise.withResolvers = function withResolvers() {
    let resolve;
    let reject;
    const promise = new this((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  };
}

const DIMENSIONS = 256;

// notesaga's built-in embedder in spirit: a hashed bag of words, L2-normalised.
function embed(text) {
  const vector = new Array(DIMENSIONS).fill(0);
  for (const word of text.toLowerCase().split(/[^a-z0-9]+/).filter(Boolean)) {
    const digest = createHash("sha256").update(word).digest();
    vector[digest.readUInt32LE(0) % DIMENSIONS] += digest[4] & 1 ? 1 : -1;
  }
  const norm = Math.sqrt(vector.reduce((sum, x) => sum + x * x, 0)) || 1;
  return vector.map((x) => x / norm);
}

// Silent narration: a WAV header and no samples, at once.
function narrate() {
  return { duration_ms: 0, bytes: 44 };
}

const pipeline = restate.workflow({
  name: "notePipeline",
  handlers: {
    run: async (ctx, note) => {
      const compensations = [];
      try {
        const vector = await ctx.run("embed", () => embed(`${note.title}\n${note.body}`));
        compensations.push(() => ctx.run("delete-embedding", () => true));
        const narration = await ctx.run("narrate", () => narrate(note.body));
        compensations.push(() => ctx.run("delete-narration", () => true));
        await ctx.run("publish", () => ({ version: 1 }));
        ctx.set("status", "published");
        return { status: "published", dimensions: vector.length, duration_ms: narration.duration_ms };
      } catch (error) {
        if (error instanceof restate.TerminalError) {
          for (const compensate of compensations.reverse()) {
            await compensate();
          }
          ctx.set("status", "failed");
        }
        throw error;
      }
    },
  },
});

restate.endpoint().bind(pipeline).listen(Number(process.env.PORT ?? 9080));
