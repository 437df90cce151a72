/**
 * The Koa-free parts of the redirect rules: CIDR sets and the clouds' range files, the client
 * address behind trusted proxies, blob copy layouts and the HEAD check, and the config section.
 */
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, parseConfig } from "../../src/config/config.ts";
import { BlobCopyChecker, blobCopyUrl, layoutProblem } from "../../src/redirect/blob-copies.ts";
import { ClientAddressError, clientAddress } from "../../src/redirect/client-ip.ts";
import {
  loadNetworkFile,
  NetworkFileError,
  NetworkSet,
  parseAwsRanges,
  parseCidr,
  parseGcpRanges,
  parsePlainRanges,
} from "../../src/redirect/networks.ts";
import { Redirector } from "../../src/redirect/redirector.ts";
import { RedirectRules } from "../../src/redirect/rules.ts";
import { repoRoot } from "../helpers/kagami.ts";

const fixtures = join(repoRoot, "test/fixtures/redirect");
const digest = `sha256:${"ab".repeat(32)}`;

describe("networks", () => {
  it("parses CIDRs of both families and refuses what is not one", () => {
    expect(parseCidr("10.0.0.0/8")).toEqual({ address: "10.0.0.0", prefix: 8, family: "ipv4" });
    expect(parseCidr("2001:db8::/32")).toEqual({ address: "2001:db8::", prefix: 32, family: "ipv6" });
    expect(parseCidr("192.0.2.7")).toEqual({ address: "192.0.2.7", prefix: 32, family: "ipv4" });
    for (const bad of [
      "10.0.0.0/33",
      "2001:db8::/129",
      "10.0.0/8",
      "10.0.0.0/",
      "10.0.0.0/8/1",
      "host/8",
      "",
      "10.0.0.0/-1",
      "fe80::%eth0/10",
    ])
      expect(parseCidr(bad), bad).toBeUndefined();
  });

  it("matches addresses of both families, IPv4-mapped IPv6 as IPv4", () => {
    const set = NetworkSet.of(["10.1.0.0/16", "2001:db8:1::/48"]);
    expect(set.has("10.1.200.3")).toBe(true);
    expect(set.has("::ffff:10.1.0.1")).toBe(true);
    expect(set.has("10.2.0.1")).toBe(false);
    expect(set.has("2001:db8:1:ffff::1")).toBe(true);
    expect(set.has("2001:db8:2::1")).toBe(false);
    expect(set.has("not an address")).toBe(false);
  });

  it("matches exactly at the edges of overlapping, adjacent and nested ranges, in both spaces", () => {
    // Ranges are merged and binary-searched (a cloud's file holds thousands); the edges must hold.
    const set = NetworkSet.of([
      "10.0.0.0/24",
      "10.0.1.0/24", // adjacent: one range 10.0.0.0-10.0.1.255
      "10.0.0.128/25", // nested
      "192.0.2.7",
      "2001:db8::/127",
      "::ffff:198.51.100.0/120", // IPv4-mapped, matched by the IPv4 address
      "fe80::/10",
    ]);
    const yes = ["10.0.0.0", "10.0.1.255", "192.0.2.7", "2001:db8::1", "198.51.100.255", "fe80::1%eth0"];
    const no = ["9.255.255.255", "10.0.2.0", "192.0.2.6", "192.0.2.8", "2001:db8::2", "198.51.101.0", "::1"];
    expect(yes.filter((a) => !set.has(a))).toEqual([]);
    expect(no.filter((a) => set.has(a))).toEqual([]);
    expect(set.has("::ffff:a00:1ff")).toBe(true); // 10.0.1.255, written in hex
    expect(NetworkSet.of(["::/0"]).has("203.0.113.1")).toBe(true);
    expect(NetworkSet.of(["0.0.0.0/0"]).has("2001:db8::1")).toBe(false);
    const many = NetworkSet.of(Array.from({ length: 5000 }, (_, i) => `10.${i >> 8}.${i & 255}.0/24`));
    // 10.0.0.0 to 10.19.135.255, merged into one range.
    expect([many.has("10.0.0.0"), many.has("10.19.135.255"), many.has("10.19.136.0")]).toEqual([
      true,
      true,
      false,
    ]);
  });

  it("reads AWS ip-ranges.json with a region filter, IPv4 and IPv6", () => {
    const text = readFileSync(join(fixtures, "ip-ranges.json"), "utf8");
    expect(parseAwsRanges(text, ["us-east-1"]).sort()).toEqual(["10.2.0.0/16", "2001:db8:2::/48"]);
    expect(parseAwsRanges(text)).toHaveLength(5);
    expect(() => parseAwsRanges('{"prefixes": [{"ip_prefix": "10.0.0.0/99", "region": "x"}]}')).toThrow(
      /10\.0\.0\.0\/99.*not a CIDR/,
    );
    expect(() => parseAwsRanges("{}")).toThrow(NetworkFileError);
    expect(() => parseAwsRanges("[1,")).toThrow(/not valid JSON/);
  });

  it("reads GCP cloud.json with a scope filter", () => {
    const text = readFileSync(join(fixtures, "cloud.json"), "utf8");
    expect(parseGcpRanges(text, ["us-central1"]).sort()).toEqual(["10.4.0.0/16", "2001:db8:4::/48"]);
    expect(parseGcpRanges(text)).toHaveLength(3);
  });

  it("reads one CIDR a line, with comments, and names the bad line", () => {
    expect(parsePlainRanges(readFileSync(join(fixtures, "ranges.txt"), "utf8"))).toEqual([
      "10.1.0.0/16",
      "2001:db8:1::/48",
    ]);
    expect(() => parsePlainRanges("10.0.0.0/8\nnonsense\n", "x.txt")).toThrow("x.txt: line 2");
  });

  it("refuses a missing file and a filter that leaves nothing", () => {
    expect(() => loadNetworkFile({ path: join(fixtures, "missing.txt"), format: "plain" })).toThrow(
      /cannot read the file/,
    );
    expect(() =>
      loadNetworkFile({ path: join(fixtures, "ip-ranges.json"), format: "aws", regions: ["us-esat-1"] }),
    ).toThrow(/no networks left/);
  });
});

describe("client address", () => {
  const opts = (hops = 1) => ({
    trustedProxies: NetworkSet.of(["127.0.0.1/32", "::1/128"]),
    trustedHops: hops,
  });

  it("is the socket's address unless the peer is a trusted proxy", () => {
    expect(clientAddress("203.0.113.9", "10.1.2.3", opts())).toBe("203.0.113.9");
    expect(clientAddress("::ffff:203.0.113.9", undefined, opts())).toBe("203.0.113.9");
    expect(clientAddress("127.0.0.1", undefined, opts())).toBe("127.0.0.1");
    expect(clientAddress("127.0.0.1", "10.1.2.3", { ...opts(), trustedProxies: new NetworkSet() })).toBe(
      "127.0.0.1",
    );
  });

  it("counts trusted hops from the right, ignoring what the client wrote first", () => {
    expect(clientAddress("127.0.0.1", "10.1.2.3", opts())).toBe("10.1.2.3");
    expect(clientAddress("::1", "6.6.6.6, 10.1.2.3", opts())).toBe("10.1.2.3");
    expect(clientAddress("127.0.0.1", "junk, 10.1.2.3,35.191.0.1", opts(2))).toBe("10.1.2.3");
    expect(clientAddress("127.0.0.1", "2001:db8:1::9", opts())).toBe("2001:db8:1::9");
  });

  it("refuses rather than guesses", () => {
    for (const [xff, hops] of [
      ["not-an-ip", 1],
      ["", 1],
      [" , ", 1],
      ["10.1.2.3", 2],
      ["10.1.2.3, bogus", 2],
      ["10.1.2.3:443", 1],
    ] as const) {
      expect(() => clientAddress("127.0.0.1", xff, opts(hops)), xff).toThrow(ClientAddressError);
    }
    expect(() => clientAddress("35.180.1.1asdf", undefined, opts())).toThrow(ClientAddressError);
  });
});

describe("blob copies", () => {
  it("builds the archeio layout, the registry layout and templates", () => {
    expect(blobCopyUrl("https://b.example/", "archeio", digest, "pause")).toBe(
      `https://b.example/containers/images/${digest}`,
    );
    expect(blobCopyUrl("https://b.example/x", "registry", digest, "team/app")).toBe(
      `https://b.example/x/v2/team/app/blobs/${digest}`,
    );
    expect(blobCopyUrl("https://b.example", "blobs/{algorithm}/{encoded}", digest, "pause")).toBe(
      `https://b.example/blobs/sha256/${"ab".repeat(32)}`,
    );
    expect(() => blobCopyUrl("https://b.example", "archeio", "sha256:../../etc", "x")).toThrow();
  });

  it("refuses layouts that do not name the blob", () => {
    expect(layoutProblem("archeio")).toBeUndefined();
    expect(layoutProblem("blobs/{repository}")).toMatch(/\{digest\}/);
    expect(layoutProblem("x/{sha}")).toMatch(/unknown placeholder \{sha\}/);
    expect(layoutProblem("https://other/{digest}")).toMatch(/relative/);
  });

  describe("HEAD check", () => {
    let server: Server;
    let base: string;
    const seen: string[] = [];
    let present = new Set<string>();
    beforeAll(async () => {
      server = createServer((req, res) => {
        seen.push(`${req.method} ${req.url} ${req.headers.authorization ?? "-"}`);
        if (req.url === "/slow") return; // never answers
        res.statusCode = present.has(req.url ?? "") ? 200 : 404;
        res.end();
      });
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
      const a = server.address();
      base = `http://127.0.0.1:${typeof a === "object" && a ? a.port : 0}`;
    });
    afterAll(async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    });

    it("caches only positive answers, and a slow copy counts as not having it", async () => {
      present = new Set(["/yes"]);
      // Generous for answers that come (a loaded machine must not turn a 200 into "absent"); the
      // short timeout only where the copy never answers.
      const checker = new BlobCopyChecker({ timeoutMs: 10_000, cacheTtlMs: 60_000 });
      expect(await checker.has(`${base}/yes`)).toBe(true);
      expect(await checker.has(`${base}/no`)).toBe(false);
      present = new Set(["/no"]);
      expect(await checker.has(`${base}/yes`)).toBe(true);
      expect(await checker.has(`${base}/no`)).toBe(true);
      expect(seen.filter((s) => s.startsWith("HEAD /yes"))).toHaveLength(1);
      expect(seen.filter((s) => s.startsWith("HEAD /no"))).toHaveLength(2);
      expect(seen.every((s) => s.endsWith(" -"))).toBe(true);
      const impatient = new BlobCopyChecker({ timeoutMs: 300, cacheTtlMs: 60_000 });
      expect(await impatient.has(`${base}/slow`)).toBe(false);
      const down = new BlobCopyChecker({ timeoutMs: 300, cacheTtlMs: 60_000 });
      expect(await down.has("http://127.0.0.1:1/x")).toBe(false);
    });
  });
});

describe("extensions.redirect config", () => {
  const cfg = (redirect: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
    parseConfig({ ...extra, extensions: { ...(extra.extensions as object), redirect } });
  const problems = (redirect: Record<string, unknown>, extra: Record<string, unknown> = {}) => {
    try {
      cfg(redirect, extra);
    } catch (err) {
      if (err instanceof ConfigError) return err.problems.map((p) => `${p.path}: ${p.message}`);
      throw err;
    }
    return [];
  };
  const rule = { name: "eu", networks: ["10.1.0.0/16"], baseUrl: "https://eu.example/bucket" };

  it("fills in defaults and resolves network files", () => {
    const { config, warnings } = cfg({
      rules: [{ ...rule, networkFiles: [{ path: "r.txt", format: "plain" }] }],
    });
    expect(warnings).toEqual([]);
    expect(config.redirect).toMatchObject({
      mode: "mirror",
      trustedHops: 1,
      trustedProxies: [],
      checkTimeoutMs: 2000,
      checkCacheTtlMs: 3_600_000,
      rules: [{ name: "eu", layout: "archeio", baseUrl: "https://eu.example/bucket" }],
    });
    expect(config.redirect?.rules[0]?.networkFiles[0]?.path).toBe(join(process.cwd(), "r.txt"));
  });

  it("refuses a bad CIDR naming the field and the value", () => {
    expect(problems({ rules: [{ ...rule, networks: ["10.1.0.0/16", "10.300.0.0/16"] }] })).toEqual([
      'extensions.redirect.rules[0].networks[1]: "10.300.0.0/16" is not a CIDR such as 10.0.0.0/8 or 2001:db8::/32',
    ]);
    expect(problems({ clientAddress: { trustedProxies: ["loopback"] } })[0]).toMatch(
      /^extensions\.redirect\.clientAddress\.trustedProxies\[0\]: "loopback" is not a CIDR/,
    );
  });

  it("refuses unknown keys, credentials in URLs and unusable layouts", () => {
    expect(problems({ rules: [{ ...rule, regoins: ["x"] }] }).join("\n")).toMatch(/regoins/);
    expect(problems({ rules: [{ ...rule, baseUrl: "https://u:p@eu.example" }] })).toEqual([
      "extensions.redirect.rules[0].baseUrl: must not contain credentials: every client it is sent to would receive them",
    ]);
    expect(problems({ rules: [{ ...rule, layout: "blobs/{repository}" }] })[0]).toMatch(
      /layout: must contain/,
    );
    expect(problems({ rules: [{ name: "x", baseUrl: "https://x.example" }] })[0]).toMatch(
      /names no client networks/,
    );
    expect(
      problems({ rules: [{ ...rule, networkFiles: [{ path: "a", format: "gcp", regions: ["x"] }] }] })[0],
    ).toMatch(/only an aws file has regions/);
  });

  it("refuses a redirector without an upstream, or with access control it would not enforce", () => {
    expect(problems({ mode: "redirector" })).toEqual([
      "extensions.redirect.upstream: a redirector needs the registry it sends requests to",
    ]);
    const up = { mode: "redirector", upstream: { url: "https://up.example" } };
    expect(problems(up, { http: { auth: { htpasswd: { path: "/x" } } } })[0]).toMatch(
      /^http\.auth: a redirector .* does not enforce access control/,
    );
    expect(problems(up, { http: { accessControl: { repositories: {} } } })[0]).toMatch(
      /^http\.accessControl:/,
    );
    expect(problems({ upstream: { url: "https://up.example" } })[0]).toMatch(/used only in redirector mode/);
    expect(problems({ ...up, pages: { "/v2/x": "https://x.example" } })[0]).toMatch(/outside \/v2/);
    // Accepted once, never served.
    expect(problems(up, { extensions: { metrics: { enable: true } } })).toEqual([
      "extensions.metrics: a redirector serves no metrics; its access log records every redirect",
    ]);
  });

  it("picks the first rule holding the client, else the default", () => {
    const { config } = cfg({
      rules: [rule, { name: "us", networks: ["10.0.0.0/8"], baseUrl: "https://us.example" }],
      default: { baseUrl: "https://any.example" },
    });
    const rules = RedirectRules.load(config.redirect!);
    expect(rules.pick("10.1.0.1")?.name).toBe("eu");
    expect(rules.pick("10.9.0.1")?.name).toBe("us");
    expect(rules.pick("192.0.2.1")?.name).toBe("default");
  });
});

describe("redirector paths", () => {
  const { config } = parseConfig({
    extensions: {
      redirect: { mode: "redirector", upstream: { url: "https://up.example", pathPrefix: "k8s/images" } },
    },
  });
  const redirector = new Redirector(config.redirect!, RedirectRules.load(config.redirect!));
  const answer = (path: string) =>
    redirector.answer({ method: "GET", path, search: "", peer: "192.0.2.1", forwarded: undefined });

  it("keeps every redirect under the upstream's path prefix", async () => {
    // `\` is `/` to a WHATWG URL parser: `.../k8s/images/x\..\..\..\other` resolves to `/other`.
    for (const path of [
      "/v2/x\\..\\..\\..\\other/manifests/a",
      "/v2/pause/blobs/sha256:ab\\..",
      "/v2/../x",
    ]) {
      expect([path, await answer(path)]).toMatchObject([
        path,
        { kind: "error", status: 400, code: "NAME_INVALID" },
      ]);
    }
    expect(await answer("/v2/pause/manifests/v1")).toEqual({
      kind: "redirect",
      to: "upstream",
      location: "https://up.example/v2/k8s/images/pause/manifests/v1",
    });
  });
});

describe("redirector blob copies with the repository in the layout", () => {
  let server: Server;
  let base = "";
  beforeAll(async () => {
    // A copy that says it has everything: only the redirector's own checks keep a path out.
    server = createServer((_req, res) => res.end());
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const a = server.address();
    base = `http://127.0.0.1:${typeof a === "object" && a ? a.port : 0}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  it("sends no client to a copy path built from a name outside the spec's grammar", async () => {
    const { config } = parseConfig({
      extensions: {
        redirect: {
          mode: "redirector",
          rules: [{ name: "all", networks: ["0.0.0.0/0"], baseUrl: base, layout: "registry" }],
          upstream: { url: "https://up.example" },
        },
      },
    });
    const redirector = new Redirector(config.redirect!, RedirectRules.load(config.redirect!));
    const get = (path: string) =>
      redirector.answer({ method: "GET", path, search: "", peer: "192.0.2.1", forwarded: undefined });
    expect(await get(`/v2/pause/blobs/${digest}`)).toMatchObject({
      to: "copy",
      location: `${base}/v2/pause/blobs/${digest}`,
    });
    for (const name of ["a%2f..%2f..%2fsecret", "A/Upper", "a%3fq=1"]) {
      expect(await get(`/v2/${name}/blobs/${digest}`)).toMatchObject({ kind: "redirect", to: "upstream" });
    }
  });
});
