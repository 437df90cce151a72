import { describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/config.ts";
import { configProblems as problems } from "../helpers/config-problems.ts";

const storage = { rootDirectory: "/tmp/kagami-config-test" };

describe("extensions.metrics", () => {
  it("serves metrics only when enabled, at zot's default path unless another is written", () => {
    const on = (metrics: unknown) => parseConfig({ storage, extensions: { metrics } });
    expect(on({ enable: true, prometheus: { path: "/metrics" } }).config.metrics).toEqual({
      path: "/metrics",
    });
    expect(on({ enable: true, prometheus: { path: "/ops/prom" } }).config.metrics).toEqual({
      path: "/ops/prom",
    });
    expect(on({ enable: true }).config.metrics).toEqual({ path: "/metrics" });
    expect(on({ enable: true, prometheus: { path: "" } }).config.metrics).toEqual({ path: "/metrics" });
    expect(on({ enable: false, prometheus: { path: "/metrics" } }).config.metrics).toBeUndefined();
    expect(on({}).config.metrics).toBeUndefined();
    expect(parseConfig({ storage }).config.metrics).toBeUndefined();
    // Implemented now: no "not implemented" warning.
    expect(on({ enable: true }).warnings).toEqual([]);
  });

  it("refuses unknown fields and a path that is not one, or that the registry API owns", () => {
    expect(problems({ storage, extensions: { metrics: { enable: true, port: 9100 } } })).toEqual([
      expect.stringMatching(/^extensions\.metrics\.port: unknown field/),
    ]);
    for (const path of ["metrics", "/v2/metrics", "/v2", "/m?x=1"]) {
      expect(
        problems({ storage, extensions: { metrics: { enable: true, prometheus: { path } } } }),
        path,
      ).toEqual([expect.stringMatching(/^extensions\.metrics\.prometheus\.path: /)]);
    }
    expect(problems({ storage, extensions: { metrics: { enable: "yes" } } })).toEqual([
      expect.stringMatching(/^extensions\.metrics\.enable: /),
    ]);
  });

  it("refuses a path that shadows the probes, /_kagami/ or the release files' prefix", () => {
    for (const path of ["/livez", "/readyz", "/startupz", "/_kagami/token", "/_kagami/metrics"]) {
      expect(
        problems({ storage, extensions: { metrics: { enable: true, prometheus: { path } } } }),
        path,
      ).toEqual([
        expect.stringMatching(/^extensions\.metrics\.prometheus\.path: .*registry's own endpoints/),
      ]);
    }
    const artifacts = { enable: true, rootDirectory: "/tmp/kagami-config-test-files", pathPrefix: "/files" };
    expect(
      problems({
        storage,
        extensions: { artifacts, metrics: { enable: true, prometheus: { path: "/files/metrics" } } },
      }),
    ).toEqual([expect.stringMatching(/^extensions\.artifacts\.pathPrefix: '\/files' collides/)]);
    // Beside the prefix is fine, and so are characters a router pattern would have read as syntax.
    for (const path of ["/files-metrics", "/ops/:x", "/m(.*)"]) {
      const on = { artifacts, metrics: { enable: true, prometheus: { path } } };
      expect(parseConfig({ storage, extensions: on }).config.metrics, path).toEqual({ path });
    }
  });

  it("keeps accessControl.metrics for the metrics endpoint, not as a repository pattern", () => {
    const { config } = parseConfig({
      storage,
      http: {
        auth: { htpasswd: { path: "/x" } },
        accessControl: {
          metrics: { users: ["prom"], anonymousPolicy: ["read"] },
          "**": { defaultPolicy: ["read"] },
        },
      },
    });
    expect(config.http.accessControl?.metrics).toEqual({ users: ["prom"], anonymousPolicy: ["read"] });
    expect(Object.keys(config.http.accessControl?.repositories ?? {})).toEqual(["**"]);
    expect(
      problems({ storage, http: { accessControl: { metrics: { users: ["prom"], bogus: true } } } }),
    ).toEqual([expect.stringMatching(/^http\.accessControl\.metrics\.bogus: unknown field/)]);
  });
});
