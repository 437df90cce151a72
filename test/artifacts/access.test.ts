/**
 * Artifact files on a registry with accounts: served to anyone once that is confirmed
 * (`anonymous: true`), on a listener of their own with the registry's TLS certificate, while the
 * registry keeps asking for credentials.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeHtpasswd } from "../helpers/htpasswd.ts";
import { type RunningKagami, startKagami } from "../helpers/kagami.ts";
import { freePort } from "../helpers/net.ts";
import { makeTestPki, type TestPki } from "../helpers/tls.ts";
import { hasTool } from "../helpers/tools.ts";

const peers = hasTool("htpasswd") && hasTool("openssl") && hasTool("curl");

describe.runIf(peers)("artifact files beside a registry with accounts", () => {
  const dir = mkdtempSync(join(tmpdir(), "kagami-artifacts-access-"));
  let pki: TestPki;
  let k: RunningKagami;
  let own: string;

  beforeAll(async () => {
    pki = makeTestPki();
    mkdirSync(join(dir, "files/release"), { recursive: true });
    writeFileSync(join(dir, "files/release/stable.txt"), "v1.31.0\n");
    writeHtpasswd(join(dir, "htpasswd"), [["ro", "ro-secret"]]);
    const port = await freePort();
    own = `https://127.0.0.1:${port}`;
    k = await startKagami({
      tls: { cert: pki.cert, key: pki.key },
      config: {
        http: {
          auth: { htpasswd: { path: join(dir, "htpasswd") } },
          accessControl: { repositories: { "**": { policies: [{ users: ["ro"], actions: ["read"] }] } } },
        },
        extensions: {
          artifacts: { rootDirectory: join(dir, "files"), pathPrefix: "/dl", port, anonymous: true },
        },
      },
    });
  }, 30_000);

  afterAll(async () => {
    await k?.destroy();
    rmSync(dir, { recursive: true, force: true });
    rmSync(pki.dir, { recursive: true, force: true });
  });

  const curl = (url: string) =>
    execFileSync("curl", ["-sS", "--cacert", pki.caCert, "-o", "-", "-w", "\n%{http_code}", url]).toString();

  it("serves files without credentials on both listeners, over the registry's TLS", () => {
    expect(curl(`${own}/release/stable.txt`)).toBe("v1.31.0\n\n200");
    expect(curl(`${k.url}/dl/release/stable.txt`)).toBe("v1.31.0\n\n200");
  });

  it("leaves the registry's own access rules in force", () => {
    expect(curl(`${k.url}/v2/_catalog`)).toMatch(/\n401$/);
  });
});
