import type { Logger } from "pino";
import type { Stores } from "../registry/stores.ts";
import type { ProbeResult } from "../store/probe.ts";

/** A readiness check: one or more named results. S3 and PostgreSQL checks join this list when they exist. */
export interface ReadinessCheck {
  /** Reported when the check does not answer in time. */
  name: string;
  run: () => Promise<ProbeResult[]>;
}

export interface HealthAnswer {
  status: number;
  body: { status: "ok" | "unavailable"; failed?: Record<string, string> };
}

/** How long one readiness answer is reused: probes from several kubelets and load balancers cannot hammer storage. */
const readinessTtlMs = 1000;

/** A check slower than this fails: a hung file system (a stuck NFS mount) must read as not ready, not hang the probe. */
const checkTimeoutMs = 5000;

/** Storage writable and metadata answering, for every store (sub-paths named by their prefix). */
export function storeChecks(stores: Stores): ReadinessCheck[] {
  return stores.entries().map(({ prefix, store }) => ({
    name: prefix ? `storage:${prefix}` : "storage",
    run: async () => {
      const results = await store.probe();
      return prefix ? results.map((r) => ({ ...r, name: `${r.name}:${prefix}` })) : results;
    },
  }));
}

/**
 * zot's probe endpoints. The answer names what failed and a short reason (an error code); the full
 * message, with paths, goes to the log when the state changes, since the endpoints are open to all.
 */
export class Health {
  private started = false;
  private cached: { at: number; answer: Promise<HealthAnswer> } | undefined;
  private lastFailed = "";
  /** A check still running is joined, not started again: hung probes must not pile up. */
  private readonly running = new Map<ReadinessCheck, Promise<ProbeResult[]>>();

  constructor(
    private readonly checks: ReadinessCheck[],
    private readonly logger: Logger,
  ) {}

  /** Start-up is over: the storage is open and migrated, the config loaded, the port listening. */
  markStarted(): void {
    this.started = true;
  }

  live(): HealthAnswer {
    return { status: 200, body: { status: "ok" } };
  }

  startup(): HealthAnswer {
    return this.started
      ? { status: 200, body: { status: "ok" } }
      : { status: 503, body: { status: "unavailable", failed: { startup: "starting" } } };
  }

  ready(): Promise<HealthAnswer> {
    const now = Date.now();
    if (this.cached && now - this.cached.at < readinessTtlMs) return this.cached.answer;
    const answer = this.evaluate();
    this.cached = { at: now, answer };
    return answer;
  }

  private run(check: ReadinessCheck): Promise<ProbeResult[]> {
    let pending = this.running.get(check);
    if (!pending) {
      pending = check.run().finally(() => this.running.delete(check));
      this.running.set(check, pending);
    }
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<ProbeResult[]>((resolve) => {
      timer = setTimeout(() => resolve([{ name: check.name, ok: false, reason: "TIMEOUT" }]), checkTimeoutMs);
      timer.unref();
    });
    return Promise.race([pending, late]).finally(() => clearTimeout(timer));
  }

  private async evaluate(): Promise<HealthAnswer> {
    if (!this.started) return this.startup();
    const results = (await Promise.all(this.checks.map((c) => this.run(c)))).flat();
    const failed = results.filter((r) => !r.ok);
    const summary = failed.map((f) => f.name).join(",");
    if (summary !== this.lastFailed) {
      if (failed.length > 0) this.logger.warn({ failed }, "not ready");
      else this.logger.info("ready again");
      this.lastFailed = summary;
    }
    if (failed.length === 0) return { status: 200, body: { status: "ok" } };
    return {
      status: 503,
      body: {
        status: "unavailable",
        failed: Object.fromEntries(failed.map((f) => [f.name, f.reason ?? "failed"])),
      },
    };
  }
}
