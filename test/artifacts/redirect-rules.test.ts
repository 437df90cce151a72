/**
 * extensions.redirect rules applied to release files (`"redirect": true`): a client in a rule's
 * networks is sent to that rule's `artifactsBaseUrl` copy when the copy has the file, and is served
 * here otherwise; the client's address is read as for blobs, behind a trusted proxy.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningKagami, startKagami } from "../helpers/kagami.ts";
import { type RunningNginx, startNginx } from "../helpers/nginx.ts";
import { hasTool } from "../helpers/tools.ts";

describe.runIf(hasTool("nginx") || process.env.CI === "true")("artifact files and redirect rules", () => {
  const files = mkdtempSync(join(tmpdir(), "kagami-artifacts-rules-"));
  let copy: RunningNginx;
  let k: RunningKagami;

  beforeAll(async () => {
    mkdirSync(join(files, "release"), { recursive: true });
    writeFileSync(join(files, "release/stable.txt"), "v1.31.0\n");
    writeFileSync(join(files, "release/latest.txt"), "v1.32.0\n");
    copy = await startNginx();
    // The regional copy holds only stable.txt.
    mkdirSync(join(copy.root, "files/release"), { recursive: true });
    writeFileSync(join(copy.root, "files/release/stable.txt"), "v1.31.0\n");
    k = await startKagami({
      config: {
        extensions: {
          redirect: {
            clientAddress: { trustedProxies: ["127.0.0.1/32"], trustedHops: 1 },
            rules: [
              {
                name: "eu",
                networks: ["10.1.0.0/16"],
                baseUrl: `${copy.url}/blobs`,
                artifactsBaseUrl: `${copy.url}/files`,
              },
            ],
          },
          artifacts: { rootDirectory: files, pathPrefix: "/dl", redirect: true },
        },
      },
    });
  }, 30_000);

  afterAll(async () => {
    await k?.destroy();
    await copy?.stop();
    rmSync(files, { recursive: true, force: true });
  });

  const get = (path: string, forwardedFor?: string) =>
    fetch(`${k.url}/dl/${path}`, {
      redirect: "manual",
      headers: forwardedFor ? { "X-Forwarded-For": forwardedFor } : {},
    });

  it("sends a client in the rule's networks to the copy that has the file", async () => {
    const res = await get("release/stable.txt", "10.1.2.3");
    expect([res.status, res.headers.get("location")]).toEqual([307, `${copy.url}/files/release/stable.txt`]);
  });

  it("serves the file here when the copy lacks it, or when no rule holds the client", async () => {
    const lacking = await get("release/latest.txt", "10.1.2.3");
    expect([lacking.status, await lacking.text()]).toEqual([200, "v1.32.0\n"]);
    const elsewhere = await get("release/stable.txt", "192.0.2.7");
    expect([elsewhere.status, await elsewhere.text()]).toEqual([200, "v1.31.0\n"]);
  });

  it("answers 400 for a forwarded address it cannot read, never guessing", async () => {
    const res = await get("release/stable.txt", "not-an-address");
    expect(res.status).toBe(400);
  });
});
