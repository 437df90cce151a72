import { execFile } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { kagamiBin } from "../helpers/kagami.ts";
import { freePort } from "../helpers/net.ts";

const dir = mkdtempSync(join(tmpdir(), "kagami-unenforced-"));

/**
 * Runs the built CLI; a timeout kills it, so a server that starts anyway shows as a hang (code
 * null), not a pass. The limit only tells a hang from an exit, so it is generous for a loaded machine.
 */
function kagami(...args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [kagamiBin, ...args],
      { timeout: 30_000, killSignal: "SIGKILL" },
      (err, _stdout, stderr) => {
        const code = err ? ((err as { code?: number }).code ?? null) : 0;
        resolve({ code: typeof code === "number" ? code : null, stderr });
      },
    );
  });
}

async function configWith(name: string, http: Record<string, unknown>): Promise<string> {
  const file = join(dir, `${name}.json`);
  const port = await freePort();
  writeFileSync(
    file,
    JSON.stringify({
      storage: { rootDirectory: join(dir, name) },
      http: { address: "127.0.0.1", port: String(port), ...http },
    }),
  );
  return file;
}

const cases: [string, Record<string, unknown>, RegExp][] = [
  [
    "a policy condition limiting a user to digest pushes",
    {
      auth: { htpasswd: { path: join(dir, "htpasswd") } },
      accessControl: {
        repositories: {
          "**": {
            policies: [{ users: ["ci"], actions: ["read", "create"], conditions: [{ reference: "digest" }] }],
          },
        },
      },
    },
    /http\.accessControl\.repositories\.\*\*\.policies\[0\]\.conditions: policy 'conditions' is not implemented/,
  ],
  [
    "LDAP as the only account source",
    { auth: { ldap: { address: "ldap.example", baseDN: "dc=example" } } },
    /http\.auth\.ldap: LDAP accounts are not implemented/,
  ],
  [
    "mutual TLS",
    { tls: { cert: "/c.pem", key: "/k.pem", cacert: "/ca.pem" } },
    /http\.tls\.cacert: client certificate authentication \(mutual TLS\) is not implemented/,
  ],
];

describe("access settings Kagami does not implement", () => {
  it.each(cases)("%s: verify exits non-zero naming the field", async (name, http, message) => {
    const r = await kagami("verify", "--config", await configWith(`verify-${name.length}`, http));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(message);
  });

  it.each(cases)(
    "%s: serve exits non-zero instead of starting, naming the field",
    async (name, http, message) => {
      const r = await kagami("serve", "--config", await configWith(`serve-${name.length}`, http));
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(message);
    },
  );
});
