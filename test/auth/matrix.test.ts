import { mkdtempSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { basic, writeHtpasswd } from "../helpers/htpasswd.ts";
import { type RunningKagami, startKagami } from "../helpers/kagami.ts";
import { ociManifest, sha256 } from "../helpers/push.ts";
import { hasTool } from "../helpers/tools.ts";

type Who = "anonymous" | "ro" | "rw" | "admin" | "wrongPassword" | "unknownUser";
type Action = "read" | "create" | "update" | "delete" | "base" | "catalog";
const everyone: Who[] = ["anonymous", "ro", "rw", "admin", "wrongPassword", "unknownUser"];
const repos = { allowed: "allowed/app", forbidden: "forbidden/app" } as const;
type RepoKind = keyof typeof repos;

const passwords: Record<string, string> = { ro: "ro-pass", rw: "rw-pass", admin: "admin-pass" };
const authHeader: Record<Who, string | undefined> = {
  anonymous: undefined,
  ro: basic("ro", "ro-pass"),
  rw: basic("rw", "rw-pass"),
  admin: basic("admin", "admin-pass"),
  wrongPassword: basic("rw", "not-the-password"),
  unknownUser: basic("mallory", "rw-pass"),
};

/** The outcome the policy below must give: ok (the endpoint's own answer), 401 or 403. */
function expected(who: Who, repo: RepoKind, action: Action): "ok" | 401 | 403 {
  if (who === "wrongPassword" || who === "unknownUser") return 401;
  if (action === "base") return who === "anonymous" ? 401 : "ok";
  if (action === "catalog") return "ok";
  if (who === "admin") return "ok";
  if (who === "anonymous") return repo === "allowed" && action === "read" ? "ok" : 401;
  if (repo === "forbidden") return 403;
  if (who === "rw") return "ok";
  return action === "read" ? "ok" : 403;
}

let k: RunningKagami;
const blob = Buffer.from("matrix blob");
const blobDigest = sha256(blob);
const config = Buffer.from("{}");
const configDigest = sha256(config);
let manifest: Buffer;
let manifestDigest: string;

async function call(
  method: string,
  path: string,
  who: Who,
  body?: Buffer | string,
  headers: Record<string, string> = {},
) {
  const h: Record<string, string> = { ...headers };
  const a = authHeader[who];
  if (a) h.Authorization = a;
  return fetch(`${k.url}${path}`, { method, headers: h, body });
}

async function seed(repo: string): Promise<void> {
  for (const data of [blob, config]) {
    const res = await call("POST", `/v2/${repo}/blobs/uploads/?digest=${sha256(data)}`, "admin", data);
    expect(res.status).toBe(201);
  }
  const res = await call("PUT", `/v2/${repo}/manifests/v1`, "admin", manifest, {
    "Content-Type": ociManifest,
  });
  expect(res.status).toBe(201);
}

async function newUpload(repo: string): Promise<string> {
  const res = await call("POST", `/v2/${repo}/blobs/uploads/`, "admin");
  return res.headers.get("location")!;
}

interface Endpoint {
  name: string;
  action: Action;
  run: (repo: string, who: Who) => Promise<Response>;
}

const endpoints: Endpoint[] = [
  { name: "GET /v2/", action: "base", run: (_r, w) => call("GET", "/v2/", w) },
  { name: "GET _catalog", action: "catalog", run: (_r, w) => call("GET", "/v2/_catalog", w) },
  { name: "GET tags/list", action: "read", run: (r, w) => call("GET", `/v2/${r}/tags/list`, w) },
  { name: "HEAD manifest", action: "read", run: (r, w) => call("HEAD", `/v2/${r}/manifests/v1`, w) },
  {
    name: "GET manifest",
    action: "read",
    run: (r, w) => call("GET", `/v2/${r}/manifests/${manifestDigest}`, w),
  },
  { name: "HEAD blob", action: "read", run: (r, w) => call("HEAD", `/v2/${r}/blobs/${blobDigest}`, w) },
  { name: "GET blob", action: "read", run: (r, w) => call("GET", `/v2/${r}/blobs/${blobDigest}`, w) },
  {
    name: "GET referrers",
    action: "read",
    run: (r, w) => call("GET", `/v2/${r}/referrers/${manifestDigest}`, w),
  },
  {
    name: "PUT manifest (new tag)",
    action: "create",
    run: (r, w) => call("PUT", `/v2/${r}/manifests/new-${w}`, w, manifest, { "Content-Type": ociManifest }),
  },
  {
    name: "PUT manifest (move tag)",
    action: "update",
    run: async (r, w) => {
      // Point tag `moving` elsewhere first, so this PUT moves it.
      const other = Buffer.from(manifest.toString().replace("}", ',"annotations":{"x":"1"}}'));
      await call("PUT", `/v2/${r}/manifests/moving`, "admin", other, { "Content-Type": ociManifest });
      return call("PUT", `/v2/${r}/manifests/moving`, w, manifest, { "Content-Type": ociManifest });
    },
  },
  { name: "POST upload", action: "create", run: (r, w) => call("POST", `/v2/${r}/blobs/uploads/`, w) },
  {
    name: "POST monolithic upload",
    action: "create",
    run: (r, w) => call("POST", `/v2/${r}/blobs/uploads/?digest=${blobDigest}`, w, blob),
  },
  {
    name: "POST mount",
    action: "create",
    run: (r, w) => call("POST", `/v2/${r}/blobs/uploads/?mount=${blobDigest}&from=${repos.allowed}`, w),
  },
  { name: "GET upload status", action: "create", run: async (r, w) => call("GET", await newUpload(r), w) },
  {
    name: "PATCH upload",
    action: "create",
    run: async (r, w) => call("PATCH", await newUpload(r), w, "abc"),
  },
  {
    name: "PUT upload",
    action: "create",
    run: async (r, w) => call("PUT", `${await newUpload(r)}?digest=${blobDigest}`, w, blob),
  },
  { name: "DELETE upload", action: "create", run: async (r, w) => call("DELETE", await newUpload(r), w) },
  {
    name: "DELETE tag",
    action: "delete",
    run: async (r, w) => {
      await call("PUT", `/v2/${r}/manifests/doomed`, "admin", manifest, { "Content-Type": ociManifest });
      return call("DELETE", `/v2/${r}/manifests/doomed`, w);
    },
  },
  {
    name: "DELETE blob",
    action: "delete",
    run: async (r, w) => {
      const d = Buffer.from(`delete-me-${w}-${r}`);
      await call("POST", `/v2/${r}/blobs/uploads/?digest=${sha256(d)}`, "admin", d);
      return call("DELETE", `/v2/${r}/blobs/${sha256(d)}`, w);
    },
  },
];

describe.runIf(hasTool("htpasswd"))("access control matrix", () => {
  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), "kagami-matrix-"));
    const htpasswd = join(dir, "htpasswd");
    writeHtpasswd(htpasswd, Object.entries(passwords) as [string, string][]);
    manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: ociManifest,
        config: {
          mediaType: "application/vnd.oci.image.config.v1+json",
          digest: configDigest,
          size: config.length,
        },
        layers: [
          { mediaType: "application/vnd.oci.image.layer.v1.tar", digest: blobDigest, size: blob.length },
        ],
      }),
    );
    manifestDigest = sha256(manifest);
    k = await startKagami({
      config: {
        http: {
          realm: "matrix",
          auth: { htpasswd: { path: htpasswd } },
          accessControl: {
            repositories: {
              "allowed/**": {
                policies: [
                  { users: ["rw"], actions: ["read", "create", "update", "delete"] },
                  { users: ["ro"], actions: ["read"] },
                ],
                anonymousPolicy: ["read"],
              },
              "forbidden/**": { policies: [] },
            },
            adminPolicy: { users: ["admin"], actions: ["read", "create", "update", "delete"] },
          },
        },
      },
    });
    await seed(repos.allowed);
    await seed(repos.forbidden);
  });
  afterAll(async () => {
    await k?.destroy();
  });

  for (const ep of endpoints) {
    for (const repo of ["allowed", "forbidden"] as RepoKind[]) {
      if ((ep.action === "base" || ep.action === "catalog") && repo === "forbidden") continue;
      for (const who of everyone) {
        const want = expected(who, repo, ep.action);
        it(`${ep.name} on ${repo} as ${who} → ${want}`, async () => {
          const res = await ep.run(repos[repo], who);
          const text = ep.name.startsWith("HEAD") ? "" : await res.text();
          if (want === "ok") {
            expect([401, 403], text).not.toContain(res.status);
            expect(res.status, text).toBeLessThan(500);
          } else {
            expect(res.status, text).toBe(want);
            if (!ep.name.startsWith("HEAD")) {
              expect(JSON.parse(text).errors[0].code).toBe(want === 401 ? "UNAUTHORIZED" : "DENIED");
            }
            if (want === 401) expect(res.headers.get("www-authenticate")).toBe('Basic realm="matrix"');
          }
        });
      }
    }
  }

  it("lists only readable repositories in _catalog", async () => {
    const anon = (await (await call("GET", "/v2/_catalog", "anonymous")).json()) as {
      repositories: string[];
    };
    expect(anon.repositories).toEqual([repos.allowed]);
    const all = (await (await call("GET", "/v2/_catalog", "admin")).json()) as { repositories: string[] };
    expect(all.repositories).toEqual([repos.allowed, repos.forbidden]);
  });

  it("does not mount from a repository the caller may not read: an ordinary upload starts instead", async () => {
    const res = await call(
      "POST",
      `/v2/${repos.allowed}/blobs/uploads/?mount=${blobDigest}&from=${repos.forbidden}`,
      "rw",
    );
    expect(res.status).toBe(202);
    // Automatic discovery only considers readable repositories too.
    const only = Buffer.from("only in forbidden");
    await call("POST", `/v2/${repos.forbidden}/blobs/uploads/?digest=${sha256(only)}`, "admin", only);
    const auto = await call("POST", `/v2/${repos.allowed}/blobs/uploads/?mount=${sha256(only)}`, "rw");
    expect(auto.status).toBe(202);
  });

  it.each([
    ["a scheme other than Basic", "Bearer abc.def.ghi"],
    ["base64 that is not", "Basic !!!not-base64!!!"],
    ["credentials without a colon", `Basic ${Buffer.from("justuser").toString("base64")}`],
    ["an empty user", `Basic ${Buffer.from(":pw").toString("base64")}`],
    ["a user name containing ':'", basic("rw:x", "rw-pass")],
    ["no credentials after the scheme", "Basic"],
  ])("answers %s with 401 and a reason", async (_label, header) => {
    const res = await fetch(`${k.url}/v2/${repos.allowed}/tags/list`, { headers: { Authorization: header } });
    expect(res.status).toBe(401);
    const body = (await res.json()) as { errors: { code: string; message: string }[] };
    expect(body.errors[0]!.code).toBe("UNAUTHORIZED");
    expect(body.errors[0]!.message.length).toBeGreaterThan(10);
  });

  it("answers huge headers with 431 and a JSON reason, never a 500", async () => {
    const status = await new Promise<{ code: number; body: string }>((resolve, reject) => {
      const req = request(
        `${k.url}/v2/`,
        { headers: { Authorization: `Basic ${"A".repeat(40_000)}` } },
        (res) => {
          let body = "";
          res.on("data", (d) => {
            body += d;
          });
          res.on("end", () => resolve({ code: res.statusCode ?? 0, body }));
        },
      );
      req.on("error", reject);
      req.end();
    });
    expect(status.code).toBe(431);
    expect(JSON.parse(status.body).errors[0].message).toMatch(/headers are too large/);
  });
});
