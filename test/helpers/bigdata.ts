import { createHash } from "node:crypto";
import { Readable } from "node:stream";

const MiB = 1024 * 1024;

/** Deterministic content of any size without holding it in memory: MiB `i` is a 32-byte pattern of `i`. */
function mib(i: number): Buffer {
  return Buffer.alloc(MiB, createHash("sha256").update(`chunk-${i}`).digest());
}

/** Bytes [from, size) of the deterministic content, as a stream. */
export function bigStream(size: number, from = 0): Readable {
  let pos = from;
  return new Readable({
    read() {
      if (pos >= size) {
        this.push(null);
        return;
      }
      const i = Math.floor(pos / MiB);
      const chunk = mib(i).subarray(pos - i * MiB, Math.min(MiB, size - i * MiB));
      pos += chunk.length;
      this.push(chunk);
    },
  });
}

export async function bigDigest(size: number): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of bigStream(size)) hash.update(chunk as Buffer);
  return `sha256:${hash.digest("hex")}`;
}
