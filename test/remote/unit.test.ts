import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseFlags } from "../../src/cli/args.ts";
import { splitRefName } from "../../src/cli/import-export.ts";
import { parsePlatform, platformMatches } from "../../src/copy/platform.ts";
import { parseTransport } from "../../src/copy/transport.ts";
import { parseChallenges } from "../../src/remote/challenge.ts";
import {
  loadAuthFile,
  loadZotCredentials,
  normalizeAuthKey,
  parseCredsFlag,
} from "../../src/remote/credentials.ts";
import { parseImageReference, registryUrls } from "../../src/remote/reference.ts";
import { RemoteRegistry } from "../../src/remote/remote.ts";
import { backoffDelay, parseRetryAfter } from "../../src/remote/retry.ts";

describe("WWW-Authenticate parsing", () => {
  it("reads docker's Bearer challenge with quoted params", () => {
    const [c] = parseChallenges(
      'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"',
    );
    expect(c).toEqual({
      scheme: "bearer",
      params: {
        realm: "https://auth.docker.io/token",
        service: "registry.docker.io",
        scope: "repository:library/alpine:pull",
      },
    });
  });
  it("reads Basic, several challenges, unquoted values and escapes", () => {
    const cs = parseChallenges([
      'Basic realm="Registry \\"R\\""',
      "Bearer realm=http://x/token, service=svc , error=insufficient_scope",
    ]);
    expect(cs.map((c) => c.scheme)).toEqual(["basic", "bearer"]);
    expect(cs[0]!.params.realm).toBe('Registry "R"');
    expect(cs[1]!.params).toEqual({ realm: "http://x/token", service: "svc", error: "insufficient_scope" });
  });
});

describe("image references", () => {
  it("normalizes Docker Hub names the way docker does", () => {
    expect(parseImageReference("alpine")).toEqual({
      host: "docker.io",
      repo: "library/alpine",
      tag: "latest",
    });
    expect(parseImageReference("docker.io/alpine:3.19")).toMatchObject({
      host: "docker.io",
      repo: "library/alpine",
      tag: "3.19",
    });
    expect(parseImageReference("index.docker.io/bitnami/redis")).toMatchObject({
      host: "docker.io",
      repo: "bitnami/redis",
    });
    expect(parseImageReference("localhost:5000/a/b@sha256:" + "a".repeat(64))).toEqual({
      host: "localhost:5000",
      repo: "a/b",
      digest: `sha256:${"a".repeat(64)}`,
    });
    expect(parseImageReference("quay.io/x/y:v1")).toMatchObject({ host: "quay.io", repo: "x/y", tag: "v1" });
    expect(registryUrls("docker.io", true)).toEqual(["https://registry-1.docker.io"]);
    expect(registryUrls("127.0.0.1:5000", false)).toEqual([
      "https://127.0.0.1:5000",
      "http://127.0.0.1:5000",
    ]);
    expect(() => parseImageReference("UPPER/case")).toThrow(/not a valid repository name/);
  });
  it("adds library/ for single-name Hub repositories in the client", () => {
    const hub = new RemoteRegistry({ urls: ["https://registry-1.docker.io"] });
    expect(hub.repoName("alpine")).toBe("library/alpine");
    expect(hub.repoName("bitnami/redis")).toBe("bitnami/redis");
    const other = new RemoteRegistry({ urls: ["http://127.0.0.1:1"] });
    expect(other.repoName("alpine")).toBe("alpine");
    void hub.close();
    void other.close();
  });
  it("parses skopeo transports", () => {
    expect(parseTransport("docker://alpine")).toMatchObject({
      transport: "docker",
      host: "docker.io",
      repo: "library/alpine",
    });
    expect(parseTransport("oci:/tmp/x:v1")).toEqual({ transport: "oci", path: "/tmp/x", reference: "v1" });
    expect(parseTransport("oci-archive:/tmp/x.tar")).toEqual({
      transport: "oci-archive",
      path: "/tmp/x.tar",
      reference: "",
    });
    expect(parseTransport("kagami://team/app:1")).toEqual({
      transport: "kagami",
      repo: "team/app",
      tag: "1",
    });
    expect(() => parseTransport("/tmp/x")).toThrow(/names no transport/);
    expect(splitRefName("docker.io/library/alpine:3.19")).toEqual({ repo: "library/alpine", tag: "3.19" });
    expect(splitRefName("team/app:1")).toEqual({ repo: "team/app", tag: "1" });
    expect(splitRefName("v1")).toEqual({ tag: "v1" });
  });
  it("parses platforms and flags", () => {
    expect(parsePlatform("linux/arm64/v8")).toEqual({ os: "linux", architecture: "arm64", variant: "v8" });
    expect(
      platformMatches(
        { os: "linux", architecture: "arm64", variant: "v8" },
        { os: "linux", architecture: "arm64" },
      ),
    ).toBe(true);
    expect(
      platformMatches(
        { os: "linux", architecture: "arm", variant: "v7" },
        { os: "linux", architecture: "arm", variant: "v6" },
      ),
    ).toBe(false);
    expect(() => parsePlatform("linux")).toThrow(/os\/arch/);
    const { flags, positionals } = parseFlags(
      ["--src-tls-verify=false", "--platform", "a/b", "--platform=c/d", "--no-referrers", "x", "y"],
      {
        "src-tls-verify": { type: "boolean" },
        platform: { type: "string", multiple: true },
        referrers: { type: "boolean" },
      },
    );
    expect(flags).toEqual({ "src-tls-verify": false, platform: ["a/b", "c/d"], referrers: false });
    expect(positionals).toEqual(["x", "y"]);
  });
});

describe("credentials", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "kagami-creds-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  it("reads zot's credentialsFile", async () => {
    const f = join(dir, "zot.json");
    await writeFile(f, JSON.stringify({ "127.0.0.1:5000": { username: "u", password: "p" } }));
    expect(loadZotCredentials(f).lookup("127.0.0.1:5000")).toEqual({ username: "u", password: "p" });
    await writeFile(f, JSON.stringify({ h: { username: 1 } }));
    expect(() => loadZotCredentials(f)).toThrow(/needs string fields/);
  });
  it("reads docker and podman auth files, with Hub aliases and namespaces", async () => {
    const f = join(dir, "auth.json");
    const b64 = (s: string) => Buffer.from(s).toString("base64");
    await writeFile(
      f,
      JSON.stringify({
        auths: {
          "https://index.docker.io/v1/": { auth: b64("hub:secret") },
          "quay.io": { auth: b64("q:1:2") },
          "quay.io/team": { auth: b64("team:x") },
        },
      }),
    );
    const store = loadAuthFile(f);
    expect(store.lookup("registry-1.docker.io")).toEqual({ username: "hub", password: "secret" });
    expect(store.lookup("quay.io", "other/x")).toEqual({ username: "q", password: "1:2" });
    expect(store.lookup("quay.io", "team/app")).toEqual({ username: "team", password: "x" });
    expect(normalizeAuthKey("https://index.docker.io/v1/")).toBe("docker.io");
    expect(parseCredsFlag("a:b:c")).toEqual({ username: "a", password: "b:c" });
  });
});

describe("retry timing", () => {
  it("backs off exponentially with jitter, capped", () => {
    const p = { retryDelay: 100, maxRetryDelay: 1000, backoff: "jittered" as const };
    expect(backoffDelay(p, 0, () => 0)).toBe(50);
    expect(backoffDelay(p, 0, () => 1)).toBe(100);
    expect(backoffDelay(p, 3, () => 1)).toBe(800);
    expect(backoffDelay(p, 10, () => 1)).toBe(1000);
    expect(parseRetryAfter("3")).toBe(3000);
    expect(parseRetryAfter(new Date(Date.now() + 5000).toUTCString())).toBeGreaterThan(3000);
    expect(parseRetryAfter("soon")).toBeUndefined();
  });
});

describe("token flow against a fake registry", () => {
  let server: Server;
  let base: string;
  let tokensIssued = 0;
  let revoked = new Set<string>();
  const seen: string[] = [];
  beforeAll(async () => {
    server = createServer((req, res) => {
      const url = new URL(req.url ?? "/", "http://x");
      if (url.pathname === "/token") {
        tokensIssued++;
        const ok = req.headers.authorization === `Basic ${Buffer.from("u:p").toString("base64")}`;
        if (!ok) {
          res.writeHead(401).end();
          return;
        }
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ token: `t${tokensIssued}`, expires_in: 300 }));
        return;
      }
      const auth = req.headers.authorization ?? "";
      seen.push(auth);
      const token = auth.replace(/^Bearer /, "");
      if (!auth.startsWith("Bearer ") || revoked.has(token)) {
        res.writeHead(401, {
          "www-authenticate": `Bearer realm="${base}/token",service="fake",scope="repository:a:pull"`,
          "content-type": "application/json",
        });
        res.end(JSON.stringify({ errors: [{ code: "UNAUTHORIZED", message: "auth required" }] }));
        return;
      }
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ name: "a", tags: ["x"] }));
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise<void>((r) => server.close(() => r()));
  });
  it("goes anonymous first, caches the token, and refreshes it on a 401", async () => {
    const remote = new RemoteRegistry({
      urls: [base],
      credentials: { username: "u", password: "p" },
      retryDelay: 1,
    });
    try {
      expect(await remote.listTags("a")).toEqual(["x"]);
      expect(seen[0]).toBe("");
      expect(tokensIssued).toBe(1);
      expect(await remote.listTags("a")).toEqual(["x"]);
      expect(tokensIssued).toBe(1);
      revoked = new Set(["t1"]);
      expect(await remote.listTags("a")).toEqual(["x"]);
      expect(tokensIssued).toBe(2);
      expect(seen.at(-1)).toBe("Bearer t2");
    } finally {
      await remote.close();
    }
  });
  it("names the token service and the account when credentials are refused", async () => {
    const remote = new RemoteRegistry({
      urls: [base],
      credentials: { username: "u", password: "wrong" },
      retryDelay: 1,
    });
    try {
      await expect(remote.listTags("a")).rejects.toThrow(
        /token service .* refused a token for repository:a:pull as 'u': HTTP 401/,
      );
    } finally {
      await remote.close();
    }
  });
});
