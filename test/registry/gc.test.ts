import { execFile } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kagamiBin, type RunningKagami, startKagami } from "../helpers/kagami.ts";
import { pushBlob, pushImage } from "../helpers/push.ts";

const run = promisify(execFile);

describe("garbage collection", () => {
  let k: RunningKagami;
  const blobFile = (d: string) => join(k.rootDir, "data", "blobs", "sha256", d.slice(7, 9), d.slice(7));

  beforeAll(async () => {
    k = await startKagami({ config: { storage: { gc: true, gcDelay: "4s", gcInterval: "24h" } } });
  });
  afterAll(async () => {
    await k?.destroy();
  });

  it("removes blobs no manifest references, keeps referenced and young ones", async () => {
    const kept = await pushImage(k.url, "gc/app", "v1");
    const orphan = await pushBlob(k.url, "gc/app", Buffer.from("nobody references me"));
    const deletedImage = await pushImage(k.url, "gc/old", "v1");
    expect(
      (await fetch(`${k.url}/v2/gc/old/manifests/${deletedImage.digest}`, { method: "DELETE" })).status,
    ).toBe(202);
    // Past gcDelay for what came before; the young blob keeps a margin of gcDelay for the CLI's
    // start-up, which takes over a second on a loaded machine.
    await new Promise((r) => setTimeout(r, 4200));
    const young = await pushBlob(k.url, "gc/app", Buffer.from("pushed just now, manifest to follow"));

    const cfg = join(k.rootDir, "gc-cli.json");
    writeFileSync(
      cfg,
      JSON.stringify({ storage: { rootDirectory: join(k.rootDir, "data"), gcDelay: "4s" } }),
    );
    const out = await run(process.execPath, [kagamiBin, "gc", "--config", cfg]);
    expect(out.stdout).toMatch(/blobs removed/);

    expect(existsSync(blobFile(orphan))).toBe(false);
    expect((await fetch(`${k.url}/v2/gc/app/blobs/${orphan}`, { method: "HEAD" })).status).toBe(404);
    for (const d of deletedImage.layers) expect(existsSync(blobFile(d))).toBe(false);
    for (const d of [kept.config, ...kept.layers]) {
      expect(existsSync(blobFile(d)), d).toBe(true);
      expect((await fetch(`${k.url}/v2/gc/app/blobs/${d}`, { method: "HEAD" })).status).toBe(200);
    }
    expect((await fetch(`${k.url}/v2/gc/app/manifests/v1`)).status).toBe(200);
    expect(existsSync(blobFile(young))).toBe(true);
    expect((await fetch(`${k.url}/v2/gc/app/blobs/${young}`, { method: "HEAD" })).status).toBe(200);
  });
});
