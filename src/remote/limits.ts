import { sleep } from "./retry.ts";

/**
 * The share of one upstream host a client may take: at most `maxConcurrent` requests in flight (a
 * request holds its slot until its response body is read or dropped) and at most `perSecond`
 * requests started per second, spaced evenly. zot's reqConcurrent and reqPerSec, per host as there.
 */
export class RequestLimiter {
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  private readonly interval: number;
  /** When the next request may start; in the past when none is queued. */
  private nextStart = 0;

  constructor(
    private readonly maxConcurrent: number | undefined,
    perSecond: number | undefined,
  ) {
    if (maxConcurrent !== undefined && !(Number.isInteger(maxConcurrent) && maxConcurrent > 0)) {
      throw new RangeError(`reqConcurrent must be a whole number above 0, not ${maxConcurrent}`);
    }
    if (perSecond !== undefined && !(Number.isFinite(perSecond) && perSecond > 0)) {
      throw new RangeError(`reqPerSec must be a finite number above 0, not ${perSecond}`);
    }
    this.interval = perSecond === undefined ? 0 : 1000 / perSecond;
  }

  /** Waits for a slot and the request's turn; resolves with the slot's release (safe to call twice). */
  async acquire(signal?: AbortSignal): Promise<() => void> {
    if (this.maxConcurrent !== undefined && this.active >= this.maxConcurrent) {
      await this.queue(signal);
    }
    this.active++;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.active--;
      this.waiting.shift()?.();
    };
    try {
      await this.turn(signal);
    } catch (err) {
      release();
      throw err;
    }
    return release;
  }

  private queue(signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      signal?.throwIfAborted();
      const wake = () => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      };
      const onAbort = () => {
        const i = this.waiting.indexOf(wake);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(signal?.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.waiting.push(wake);
    });
  }

  /** Reserves the next start time; a request that finds it ahead waits for it. */
  private async turn(signal?: AbortSignal): Promise<void> {
    if (this.interval === 0) return;
    const now = Date.now();
    const start = Math.max(now, this.nextStart);
    this.nextStart = start + this.interval;
    if (start > now) await sleep(start - now, signal);
  }
}
