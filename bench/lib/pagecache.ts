import { closeSync, openSync, unlinkSync, writeSync } from "node:fs";
import { join } from "node:path";

/**
 * Writes `bytes` to a file in `dir` and deletes it, so that the page frames freed are warm for the
 * next writer.
 *
 * Why: on a VM whose host takes back the guest's free memory (free page reporting), the first write
 * into fresh page cache runs at 0.4–3 s per GiB, a few seconds later at 0.2 s (dd shows both). A
 * workload that writes a GiB of new data then measures the host's memory more than the registry.
 * Called right before each sample of such a workload, for every target alike; frames stay warm
 * for a few seconds, longer than a server takes to start.
 */
export function warmFreePages(dir: string, bytes: number): void {
  if (bytes <= 0) return;
  const path = join(dir, `warm-${process.pid}`);
  const fd = openSync(path, "w");
  try {
    const buf = Buffer.alloc(4 * 1024 * 1024, 1);
    for (let done = 0; done < bytes; done += buf.length) writeSync(fd, buf);
  } finally {
    closeSync(fd);
    unlinkSync(path);
  }
}
