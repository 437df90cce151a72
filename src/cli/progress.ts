import type { CopyEvent, CopyResult } from "../copy/copy.ts";
import { formatBytes } from "../copy/format.ts";

export { formatBytes };

export interface ProgressReporter {
  onEvent(event: CopyEvent): void;
  /** Clears the bar and prints the outcome line. */
  finish(result: CopyResult | undefined, label: string): void;
}

interface Writable {
  write(s: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

/**
 * On a terminal: one line redrawn at most ten times a second (blobs done/total, bytes, rate).
 * Elsewhere: quiet, but for warnings and retries, which a log should keep.
 */
export function createProgress(out: Writable, opts: { quiet?: boolean } = {}): ProgressReporter {
  const tty = out.isTTY === true && !opts.quiet;
  const started = Date.now();
  let last = 0;
  let lastLine = "";
  let latest: CopyEvent | undefined;
  const clear = () => {
    if (tty && lastLine) {
      out.write(`\r${" ".repeat(Math.min(lastLine.length, (out.columns ?? 80) - 1))}\r`);
      lastLine = "";
    }
  };
  const draw = (force: boolean) => {
    if (!tty || !latest) return;
    const now = Date.now();
    if (!force && now - last < 100) return;
    last = now;
    const p = latest.progress;
    const width = 24;
    const frac =
      p.bytesTotal > 0
        ? Math.min(1, p.bytesDone / p.bytesTotal)
        : p.blobsTotal
          ? p.blobsDone / p.blobsTotal
          : 0;
    const filled = Math.round(frac * width);
    const secs = Math.max(0.001, (now - started) / 1000);
    const line =
      `Copying ${latest.image}  [${"#".repeat(filled)}${".".repeat(width - filled)}] ` +
      `blobs ${p.blobsDone}/${p.blobsTotal}  ${formatBytes(p.bytesDone)} / ${formatBytes(p.bytesTotal)}  ${formatBytes(p.bytesDone / secs)}/s`;
    const cols = (out.columns ?? 120) - 1;
    const shown = line.length > cols ? `${line.slice(0, cols - 1)}…` : line;
    out.write(
      `\r${shown}${lastLine.length > shown.length ? " ".repeat(lastLine.length - shown.length) : ""}`,
    );
    lastLine = shown;
  };
  return {
    onEvent(event) {
      latest = event;
      if (event.type === "warning" || event.type === "retry") {
        clear();
        if (!opts.quiet || event.type === "warning") {
          out.write(
            event.type === "warning"
              ? `warning: ${event.message}\n`
              : `retrying ${event.what} (attempt ${event.attempt + 1}) in ${event.delayMs} ms: ${event.reason}\n`,
          );
        }
      }
      draw(event.type === "plan" || event.type === "blob-done");
    },
    finish(result, label) {
      clear();
      if (!result || opts.quiet) return;
      const secs = (Date.now() - started) / 1000;
      const b = result.blobs;
      out.write(
        `${label}: ${result.digest} (${result.manifests} manifest${result.manifests === 1 ? "" : "s"}, ` +
          `${b.copied} blob${b.copied === 1 ? "" : "s"} copied, ${b.skipped} present, ${b.mounted} mounted, ` +
          `${formatBytes(result.bytesCopied)} in ${secs.toFixed(1)} s${result.referrers ? `, ${result.referrers} referrers` : ""})\n`,
      );
    },
  };
}
