import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningKagami, startKagami } from "../helpers/kagami.ts";
import { pushBlob, pushImage } from "../helpers/push.ts";

describe("storage.subPaths", () => {
  let k: RunningKagami;
  let subRoot: string;

  beforeAll(async () => {
    k = await startKagami();
    subRoot = join(k.rootDir, "k8s-store");
    await k.stop();
    k = await startKagami({
      rootDir: k.rootDir,
      config: { storage: { subPaths: { "/k8s": { rootDirectory: subRoot } } } },
    });
  });
  afterAll(async () => {
    await k?.destroy();
  });

  it("stores repositories under a sub-path in their own root, and lists every store in _catalog", async () => {
    const a = await pushImage(k.url, "k8s/pause", "3.9");
    await pushImage(k.url, "apps/web", "1");
    await pushImage(k.url, "k8s", "top");
    expect(existsSync(join(subRoot, "kagami.db"))).toBe(true);
    const blobPath = join(subRoot, "blobs", "sha256", a.config.slice(7, 9), a.config.slice(7));
    expect(existsSync(blobPath)).toBe(true);
    expect(
      existsSync(join(k.rootDir, "data", "blobs", "sha256", a.config.slice(7, 9), a.config.slice(7))),
    ).toBe(false);
    const catalog = (await (await fetch(`${k.url}/v2/_catalog`)).json()) as { repositories: string[] };
    expect(catalog.repositories).toEqual(["apps/web", "k8s", "k8s/pause"]);
    const page = await fetch(`${k.url}/v2/_catalog?n=2`);
    expect(((await page.json()) as { repositories: string[] }).repositories).toEqual(["apps/web", "k8s"]);
    expect(page.headers.get("link")).toContain("last=k8s");
  });

  it("mounts within a store and falls back to an upload across stores", async () => {
    const d = await pushBlob(k.url, "k8s/a", Buffer.from("shared"));
    expect(
      (await fetch(`${k.url}/v2/k8s/b/blobs/uploads/?mount=${d}&from=k8s/a`, { method: "POST" })).status,
    ).toBe(201);
    expect(
      (await fetch(`${k.url}/v2/apps/c/blobs/uploads/?mount=${d}&from=k8s/a`, { method: "POST" })).status,
    ).toBe(202);
  });
});
