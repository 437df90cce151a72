import { execFile } from "node:child_process";
import { mkdtemp, readdir, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningKagami, startKagami } from "../helpers/kagami.ts";
import { pushImage } from "../helpers/push.ts";
import { hasTool } from "../helpers/tools.ts";

const run = promisify(execFile);
// Root writes through file modes; only root may make a directory immutable.
const asRoot = process.getuid?.() === 0 || process.env.CI === "true";

interface Probe {
  status: number;
  body: { status: string; failed?: Record<string, string> };
}

async function probe(k: RunningKagami, path: string): Promise<Probe> {
  const res = await fetch(`${k.url}${path}`);
  return { status: res.status, body: (await res.json()) as Probe["body"] };
}

/** Readiness is cached for about a second, so a change shows within a few polls. */
function untilReady(k: RunningKagami, ready: boolean) {
  return expect
    .poll(async () => (await probe(k, "/readyz")).status, { timeout: 10_000, interval: 200 })
    .toBe(ready ? 200 : 503);
}

describe("health probes", () => {
  let dir: string;
  const running: RunningKagami[] = [];
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "kagami-health-"));
  });
  afterAll(async () => {
    await Promise.all(running.map((k) => k.destroy()));
    await rm(dir, { recursive: true, force: true });
  });

  it("answers /livez, /startupz and /readyz with a short JSON body, and /_kagami/health as before", async () => {
    const k = await startKagami();
    running.push(k);
    for (const path of ["/livez", "/startupz", "/readyz", "/_kagami/health"]) {
      const p = await probe(k, path);
      expect(p, path).toEqual({ status: 200, body: { status: "ok" } });
    }
    // The write check cleans up after itself.
    const names = await readdir(join(k.rootDir, "data"));
    expect(names.filter((n) => n.startsWith(".kagami-probe-"))).toEqual([]);
  });

  it("/readyz fails naming the metadata database when its file is garbage, and recovers", async () => {
    const k = await startKagami();
    running.push(k);
    await pushImage(k.url, "app", "v1");
    await untilReady(k, true);
    const db = join(k.rootDir, "data", "kagami.db");
    await rename(db, `${db}.real`);
    await writeFile(db, Buffer.alloc(8192, 0x5a));
    try {
      await untilReady(k, false);
      const p = await probe(k, "/readyz");
      expect(p.body.status).toBe("unavailable");
      expect(Object.keys(p.body.failed!)).toEqual(["metadata"]);
      expect(p.body.failed!.metadata).toMatch(/^SQLITE_/);
      // Liveness is not readiness: restarting would not mend the file.
      expect((await probe(k, "/livez")).status).toBe(200);
      expect(k.output()).toContain("not ready");
    } finally {
      await rename(`${db}.real`, db);
    }
    await untilReady(k, true);
    expect((await fetch(`${k.url}/v2/app/manifests/v1`)).status).toBe(200);
  }, 30_000);

  // A mount cannot be made read-only while the database is open on it for writing (the kernel says
  // busy), so the running server's storage refuses writes the other way the kernel has: an immutable
  // directory, which root cannot create files in either.
  it.runIf(asRoot && hasTool("chattr"))(
    "/readyz fails naming the storage when it refuses writes, and recovers when it takes them again",
    async () => {
      const k = await startKagami();
      running.push(k);
      await untilReady(k, true);
      const data = join(k.rootDir, "data");
      await run("chattr", ["+i", data]);
      try {
        await untilReady(k, false);
        const p = await probe(k, "/readyz");
        expect(p.body).toEqual({ status: "unavailable", failed: { storage: "EPERM" } });
        expect(k.output()).toContain(`cannot write to the storage directory ${data}`);
      } finally {
        await run("chattr", ["-i", data]);
      }
      await untilReady(k, true);
      await pushImage(k.url, "after", "v1");
    },
    30_000,
  );

  // A restore that left blobs/ to another user, or a file system that refuses writes below the root
  // only: the root takes the probe's file, but no upload can be renamed into place.
  it.runIf(asRoot && hasTool("chattr"))(
    "/readyz fails when blobs/ refuses writes though the storage root takes them",
    async () => {
      const k = await startKagami();
      running.push(k);
      await pushImage(k.url, "app", "v1");
      await untilReady(k, true);
      const blobs = join(k.rootDir, "data", "blobs", "sha256");
      await run("chattr", ["+i", blobs]);
      try {
        await untilReady(k, false);
        const p = await probe(k, "/readyz");
        expect(p.body).toEqual({ status: "unavailable", failed: { storage: "EPERM" } });
        expect(k.output()).toContain(`cannot write to the storage directory ${blobs}`);
      } finally {
        await run("chattr", ["-i", blobs]);
      }
      await untilReady(k, true);
    },
    30_000,
  );
});
