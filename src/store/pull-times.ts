import type Database from "better-sqlite3";

/** A manifest pulled again within this long is not written again: retention counts days, not seconds. */
const resolutionMs = 60_000;
/** Pending pulls are written together this often, in one transaction. */
const flushEveryMs = 5_000;

/**
 * Last-pull times of manifests, for retention (`pulledWithin`, `mostRecentlyPulledCount`) and the
 * cache quota (least recently pulled goes first). A manifest GET only touches a map; the rows are
 * updated in one batched transaction, so a busy tag costs one write a minute, not one per GET.
 */
export class PullTimes {
  /** `repo\0digest` → when it was last noted (written or pending). */
  private readonly noted = new Map<string, number>();
  private readonly pending = new Map<string, number>();
  private readonly update;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly db: Database.Database,
    private readonly clock: () => number,
  ) {
    this.update = db.prepare(
      "UPDATE manifests SET pulled_at = max(coalesce(pulled_at, 0), ?) WHERE repo = ? AND digest = ?",
    );
    this.timer = setInterval(() => this.flushQuietly(), flushEveryMs);
    this.timer.unref();
  }

  note(repo: string, digest: string): void {
    const now = this.clock();
    const key = `${repo}\0${digest}`;
    const last = this.noted.get(key);
    if (last !== undefined && now - last < resolutionMs && now >= last) return;
    this.noted.set(key, now);
    this.pending.set(key, now);
  }

  /** Writes what is pending; retention and the quota call it before they read pull times. */
  flush(): void {
    if (this.pending.size === 0) return;
    const batch = [...this.pending];
    this.pending.clear();
    this.db.transaction(() => {
      for (const [key, at] of batch) {
        const cut = key.indexOf("\0");
        this.update.run(at, key.slice(0, cut), key.slice(cut + 1));
      }
    })();
    // What was noted long ago needs no memory: the next pull of it is written anyway.
    const stale = this.clock() - resolutionMs;
    for (const [key, at] of this.noted) if (at < stale) this.noted.delete(key);
  }

  close(): void {
    clearInterval(this.timer);
    this.flushQuietly();
  }

  /** A lost pull time only makes an image look older; it must never fail a read or the shutdown. */
  private flushQuietly(): void {
    try {
      this.flush();
    } catch {
      this.pending.clear();
    }
  }
}
