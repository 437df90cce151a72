import { describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/config.ts";
import { configProblems as problems } from "../helpers/config-problems.ts";

const base = { distSpecVersion: "1.1.0", storage: { rootDirectory: "/srv/registry" } };
const withArtifacts = (artifacts: unknown, extra: Record<string, unknown> = {}) => ({
  ...base,
  ...extra,
  extensions: { artifacts },
});

describe("extensions.artifacts", () => {
  it("fills in defaults and is not warned about as an unimplemented extension", () => {
    const { config, warnings } = parseConfig(
      withArtifacts({
        rootDirectory: "/srv/files",
        pathPrefix: "/artifacts/",
        port: "8081",
        upstream: { url: "https://dl.k8s.io/" },
      }),
    );
    expect(warnings).toEqual([]);
    expect(config.artifacts).toEqual({
      rootDirectory: "/srv/files",
      pathPrefix: "/artifacts",
      listener: { address: "127.0.0.1", port: 8081 },
      listing: false,
      redirect: false,
      upstream: {
        url: "https://dl.k8s.io",
        verifyChecksums: true,
        timeoutMs: 600_000,
        negativeCacheTtlMs: 30_000,
      },
    });
  });

  it("is off when disabled", () => {
    const { config } = parseConfig(withArtifacts({ enable: false, rootDirectory: "/srv/files" }));
    expect(config.artifacts).toBeUndefined();
  });

  it("refuses unknown keys, a missing root and a bad upstream URL", () => {
    expect(problems(withArtifacts({ rootDirectory: "/srv/files", pathPrefix: "/a", listng: true }))).toEqual([
      expect.stringMatching(/^extensions\.artifacts\.listng: .*listing/),
    ]);
    expect(problems(withArtifacts({ pathPrefix: "/a" }))).toEqual([
      "extensions.artifacts: is missing required field 'rootDirectory'",
    ]);
    expect(
      problems(
        withArtifacts({ rootDirectory: "/srv/files", pathPrefix: "/a", upstream: { url: "ftp://x" } }),
      ),
    ).toEqual([expect.stringMatching(/^extensions\.artifacts\.upstream\.url: must be a URL/)]);
    expect(
      problems(
        withArtifacts({
          rootDirectory: "/srv/files",
          pathPrefix: "/a",
          upstream: { url: "https://x", extra: 1 },
        }),
      ),
    ).toHaveLength(1);
  });

  it("needs a place to serve from", () => {
    expect(problems(withArtifacts({ rootDirectory: "/srv/files" }))).toEqual([
      expect.stringMatching(/^extensions\.artifacts: say where files are served/),
    ]);
  });

  it("refuses a prefix that collides with the registry's endpoints or is not a plain path", () => {
    for (const prefix of ["/v2", "/v2/files", "/V2", "/_kagami", "/_kagami/x", "/livez", "/readyz/x"]) {
      expect(problems(withArtifacts({ rootDirectory: "/srv/files", pathPrefix: prefix }))).toEqual([
        expect.stringMatching(/^extensions\.artifacts\.pathPrefix: .* collides with the registry's own/),
      ]);
    }
    // The Prometheus path too, when metrics are on (its default is /metrics).
    const metrics = (path?: string) => ({
      ...base,
      extensions: {
        artifacts: { rootDirectory: "/srv/files", pathPrefix: path ?? "/metrics" },
        metrics: { enable: true, ...(path ? { prometheus: { path } } : {}) },
      },
    });
    for (const tree of [metrics(), metrics("/stats")]) {
      expect(problems(tree)).toEqual([
        expect.stringMatching(/^extensions\.artifacts\.pathPrefix: .* collides with the registry's own/),
      ]);
    }
    expect(problems(withArtifacts({ rootDirectory: "/srv/files", pathPrefix: "/metrics" }))).toEqual([]);
    for (const prefix of ["/", "artifacts", "/a/../v2", "/a b", "/a?x"]) {
      expect([prefix, problems(withArtifacts({ rootDirectory: "/srv/files", pathPrefix: prefix }))]).toEqual([
        prefix,
        [expect.stringMatching(/^extensions\.artifacts\.pathPrefix: must/)],
      ]);
    }
  });

  it("refuses an address without a port", () => {
    expect(
      problems(withArtifacts({ rootDirectory: "/srv/files", pathPrefix: "/a", address: "0.0.0.0" })),
    ).toEqual([expect.stringMatching(/^extensions\.artifacts\.address: .* needs "port" too/)]);
  });

  it("refuses its own listener on the registry's port", () => {
    expect(
      problems(withArtifacts({ rootDirectory: "/srv/files", port: 5000 }, { http: { port: "5000" } })),
    ).toEqual([expect.stringMatching(/^extensions\.artifacts\.port: is the registry's own port/)]);
  });

  it("refuses a root that overlaps the registry's storage", () => {
    for (const root of ["/srv/registry", "/srv/registry/files", "/srv"]) {
      expect(problems(withArtifacts({ rootDirectory: root, pathPrefix: "/a" }))).toEqual([
        expect.stringMatching(
          /^extensions\.artifacts\.rootDirectory: must be apart from the registry's storage/,
        ),
      ]);
    }
  });

  it("serves files to anyone only when that is confirmed where the registry has accounts", () => {
    const http = { auth: { htpasswd: { path: "/etc/kagami/htpasswd" } } };
    expect(problems(withArtifacts({ rootDirectory: "/srv/files", pathPrefix: "/a" }, { http }))).toEqual([
      expect.stringMatching(/^extensions\.artifacts: the registry requires accounts .* "anonymous": true/),
    ]);
    expect(
      problems(withArtifacts({ rootDirectory: "/srv/files", pathPrefix: "/a", anonymous: true }, { http })),
    ).toEqual([]);
    expect(
      problems(withArtifacts({ rootDirectory: "/srv/files", pathPrefix: "/a", anonymous: false })),
    ).toEqual([
      expect.stringMatching(
        /^extensions\.artifacts\.anonymous: artifact files are always served without sign-in/,
      ),
    ]);
  });

  it("applies redirect rules only where there are some", () => {
    expect(
      problems(withArtifacts({ rootDirectory: "/srv/files", pathPrefix: "/a", redirect: true })),
    ).toEqual(["extensions.artifacts.redirect: needs redirect rules in extensions.redirect"]);
    const rule = { name: "eu", networks: ["10.0.0.0/8"], baseUrl: "https://blobs.example" };
    const tree = (r: Record<string, unknown>) => ({
      ...base,
      extensions: {
        artifacts: { rootDirectory: "/srv/files", pathPrefix: "/a", redirect: true },
        redirect: { rules: [r] },
      },
    });
    expect(problems(tree(rule))).toEqual([
      "extensions.artifacts.redirect: no rule (nor the default) in extensions.redirect names an artifactsBaseUrl to send files to",
    ]);
    expect(problems(tree({ ...rule, artifactsBaseUrl: "https://files.example" }))).toEqual([]);
  });
});
