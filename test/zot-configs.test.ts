/**
 * Configs in the shape of those in zot's own repository (examples/, test/cluster/,
 * test/gc-stress/), written for Kagami's tests: each either verifies, with a warning naming
 * every field Kagami does not act on, or is refused naming the field and why.
 */
import { execFile, spawn } from "node:child_process";
import { mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { kagamiBin, type RunningKagami, repoRoot, startKagami } from "./helpers/kagami.ts";
import { freePort, waitForHttp } from "./helpers/net.ts";

const run = promisify(execFile);
const fixtures = join(repoRoot, "test/fixtures/zot-configs");

async function verify(file: string): Promise<{ code: number; out: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [kagamiBin, "verify", "--config", file], {
      cwd: fixtures,
    });
    return { code: 0, out: stderr + stdout };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, out: e.stderr + e.stdout };
  }
}

interface Expected {
  /** Whether verify accepts it. */
  valid: boolean;
  /** Field paths the output must name (a warning when valid, a problem when not). */
  names: string[];
}

const expected: Record<string, Expected> = {
  "sync.json": {
    valid: true,
    names: ["extensions.sync.registries[0].certDir", "extensions.sync.registries[2].disableHTTP2"],
  },
  "sync-localhost.json": { valid: true, names: [] },
  "sync-ecr-like.json": {
    valid: true,
    names: [
      "storage.storageDriver",
      "extensions.sync.downloadDir",
      "extensions.sync.registries[0].credentialHelper",
    ],
  },
  "sync-oauth2-like.json": {
    valid: true,
    names: [
      "extensions.sync.registries[0].credentialHelper",
      "extensions.sync.registries[0].oauth2CredentialHelper",
    ],
  },
  "docker-compat-sync.json": { valid: true, names: [] },
  "cluster-member.json": { valid: true, names: ["cluster"] },
  "scheduler.json": { valid: true, names: ["scheduler"] },
  "gc-stress.json": { valid: true, names: [] },
  "retention.json": { valid: true, names: [] },
  "mixed-case.json": { valid: true, names: [] },
  "policy-conditions.json": {
    valid: false,
    names: ["http.accessControl.repositories.release/**.policies[0].conditions"],
  },
  "ldap.json": { valid: false, names: ["http.auth.ldap"] },
  "typo.json": { valid: false, names: ["http.adress: unknown field; did you mean 'address'?"] },
  "docker-daemon.json": {
    valid: false,
    names: ["registry-mirrors", "no field of zot's configuration format"],
  },
  "sync-credentials.json": { valid: false, names: ["no field of zot's configuration format"] },
  "sync-invalid.json": {
    valid: false,
    names: [
      "registries[0].bogusField: unknown field",
      "registries[0].maxRetries: needs retryDelay",
      "registries[0].manifestCheckInterval",
      "registries[0].preserveDigest: needs http.compat",
      "registries[0].content[0].prefix: is not a valid glob",
      "registries[0].content[1].stripPrefix",
    ],
  },
  "tls-missing.json": {
    valid: false,
    names: [
      "http.tls.cert: /nonexistent/kagami-fixture/server.cert does not exist",
      "http.tls.key",
      "http.auth.htpasswd.path",
    ],
  },
};

describe("zot-style configs through kagami verify", () => {
  it("has an expectation for every fixture", () => {
    expect(
      readdirSync(fixtures)
        .filter((f) => f.endsWith(".json"))
        .sort(),
    ).toEqual(Object.keys(expected).sort());
  });

  it.each(Object.entries(expected))("%s", async (file, want) => {
    const { code, out } = await verify(file);
    expect(code, out).toBe(want.valid ? 0 : 1);
    for (const name of want.names) expect(out).toContain(name);
    if (want.valid) {
      const warnings = out.split("\n").filter((l) => l.startsWith("warning: "));
      expect(warnings, out).toHaveLength(want.names.length);
    }
  });
});

describe("kagami serve on zot spellings", () => {
  const dir = mkdtempSync(join(tmpdir(), "kagami-zot-configs-"));
  const servers: RunningKagami[] = [];
  afterAll(async () => {
    for (const s of servers) await s.destroy();
  });

  it("listens where a config with zot's Go-style field names says, not on the defaults", async () => {
    const port = await freePort();
    const file = join(dir, "mixed.json");
    writeFileSync(
      file,
      JSON.stringify({
        Storage: { RootDirectory: join(dir, "data") },
        HTTP: { Address: "127.0.0.1", Port: String(port) },
        Log: { Level: "warn" },
      }),
    );
    const proc = spawn(process.execPath, [kagamiBin, "serve", "--config", file], { stdio: "ignore" });
    try {
      await waitForHttp(`http://127.0.0.1:${port}/v2/`);
      expect((await fetch(`http://127.0.0.1:${port}/v2/`)).status).toBe(200);
    } finally {
      proc.kill("SIGTERM");
    }
  });

  it("enforces an access policy written as AccessControl", async () => {
    const k = await startKagami({
      config: { http: { AccessControl: { Repositories: { "**": { AnonymousPolicy: ["read"] } } } } },
    });
    servers.push(k);
    expect((await fetch(`${k.url}/v2/team/app/tags/list`)).status).toBe(404);
    const push = await fetch(`${k.url}/v2/team/app/blobs/uploads/`, { method: "POST" });
    expect([401, 403]).toContain(push.status);
  });
});
