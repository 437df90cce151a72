import type { Logger } from "pino";
import { type GcTimeWindow, inGcTimeWindow } from "../config/gc-window.ts";

/** How often a collection that is due but outside its window looks at the clock again. */
const windowPollMs = 60_000;

/**
 * Runs `gc` every `intervalMs`; with a window (zot's gcTimeWindow) a collection that falls due
 * outside it waits for the window to open, and one that started inside runs to its end.
 * Returns a stop function.
 */
export function gcSchedule(
  gc: () => Promise<void>,
  intervalMs: number,
  window: GcTimeWindow | undefined,
  logger: Logger,
  now: () => Date = () => new Date(),
): () => void {
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const arm = (ms: number) => {
    if (stopped) return;
    timer = setTimeout(due, ms);
    timer.unref();
  };
  const due = () => {
    if (!inGcTimeWindow(window, now())) {
      logger.debug("garbage collection due; waiting for storage.gcTimeWindow");
      arm(windowPollMs);
      return;
    }
    void gc().finally(() => arm(intervalMs));
  };
  arm(intervalMs);
  return () => {
    stopped = true;
    if (timer) clearTimeout(timer);
  };
}
