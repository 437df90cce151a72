import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfigFile, parseConfig } from "../../src/config/config.ts";
import { parseDuration } from "../../src/config/duration.ts";

function problems(raw: unknown): string[] {
  try {
    parseConfig(raw);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems.map((p) => `${p.path}: ${p.message}`);
    throw err;
  }
  return [];
}

describe("config", () => {
  it("loads zot's example config unchanged, warning about what it does not implement", () => {
    const zot = {
      distSpecVersion: "1.1.0",
      storage: {
        rootDirectory: "/tmp/zot",
        dedupe: true,
        gc: true,
        gcDelay: "1h",
        gcInterval: "24h",
        storageDriver: { name: "s3" },
      },
      http: {
        address: "127.0.0.1",
        port: "8080",
        realm: "zot",
        auth: { htpasswd: { path: "/x" }, sessionKeysFile: "/x/keys" },
      },
      log: { level: "debug", audit: "/tmp/audit.log" },
      extensions: { search: { enable: true }, ui: { enable: true } },
    };
    const { config, warnings } = parseConfig(zot);
    expect(config.http.port).toBe(8080);
    expect(config.storage.rootDirectory).toBe("/tmp/zot");
    expect(config.log.level).toBe("debug");
    const paths = warnings.map((w) => w.path);
    expect(paths).toEqual(
      expect.arrayContaining([
        "storage.storageDriver",
        "http.auth.sessionKeysFile",
        "log.audit",
        "extensions.search",
        "extensions.ui",
      ]),
    );
    expect(paths).not.toContain("storage.dedupe");
    expect(paths).not.toContain("storage.gc");
  });
  it("refuses every access or authentication setting it would not enforce, naming the field", () => {
    const found = problems({
      http: {
        tls: { cert: "c", key: "k", cacert: "ca" },
        auth: {
          htpasswd: { path: "/x" },
          ldap: { address: "ldap.example" },
          bearer: { realm: "r", service: "s", cert: "c" },
          openid: { providers: { oidc: { issuer: "https://id.example" } } },
          apikey: true,
          mtls: {},
          kerberos: {},
        },
        accessControl: {
          repositories: {
            "**": {
              policies: [
                { users: ["ci"], actions: ["read", "create"], conditions: [{ reference: "digest" }] },
              ],
              defaultPolicy: ["read", "detectManifestCollision"],
              mode: "strict",
            },
          },
          adminPolicy: { users: ["admin"], actions: ["delete"], conditions: {} },
          groups: { ops: { users: ["ana"], ldapGroup: "cn=ops" } },
          "legacy/**": { anonymousPolicy: ["read"], conditions: {} },
        },
      },
    });
    const paths = found.map((p) => p.slice(0, p.indexOf(": ")));
    expect(paths.sort()).toEqual(
      [
        "http.tls.cacert",
        "http.auth.ldap",
        "http.auth.bearer",
        "http.auth.openid",
        "http.auth.apikey",
        "http.auth.mtls",
        "http.auth.kerberos",
        "http.accessControl.repositories.**.policies[0].conditions",
        "http.accessControl.repositories.**.defaultPolicy[1]",
        "http.accessControl.repositories.**.mode",
        "http.accessControl.adminPolicy.conditions",
        "http.accessControl.groups.ops.ldapGroup",
        "http.accessControl.legacy/**.conditions",
      ].sort(),
    );
    expect(found.join("\n")).toMatch(/http\.auth\.ldap: LDAP accounts are not implemented/);
    expect(found.join("\n")).toMatch(/conditions: policy 'conditions' is not implemented; remove it/);
  });
  it("refuses client certificates however the field is spelled (zot's Go name is CACert)", () => {
    for (const key of ["CACert", "caCert", "CACERT"]) {
      expect(problems({ http: { tls: { cert: "c", key: "k", [key]: "ca" } } })).toEqual([
        expect.stringMatching(new RegExp(`^http\\.tls\\.${key}: client certificate authentication`)),
      ]);
    }
  });
  it("refuses a security section spelled in another case, which zot would read", () => {
    expect(problems({ http: { AccessControl: { "**": { anonymousPolicy: ["read"] } } } })).toEqual([
      expect.stringMatching(/^http\.AccessControl: write it as 'accessControl'/),
    ]);
    expect(problems({ HTTP: { auth: { htpasswd: { path: "/x" } } } })).toEqual([
      expect.stringMatching(/^HTTP: write it as 'http'/),
    ]);
  });
  it("accepts the security settings that grant nothing when ignored", () => {
    const { warnings } = parseConfig({
      http: {
        auth: { htpasswd: { path: "/x" }, apikey: false, secureSession: true },
        accessControl: { metrics: { users: ["prom"] }, "**": { anonymousPolicy: ["read"] } },
      },
    });
    expect(warnings.map((w) => w.path)).toEqual(["http.auth.apikey", "http.auth.secureSession"]);
  });
  it("warns about unknown fields instead of failing", () => {
    const { warnings } = parseConfig({ storage: { rootDirectory: "/x", bogus: 1 } });
    expect(warnings).toEqual([{ path: "storage.bogus", message: "unknown field, ignored" }]);
  });
  it("names every wrong field with what is expected", () => {
    const found = problems({
      http: { port: "eighty", tls: { cert: "c" } },
      storage: { rootDirectory: 5, uploadMaxAge: "soon" },
      log: { level: "loud" },
    });
    expect(found).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^http\.port: must be a TCP port/),
        "http.tls: is missing required field 'key'",
        "storage.rootDirectory: must be string",
        expect.stringMatching(/^storage\.uploadMaxAge: must be a Go duration/),
        expect.stringMatching(/^log\.level: must be one of/),
      ]),
    );
    expect(found).toHaveLength(5);
  });
  it("reports unreadable and malformed files", () => {
    const dir = mkdtempSync(join(tmpdir(), "kagami-cfg-"));
    const bad = join(dir, "bad.json");
    writeFileSync(bad, "{ nope");
    expect(() => loadConfigFile(bad)).toThrow(/not valid JSON/);
    expect(() => loadConfigFile(join(dir, "missing.json"))).toThrow(/cannot read/);
  });
  it("parses Go durations", () => {
    expect(parseDuration("1h30m")).toBe(5_400_000);
    expect(parseDuration("500ms")).toBe(500);
    expect(parseDuration("0")).toBe(0);
    expect(parseDuration("1d")).toBeUndefined();
    expect(parseDuration("")).toBeUndefined();
  });
});
