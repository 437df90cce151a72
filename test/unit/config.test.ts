import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadConfigFile, parseConfig } from "../../src/config/config.ts";
import { parseDuration } from "../../src/config/duration.ts";
import { configProblems } from "../helpers/config-problems.ts";

const problems = configProblems;

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
        expect.stringMatching(/^http\.tls\.cacert: client certificate authentication/),
      ]);
    }
  });
  it("reads field names in any case, as zot does, and enforces the sections so written", () => {
    const { config, warnings } = parseConfig({
      Storage: { RootDirectory: "/srv/zot", GC: false },
      HTTP: {
        Address: "0.0.0.0",
        Port: "8081",
        Auth: { HTPasswd: { Path: "/etc/zot/htpasswd" }, FailDelay: 2 },
        AccessControl: {
          Repositories: { "Team/**": { AnonymousPolicy: ["read"], DefaultPolicy: ["read", "create"] } },
          Groups: { OpsTeam: { Users: ["Ana"] } },
        },
      },
      Log: { Level: "debug" },
    });
    expect(warnings).toEqual([]);
    expect(config.storage).toMatchObject({ rootDirectory: "/srv/zot", gc: false });
    expect(config.http).toMatchObject({ address: "0.0.0.0", port: 8081 });
    expect(config.http.auth).toEqual({ htpasswdPath: "/etc/zot/htpasswd", failDelayMs: 2000 });
    // Repository patterns, group and user names are data: kept exactly as written.
    expect(config.http.accessControl?.repositories?.["Team/**"]).toMatchObject({
      anonymousPolicy: ["read"],
      defaultPolicy: ["read", "create"],
    });
    expect(config.http.accessControl?.groups).toEqual({ OpsTeam: { users: ["Ana"] } });
    expect(config.log.level).toBe("debug");
  });
  it("runs the security checks on the canonical spelling, so LDAP or Conditions are still refused", () => {
    expect(
      problems({
        HTTP: {
          Auth: { LDAP: { Address: "ldap.example" }, APIKey: true },
          AccessControl: { Repositories: { "**": { Policies: [{ Users: ["a"], Conditions: [] }] } } },
        },
      }).sort(),
    ).toEqual([
      expect.stringMatching(/^http\.accessControl\.repositories\.\*\*\.policies\[0\]\.conditions: /),
      expect.stringMatching(/^http\.accessControl: user, default and admin policies need accounts/),
      expect.stringMatching(/^http\.auth\.apikey: API keys are not implemented/),
      expect.stringMatching(/^http\.auth\.ldap: LDAP accounts are not implemented/),
    ]);
  });
  it("refuses what zot refuses to start with: policies without accounts, a bad pattern, shared roots, a port out of range", () => {
    expect(
      problems({
        http: {
          accessControl: { repositories: { "**": { policies: [{ users: ["bob"], actions: ["read"] }] } } },
        },
      }),
    ).toEqual([
      expect.stringMatching(/^http\.accessControl: user, default and admin policies need accounts/),
    ]);
    expect(
      problems({ http: { accessControl: { repositories: { "**": { anonymousPolicy: ["read"] } } } } }),
    ).toEqual([]);
    expect(
      problems({ http: { accessControl: { repositories: { "[a-": { anonymousPolicy: ["read"] } } } } }),
    ).toEqual([
      expect.stringMatching(/^http\.accessControl\.repositories\.\[a-: the repository pattern has a '\['/),
    ]);
    expect(
      problems({ storage: { rootDirectory: "/srv/k", subPaths: { "/a": { rootDirectory: "/srv/k/a" } } } }),
    ).toEqual([
      expect.stringMatching(
        /^storage\.subPaths\.\/a\.rootDirectory: \/srv\/k\/a overlaps storage\.rootDirectory/,
      ),
    ]);
    expect(problems({ http: { port: "70000" } })).toEqual([
      expect.stringMatching(/^http\.port: must be a TCP port/),
    ]);
  });
  it("refuses an empty configuration file, as zot does", () => {
    const file = join(mkdtempSync(join(tmpdir(), "kagami-empty-")), "config.json");
    writeFileSync(file, "{}");
    expect(() => loadConfigFile(file)).toThrow(/\(top level\): the configuration is empty/);
  });
  it("refuses a field written twice in different cases", () => {
    expect(problems({ http: { port: "1" }, HTTP: { port: "2" } })).toEqual([
      "HTTP: 'http' is written too; field names match in any case, so write 'http' once",
    ]);
  });
  it("accepts the security settings that grant nothing when ignored", () => {
    const { warnings } = parseConfig({
      http: {
        auth: { htpasswd: { path: "/x" }, apikey: false, secureSession: true },
        accessControl: { metrics: { users: ["prom"] }, "**": { anonymousPolicy: ["read"] } },
      },
    });
    expect(warnings.map((w) => w.path)).toEqual(["http.auth.secureSession"]);
  });
  it("refuses unknown fields, suggesting the field that was probably meant", () => {
    expect(problems({ storage: { rootDirectory: "/x", bogus: 1 }, http: { adress: "0.0.0.0" } })).toEqual([
      "storage.bogus: unknown field (zot refuses unknown fields, and so does Kagami)",
      "http.adress: unknown field; did you mean 'address'? (zot refuses unknown fields, and so does Kagami)",
    ]);
    expect(problems({ log: { levle: "info" } })).toEqual([
      expect.stringMatching(/^log\.levle: unknown field; did you mean 'level'\?/),
    ]);
  });
  it("refuses a file that is not a zot configuration at all (a docker daemon.json)", () => {
    const found = problems({
      "registry-mirrors": ["https://mirror.example"],
      "insecure-registries": [],
      debug: true,
    });
    expect(found).toContain(
      "registry-mirrors: unknown field (zot refuses unknown fields, and so does Kagami)",
    );
    expect(found.join("\n")).toMatch(/\(top level\)|^: no field of zot's configuration format/m);
  });
  it("reads the zot fields it implements: gcTimeWindow, readTimeout, writeTimeout", () => {
    const { config, warnings } = parseConfig({
      storage: { rootDirectory: "/x", gcTimeWindow: "22:30-06:00" },
      http: { readTimeout: "90s", writeTimeout: "2m" },
    });
    expect(warnings).toEqual([]);
    expect(config.storage.gcTimeWindow).toEqual({ startMin: 22 * 60 + 30, endMin: 6 * 60 });
    expect(config.http).toMatchObject({ readTimeoutMs: 90_000, writeTimeoutMs: 120_000 });
    for (const bad of ["22:30", "25:00-01:00", "01:00-01:00", "1-2"]) {
      expect(problems({ storage: { gcTimeWindow: bad } })).toEqual([
        expect.stringMatching(/^storage\.gcTimeWindow: must be a daily UTC window "HH:MM-HH:MM"/),
      ]);
    }
  });
  it("warns, naming the field, about zot fields it does not act on; sub-paths are not among them", () => {
    const { config, warnings } = parseConfig({
      storage: {
        rootDirectory: "/x",
        subPaths: { "/a": { rootDirectory: "/a", dedupe: true, gc: false } },
      },
      http: { auth: { htpasswd: { path: "/h" }, sessionKeysFile: "/k", sessionDriver: { name: "redis" } } },
      scheduler: { numWorkers: 3 },
      cluster: { members: ["127.0.0.1:9000"], hashKey: "loremipsumdolors" },
    });
    expect(config.storage.subPaths).toEqual([{ prefix: "a", rootDirectory: "/a" }]);
    expect(warnings.map((w) => w.path).sort()).toEqual(
      [
        "storage.subPaths./a.gc",
        "http.auth.sessionKeysFile",
        "http.auth.sessionDriver",
        "scheduler",
        "cluster",
      ].sort(),
    );
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
