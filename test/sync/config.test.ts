import { readFileSync, writeFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/config.ts";
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
      /extensions\.sync\.registries\.0\.urls\.0: must be a URL[\s\S]*registries\.0\.pollInterval: must be a Go duration[\s\S]*registries\.0\.tlsVerify: must be boolean[\s\S]*content\.0: is missing required field 'prefix'[\s\S]*tags\.regex: must be a Go \(RE2\) regular expression[\s\S]*registries\.1: is missing required field 'urls'[\s\S]*registries\.1\.schedule: must be a cron expression/,
    );
  });
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
