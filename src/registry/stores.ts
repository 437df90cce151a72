import type { KagamiConfig } from "../config/config.ts";
import type { CacheQuotaOptions } from "../store/quota.ts";
import type { RetentionOptions } from "../store/retention.ts";
import { LocalRegistry } from "./local.ts";

/** A store with the retention policies and cache quota configured for it. */
export interface StoreHousekeeping {
  store: LocalRegistry;
  retention?: RetentionOptions;
  cacheQuota?: CacheQuotaOptions;
}

function withOptions(
  store: LocalRegistry,
  o: { retention?: RetentionOptions; cacheQuota?: CacheQuotaOptions },
): StoreHousekeeping {
  const h: StoreHousekeeping = { store };
  if (o.retention) h.retention = o.retention;
  if (o.cacheQuota) h.cacheQuota = o.cacheQuota;
  return h;
}

/**
 * zot's `storage.subPaths`: repositories under a path prefix live in a store (directory and
 * database) of their own; everything else in the root store. Content is deduplicated within a store.
 */
export class Stores {
  private constructor(
    readonly root: LocalRegistry,
    /** Longest prefix first, so the most specific sub-path wins. */
    private readonly subs: { prefix: string; store: LocalRegistry }[],
    readonly housekeeping: StoreHousekeeping[],
  ) {}

  /** `clock` stamps pushes and pulls (retention tests set it). */
  static async open(storage: KagamiConfig["storage"], clock?: () => number): Promise<Stores> {
    const root = await LocalRegistry.open(storage.rootDirectory, clock);
    const subs: { prefix: string; store: LocalRegistry }[] = [];
    const housekeeping: StoreHousekeeping[] = [withOptions(root, storage)];
    try {
      for (const sp of storage.subPaths ?? []) {
        const store = await LocalRegistry.open(sp.rootDirectory, clock);
        subs.push({ prefix: sp.prefix, store });
        housekeeping.push(withOptions(store, sp));
      }
    } catch (err) {
      // A sub-path that cannot be opened (a newer schema, say) must not leave the others open.
      for (const h of housekeeping) h.store.close();
      throw err;
    }
    subs.sort((a, b) => b.prefix.length - a.prefix.length);
    return new Stores(root, subs, housekeeping);
  }

  /**
   * A reloaded configuration's retention policies and cache quota, for the stores open now (matched
   * by rootDirectory): an operator who sets `dryRun: true` to stop deletions must not wait for a
   * restart. A sub-path added or removed takes one.
   */
  applyHousekeeping(storage: KagamiConfig["storage"]): void {
    for (const h of this.housekeeping) {
      const o =
        h === this.housekeeping[0]
          ? storage
          : storage.subPaths?.find((sp) => sp.rootDirectory === h.store.root);
      if (!o) continue;
      if (o.retention) h.retention = o.retention;
      else delete h.retention;
      if (o.cacheQuota) h.cacheQuota = o.cacheQuota;
      else delete h.cacheQuota;
    }
  }

  /** The store that holds `repo`. */
  for(repo: string): LocalRegistry {
    for (const s of this.subs) {
      if (repo === s.prefix || repo.startsWith(`${s.prefix}/`)) return s.store;
    }
    return this.root;
  }

  /** Each store with the sub-path prefix it serves ("" for the root store). */
  entries(): { prefix: string; store: LocalRegistry }[] {
    return [{ prefix: "", store: this.root }, ...this.subs];
  }

  all(): LocalRegistry[] {
    return [this.root, ...this.subs.map((s) => s.store)];
  }

  /** Repository names of every store, merged in lexical order, after `last`, at most `n`. */
  async catalog(page: { last?: string; n?: number } = {}): Promise<string[]> {
    const lists = await Promise.all(this.all().map((s) => s.catalog(page)));
    const merged = lists.flat().sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    return page.n === undefined || page.n < 0 ? merged : merged.slice(0, page.n);
  }

  close(): void {
    for (const s of this.all()) s.close();
  }
}
