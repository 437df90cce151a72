import { readFileSync, writeFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/config.ts";
import { configProblems } from "../helpers/config-problems.ts";
import { type RunningDistribution, startDistribution } from "../helpers/distribution.ts";
import { type RunningKagami, startKagami } from "../helpers/kagami.ts";
import { pushImage } from "../helpers/push.ts";
import { hasTool } from "../helpers/tools.ts";

/** A config in the shape of zot's own sync example (examples/config-sync.json in zot). */
const zotStyle = {
  distSpecVersion: "1.1.0-dev",
  storage: { rootDirectory: "/tmp/zot" },
  http: { address: "127.0.0.1", port: "8080" },
  log: { level: "debug" },
  extensions: {
    sync: {
      enable: true,
      credentialsFile: "./sync-auth.json",
      registries: [
        {
          urls: ["https://registry1:5000"],
          onDemand: false,
          pollInterval: "6h",
          tlsVerify: true,
          certDir: "/home/user/certs",
          maxRetries: 3,
          retryDelay: "5m",
          onlySigned: true,
          content: [
            { prefix: "/repo1/repo", tags: { regex: "4.*", semver: true } },
            { prefix: "/repo1/repo", destination: "/repo", stripPrefix: true },
            { prefix: "/repo2/repo" },
          ],
        },
        {
          urls: ["https://registry2:5000", "https://registry3:5000"],
          pollInterval: "12h",
          tlsVerify: false,
          onDemand: false,
          content: [{ prefix: "/repo2", tags: { semver: true } }],
        },
        {
          urls: ["https://docker.io/library"],
          onDemand: true,
          tlsVerify: true,
          maxRetries: 6,
          retryDelay: "5m",
        },
      ],
    },
  },
};

describe("extensions.sync configuration", () => {
  it("loads zot's sync example unchanged", () => {
    const { config, warnings } = parseConfig(zotStyle);
    expect(config.sync?.registries).toHaveLength(3);
    const [r1, r2, hub] = config.sync!.registries;
    expect(r1).toMatchObject({
      onDemand: false,
      pollIntervalMs: 6 * 3_600_000,
      maxRetries: 3,
      retryDelayMs: 300_000,
      onlySigned: true,
    });
    expect(r1!.content[1]).toEqual({ prefix: "/repo1/repo", destination: "/repo", stripPrefix: true });
    expect(r2!.urls).toEqual(["https://registry2:5000", "https://registry3:5000"]);
    expect(hub!.urls).toEqual(["https://docker.io"]);
    expect(warnings.map((w) => w.path)).toEqual(["extensions.sync.registries[2].urls[0]"]);
  });

  it("names wrong sync fields with what is expected", () => {
    expect(() =>
      parseConfig({
        extensions: {
          sync: {
            registries: [
              {
                urls: ["ftp://x"],
                pollInterval: "often",
                tlsVerify: "yes",
                content: [{ tags: { regex: "(" } }],
              },
              { schedule: "every day" },
            ],
          },
        },
      }),
    ).toThrow(
      /extensions\.sync\.registries\[0\]\.urls\[0\]: must be a URL[\s\S]*registries\[0\]\.pollInterval: must be a Go duration[\s\S]*registries\[0\]\.tlsVerify: must be boolean[\s\S]*content\[0\]: is missing required field 'prefix'[\s\S]*tags\.regex: must be a Go \(RE2\) regular expression[\s\S]*registries\[1\]: is missing required field 'urls'[\s\S]*registries\[1\]\.schedule: must be a cron expression/,
    );
  });
});

function syncProblems(registry: Record<string, unknown>, http: Record<string, unknown> = {}): string[] {
  return configProblems({
    http,
    extensions: { sync: { registries: [{ urls: ["https://r.example"], ...registry }] } },
  });
}

describe("extensions.sync fields zot has", () => {
  it("reads the tuning fields and passes them on, with zot's defaults", () => {
    const { config, warnings } = parseConfig({
      http: { compat: ["docker2s2"] },
      extensions: {
        sync: {
          registries: [
            {
              urls: ["https://r.example"],
              onDemand: true,
              syncTimeout: "3m",
              reqConcurrent: 8,
              reqPerSec: 2.5,
              maxIdleConnsPerHost: 16,
              syncLegacyCosignTags: false,
              preserveDigest: true,
            },
            { urls: ["https://s.example"] },
          ],
        },
      },
    });
    expect(warnings).toEqual([]);
    const [tuned, plain] = config.sync!.registries;
    expect(tuned).toMatchObject({
      syncTimeoutMs: 180_000,
      reqConcurrent: 8,
      reqPerSec: 2.5,
      maxIdleConnsPerHost: 16,
      syncLegacyCosignTags: false,
      preserveDigest: true,
    });
    expect(plain).toMatchObject({ syncLegacyCosignTags: true, preserveDigest: false });
    expect(plain!.syncTimeoutMs).toBeUndefined();
  });

  it("warns, naming the field, about the sync fields it does not act on", () => {
    const { warnings } = parseConfig({
      extensions: {
        sync: {
          registries: [
            {
              urls: ["https://r.example"],
              credentialHelper: "ecr",
              oauth2CredentialHelper: { tokenURL: "https://t.example" },
              disableHTTP2: true,
            },
          ],
        },
      },
    });
    expect(warnings.map((w) => w.path)).toEqual([
      "extensions.sync.registries[0].credentialHelper",
      "extensions.sync.registries[0].oauth2CredentialHelper",
      "extensions.sync.registries[0].disableHTTP2",
    ]);
  });

  it("refuses an unknown sync field, as zot does", () => {
    expect(syncProblems({ bogusField: 1, onDemnd: true })).toEqual([
      expect.stringMatching(/^extensions\.sync\.registries\[0\]\.bogusField: unknown field/),
      expect.stringMatching(
        /^extensions\.sync\.registries\[0\]\.onDemnd: unknown field; did you mean 'onDemand'\?/,
      ),
    ]);
  });

  it("refuses what zot refuses: settings that cannot take effect together", () => {
    const r = "extensions.sync.registries[0]";
    expect(syncProblems({ maxRetries: 3 })).toEqual([
      `${r}.maxRetries: needs retryDelay (zot requires both together)`,
    ]);
    expect(syncProblems({ maxRetryDelay: "1m" })).toEqual([
      `${r}.maxRetryDelay: needs retryDelay (zot requires both together)`,
    ]);
    expect(syncProblems({ maxRetries: 3, retryDelay: "1m", maxRetryDelay: "30s" })).toEqual([
      `${r}.maxRetryDelay: must not be below retryDelay (1m)`,
    ]);
    expect(syncProblems({ onDemand: false, manifestCheckInterval: "5m" })).toEqual([
      expect.stringMatching(
        /^extensions\.sync\.registries\[0\]\.manifestCheckInterval: .*needs onDemand: true/,
      ),
    ]);
    expect(syncProblems({ onDemand: false, manifestCheckInterval: "0s" })).toEqual([]);
    expect(
      syncProblems({ content: [{ prefix: "library/alpine", destination: "/", stripPrefix: true }] }),
    ).toEqual([
      expect.stringMatching(
        /^extensions\.sync\.registries\[0\]\.content\[0\]\.stripPrefix: with destination '\/' needs a glob/,
      ),
    ]);
    expect(syncProblems({ content: [{ prefix: "library/*", destination: "/", stripPrefix: true }] })).toEqual(
      [],
    );
    expect(syncProblems({ content: [{ prefix: "[a-" }, { prefix: "{a,b" }, { prefix: "a[]]b" }] })).toEqual([
      `${r}.content[0].prefix: is not a valid glob: it has a '[' with no closing ']'`,
      `${r}.content[1].prefix: is not a valid glob: it has a '{' with no closing '}'`,
    ]);
    expect(syncProblems({ preserveDigest: true })).toEqual([
      expect.stringMatching(
        /^extensions\.sync\.registries\[0\]\.preserveDigest: needs http\.compat: \["docker2s2"\]/,
      ),
    ]);
    expect(syncProblems({ preserveDigest: true }, { compat: ["docker2s2"] })).toEqual([]);
    expect(syncProblems({ reqConcurrent: 0, reqPerSec: 0, maxIdleConnsPerHost: -1 })).toEqual([
      `${r}.reqConcurrent: must be an integer greater than 0`,
      `${r}.reqPerSec: must be a number of requests a second, above 0`,
      `${r}.maxIdleConnsPerHost: must be an integer greater than 0`,
    ]);
  });

  it('reads "credentialsFile": "" and "certDir": "" as no file, as zot does', () => {
    const { config } = parseConfig({
      extensions: {
        sync: { credentialsFile: "", registries: [{ urls: ["https://r.example"], certDir: "" }] },
      },
    });
    expect(config.sync!.credentialsFile).toBeUndefined();
    expect(config.sync!.registries[0]!.certDir).toBeUndefined();
  });
});

describe.runIf(hasTool("docker-registry"))("optional sync files, as zot treats them", () => {
  let upstream: RunningDistribution;
  const servers: RunningKagami[] = [];
  beforeAll(async () => {
    upstream = await startDistribution();
    await pushImage(upstream.url, "library/alpine", "3.20");
  });
  afterAll(async () => {
    for (const s of servers) await s.destroy();
    await upstream?.stop();
  });

  it.each([
    ["an empty credentialsFile (zot's ECR and GCP examples)", "", undefined],
    [
      "a credentialsFile that does not exist",
      "/nonexistent/kagami/sync-auth.json",
      /credentials file \/nonexistent\/kagami\/sync-auth\.json does not exist/,
    ],
  ])(
    "pulls through with %s and a missing certDir, warning about each missing file",
    async (_, credentialsFile, credWarning) => {
      const k = await startKagami({
        config: {
          extensions: {
            sync: {
              credentialsFile,
              registries: [
                {
                  urls: [upstream.url],
                  onDemand: true,
                  tlsVerify: false,
                  certDir: "/nonexistent/kagami/certs",
                },
              ],
            },
          },
        },
      });
      servers.push(k);
      const res = await fetch(`${k.url}/v2/library/alpine/manifests/3.20`, {
        headers: { accept: "application/vnd.oci.image.manifest.v1+json" },
      });
      expect(res.status).toBe(200);
      expect(k.output()).toMatch(/certificate directory \/nonexistent\/kagami\/certs does not exist/);
      if (credWarning) expect(k.output()).toMatch(credWarning);
      expect(k.output()).not.toMatch(/EISDIR/);
    },
  );
});

describe.runIf(hasTool("docker-registry"))("sync configuration reload", () => {
  let a: RunningDistribution;
  let b: RunningDistribution;
  let k: RunningKagami;
  beforeAll(async () => {
    [a, b] = await Promise.all([startDistribution(), startDistribution()]);
    await pushImage(a.url, "only/a", "v1");
    await pushImage(b.url, "only/b", "v1");
    k = await startKagami({
      config: { extensions: { sync: { registries: [{ urls: [a.url], onDemand: true, tlsVerify: false }] } } },
    });
  });
  afterAll(async () => {
    await k?.destroy();
    await a?.stop();
    await b?.stop();
  });

  it("switches upstreams when extensions.sync changes in the file, without a restart", async () => {
    expect((await fetch(`${k.url}/v2/only/a/manifests/v1`, { method: "HEAD" })).status).toBe(200);
    expect((await fetch(`${k.url}/v2/only/b/manifests/v1`, { method: "HEAD" })).status).toBe(404);
    const cfg = JSON.parse(readFileSync(k.configPath, "utf8"));
    cfg.extensions.sync.registries[0].urls = [b.url];
    writeFileSync(k.configPath, JSON.stringify(cfg));
    await expect
      .poll(async () => (await fetch(`${k.url}/v2/only/b/manifests/v1`, { method: "HEAD" })).status, {
        timeout: 5000,
      })
      .toBe(200);
    expect(k.output()).toMatch(/sync configuration applied/);
  });
});
