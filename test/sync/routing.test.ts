import { describe, expect, it } from "vitest";
import type { SyncContent, SyncRegistryConfig } from "../../src/config/config.ts";
import { filterTags, tagAllowed } from "../../src/sync/filters.ts";
import { aliasesOf, localName, routesFor, routesForLocal, upstreamName } from "../../src/sync/routing.ts";

const c = (prefix: string, extra: Partial<SyncContent> = {}): SyncContent => ({
  prefix,
  stripPrefix: false,
  ...extra,
});

function registry(urls: string[], content: SyncContent[], onDemand = true): SyncRegistryConfig {
  return {
    urls,
    onDemand,
    tlsVerify: true,
    maxRetries: 0,
    retryDelayMs: 0,
    maxRetryDelayMs: 0,
    onlySigned: false,
    manifestCheckIntervalMs: 0,
    negativeCacheTtlMs: 0,
    content,
  };
}

describe("destination and stripPrefix, as zot documents them", () => {
  it("serves upstream /repo2/repo:v1 as /repo2:v1 with destination /repo2 and stripPrefix", () => {
    const rule = c("/repo2/repo", { destination: "/repo2", stripPrefix: true });
    expect(localName("repo2/repo", rule)).toBe("repo2");
    expect(upstreamName("repo2", rule)).toBe("repo2/repo");
  });
  it("keeps the whole upstream path under destination without stripPrefix", () => {
    const rule = c("/repo2/repo", { destination: "/repo2" });
    expect(localName("repo2/repo", rule)).toBe("repo2/repo2/repo");
    expect(upstreamName("repo2/repo2/repo", rule)).toBe("repo2/repo");
    expect(upstreamName("repo2/repo", rule)).toBeUndefined();
  });
  it("maps globbed prefixes with stripPrefix", () => {
    const rule = c("/kube/**", { destination: "/k8s", stripPrefix: true });
    expect(localName("kube/proxy", rule)).toBe("k8s/proxy");
    expect(upstreamName("k8s/proxy", rule)).toBe("kube/proxy");
    expect(upstreamName("k8s/a/b", rule)).toBe("kube/a/b");
    expect(upstreamName("other/proxy", rule)).toBeUndefined();
  });
  it("uses the upstream name unchanged without destination", () => {
    const rule = c("/library/**");
    expect(localName("library/alpine", rule)).toBe("library/alpine");
    expect(upstreamName("library/alpine", rule)).toBe("library/alpine");
  });
  it("maps a destination with no stripPrefix onto a glob prefix", () => {
    const rule = c("/repo3/**", { destination: "/mirror" });
    expect(upstreamName("mirror/repo3/x", rule)).toBe("repo3/x");
  });
});

describe("routes", () => {
  const k8s = registry(["https://registry.k8s.io"], [c("/kube-*"), c("/pause")]);
  const hub = registry(
    ["https://registry-1.docker.io"],
    [c("/library/**", { destination: "/hub", stripPrefix: false })],
  );
  const any = registry(["http://127.0.0.1:5001"], [], false);

  it("tries registries in order, skipping those whose content does not match", () => {
    expect(routesFor([k8s, hub], "kube-proxy").map((r) => r.upstreamRepo)).toEqual(["kube-proxy"]);
    expect(routesFor([k8s, hub], "hub/library/alpine").map((r) => [r.index, r.upstreamRepo])).toEqual([
      [1, "library/alpine"],
    ]);
    expect(routesFor([k8s, hub], "nothing/here")).toEqual([]);
  });
  it("matches every repository when a registry has no content list", () => {
    expect(routesFor([any], "a/b/c")).toHaveLength(1);
    expect(routesFor([any], "a/b/c", { onDemandOnly: true })).toHaveLength(0);
  });
  it("routes containerd's ns to the registry with that host", () => {
    const open = registry(["https://registry-1.docker.io"], []);
    const quay = registry(["https://quay.io"], []);
    expect(routesFor([quay, open], "library/alpine", { ns: "docker.io" }).map((r) => r.index)).toEqual([1]);
    expect(routesFor([quay, open], "coreos/etcd", { ns: "quay.io" }).map((r) => r.index)).toEqual([0]);
    expect(routesFor([quay, open], "x", { ns: "ghcr.io" })).toEqual([]);
  });
});

describe("tag filters", () => {
  it("applies regex, then excludeRegex, then semver", () => {
    const rule = c("/x", { tags: { regex: "^v?1\\.", excludeRegex: "-rc", semver: true } });
    expect(filterTags(["1.2.3", "v1.4", "1.3.0-rc.1", "2.0.0", "latest", "1.x"], rule)).toEqual([
      "1.2.3",
      "v1.4",
    ]);
  });
  it("accepts a semver range in tags.semver", () => {
    const rule = c("/x", { tags: { semver: ">=1.29.0 <2" } });
    expect(
      filterTags(["v1.28.9", "v1.29.0", "v1.31.2", "v2.0.0", "latest", "v1.30.0-alpha.1"], rule),
    ).toEqual(["v1.29.0", "v1.31.2"]);
  });
  it("lets everything through without filters", () => {
    expect(tagAllowed("anything", undefined)).toBe(true);
  });
});

describe("names of mirrored content", () => {
  const hub = registry(["https://registry-1.docker.io"], []);
  const k8s = registry(
    ["https://registry.k8s.io"],
    [c("/kube/**", { destination: "/k8s", stripPrefix: true })],
  );
  const quay = registry(["https://quay.io"], []);

  it("gives every name that reaches the same upstream repository", () => {
    expect(aliasesOf([hub], "docker.io/private/x").sort()).toEqual(["docker.io/private/x", "private/x"]);
    expect(aliasesOf([hub], "private/x").sort()).toEqual(["docker.io/private/x", "private/x"]);
    expect(aliasesOf([k8s], "k8s/proxy").sort()).toEqual(["k8s/proxy", "registry.k8s.io/kube/proxy"]);
    expect(aliasesOf([k8s], "registry.k8s.io/kube/proxy").sort()).toEqual([
      "k8s/proxy",
      "registry.k8s.io/kube/proxy",
    ]);
    expect(aliasesOf([k8s], "unrelated/name")).toEqual(["unrelated/name"]);
  });
  it("routes a host-prefixed name to that host's registries only", () => {
    expect(routesForLocal([quay, hub], "docker.io/library/alpine").map((r) => r.index)).toEqual([1]);
    expect(routesForLocal([quay, k8s], "registry.k8s.io/other/thing")).toEqual([]);
    expect(routesForLocal([quay, hub], "library/alpine").map((r) => r.index)).toEqual([0, 1]);
  });
});
