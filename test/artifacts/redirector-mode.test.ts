/**
 * Release files beside a redirector (a Kagami that stores no images): extensions.artifacts was
 * accepted in that mode but never started. Both ways of serving them must work there too.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningKagami, startKagami } from "../helpers/kagami.ts";
import { freePort } from "../helpers/net.ts";

describe("artifact files in redirector mode", () => {
  const files = mkdtempSync(join(tmpdir(), "kagami-artifacts-redirector-"));
  let k: RunningKagami;
  let own: string;

  beforeAll(async () => {
    mkdirSync(join(files, "release"), { recursive: true });
    writeFileSync(join(files, "release/stable.txt"), "v1.31.0\n");
    const port = await freePort();
    own = `http://127.0.0.1:${port}`;
    k = await startKagami({
      config: {
        extensions: {
          redirect: { mode: "redirector", upstream: { url: "https://up.example" } },
          artifacts: { rootDirectory: files, pathPrefix: "/dl", port },
        },
      },
    });
  }, 30_000);

  afterAll(async () => {
    await k?.destroy();
    rmSync(files, { recursive: true, force: true });
  });

  it("serves them on their own listener and below their prefix, and still redirects the rest", async () => {
    for (const url of [`${own}/release/stable.txt`, `${k.url}/dl/release/stable.txt`]) {
      const res = await fetch(url);
      expect([url, res.status, await res.text()]).toEqual([url, 200, "v1.31.0\n"]);
    }
    const missing = await fetch(`${k.url}/dl/release/none`);
    expect([missing.status, await missing.text()]).toEqual([404, "Not Found\n"]);
    const manifest = await fetch(`${k.url}/v2/pause/manifests/v1`, { redirect: "manual" });
    expect([manifest.status, manifest.headers.get("location")]).toEqual([
      307,
      "https://up.example/v2/pause/manifests/v1",
    ]);
  });

  it("answers the registry's probe paths, which a Deployment written for the registry uses", async () => {
    for (const path of ["/livez", "/readyz", "/startupz", "/_kagami/health"]) {
      const res = await fetch(`${k.url}${path}`);
      expect([path, res.status]).toEqual([path, 200]);
    }
  });
});
