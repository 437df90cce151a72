import { Readable } from "node:stream";
import type { BlobPump, ViewSink } from "./registry.ts";

/** A Readable of copies over a pump, for consumers that want a stream; started on the first read. */
export function streamFromPump(start: (sink: ViewSink) => BlobPump, discard: () => void): Readable {
  let pump: BlobPump | undefined;
  const stream = new Readable({
    highWaterMark: 1024 * 1024,
    read() {
      if (pump) {
        pump.resume();
        return;
      }
      pump = start((view) => stream.push(Buffer.from(view)));
      pump.done.then(
        () => stream.push(null),
        (err: Error) => stream.destroy(err),
      );
    },
    destroy(err, cb) {
      if (pump) pump.abort(err ?? new Error("the blob stream was closed before its end"));
      else discard();
      cb(err);
    },
  });
  return stream;
}

/** A pump over a Readable, for contents that only have a stream; each chunk is a view to the sink. */
export function pumpStream(stream: Readable, sink: ViewSink): BlobPump {
  const done = new Promise<void>((resolve, reject) => {
    stream.on("data", (chunk: Buffer) => {
      if (!sink(chunk)) stream.pause();
    });
    stream.once("end", resolve);
    stream.once("error", reject);
    stream.once("close", () => {
      if (!stream.readableEnded) reject(new Error("the blob stream closed before its end"));
    });
  });
  return { done, resume: () => stream.resume(), abort: (err) => stream.destroy(err) };
}
