/**
 * containerd's real resolver against the mirror (issue 11, item 3): a mirror request carries
 * `?ns=<registry host>`; Kagami answers it from that host's upstream only, and otherwise with a 404
 * so containerd goes on to its next host.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningContainerd, startContainerd } from "../helpers/containerd.ts";
import { type RunningDistribution, startDistribution } from "../helpers/distribution.ts";
import { type RunningKagami, startKagami } from "../helpers/kagami.ts";
import { type PushedImage, pushImage } from "../helpers/push.ts";
import { RegistryProxy } from "../helpers/registry-proxy.ts";
import { hasTool } from "../helpers/tools.ts";

const runs = hasTool("docker-registry") && hasTool("containerd") && hasTool("ctr");

describe.runIf(runs)("containerd through hosts.toml", () => {
  let containerd: RunningContainerd;
  /** Stands in for docker.io, which this machine cannot reach: containerd's `server` for docker.io. */
  let hub: RunningDistribution;
  /** The one upstream Kagami mirrors; it has a repository of the same name with other content. */
  let other: RunningDistribution;
  let otherProxy: RegistryProxy;
  let kagami: RunningKagami;
  let hubImage: PushedImage;
  let otherImage: PushedImage;

  beforeAll(async () => {
    [hub, other] = await Promise.all([startDistribution(), startDistribution()]);
    otherProxy = await RegistryProxy.start(other.url);
    hubImage = await pushImage(hub.url, "library/alpine", "3.20");
    otherImage = await pushImage(other.url, "library/alpine", "3.20");
    kagami = await startKagami({
      config: {
        extensions: {
          sync: {
            enable: true,
            registries: [
              { urls: [otherProxy.url], onDemand: true, tlsVerify: false, maxRetries: 0, retryDelay: "10ms" },
            ],
          },
        },
      },
    });
    containerd = await startContainerd();
  }, 120_000);

  /** hosts.toml for `host`: Kagami first, then the registry itself, as containerd's docs set a mirror up. */
  const mirrorFor = (host: string, server: string) =>
    containerd.hosts(
      host,
      `server = "${server}"\n\n[host."${kagami.url}"]\n  capabilities = ["pull", "resolve"]\n`,
    );

  afterAll(async () => {
    await containerd?.stop();
    await kagami?.destroy();
    await otherProxy?.stop();
    await hub?.stop();
    await other?.stop();
  });

  it("falls back to docker.io's own server when Kagami mirrors only another host", async () => {
    const hostsDir = await mirrorFor("docker.io", hub.url);
    otherProxy.clear();
    const { stdout, stderr } = await containerd.ctr([
      "content",
      "fetch",
      "--hosts-dir",
      hostsDir,
      "docker.io/library/alpine:3.20",
    ]);
    const content = (await containerd.ctr(["content", "ls", "-q"])).stdout;
    // The image is docker.io's (the stand-in's), never the other registry's of the same name.
    expect(content, stdout + stderr).toContain(hubImage.digest);
    expect(content).not.toContain(otherImage.digest);
    // Kagami was asked (with ns=docker.io), answered 404, and never asked its upstream.
    expect(kagami.output()).toMatch(/"path":"\/v2\/library\/alpine\/manifests\/3\.20","status":404/);
    expect(otherProxy.log.filter((r) => r.path.includes("library/alpine"))).toEqual([]);
  });

  it("pulls the mirrored host's image through Kagami", async () => {
    const host = new URL(otherProxy.url).host;
    const hostsDir = await mirrorFor(host, otherProxy.url);
    otherProxy.clear();
    await containerd.ctr(["content", "fetch", "--hosts-dir", hostsDir, `${host}/library/alpine:3.20`]);
    const content = (await containerd.ctr(["content", "ls", "-q"])).stdout;
    expect(content).toContain(otherImage.digest);
    // Served by Kagami, not by containerd's fallback server, and stored under the host.
    expect(kagami.output()).toMatch(/"path":"\/v2\/library\/alpine\/manifests\/3\.20","status":200/);
    const local = `${host.replace(":", "-")}/library/alpine`;
    expect((await fetch(`${kagami.url}/v2/${local}/manifests/3.20`, { method: "HEAD" })).status).toBe(200);
  });
});
