/**
 * Redirector mode, as registry.k8s.io runs archeio: a Kagami that stores nothing, in front of a
 * CNCF distribution upstream and two "regional" blob copies (nginx serving files). Clients are
 * placed in networks with X-Forwarded-For from a trusted proxy (loopback). The table follows
 * archeio's handler tests; skopeo and podman then pull through it and get every digest right.
 */
import { copyFile, mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeClientEnv, pushLayout, run } from "../clients/common.ts";
import { type BuiltLayout, buildImageLayout, LINUX_AMD64, LINUX_ARM64 } from "../fixtures/images.ts";
import { type RunningDistribution, startDistribution } from "../helpers/distribution.ts";
import { type RunningKagami, repoRoot, startKagami } from "../helpers/kagami.ts";
import { type RunningNginx, startNginx } from "../helpers/nginx.ts";
import { hasTool } from "../helpers/tools.ts";

const fixtures = join(repoRoot, "test/fixtures/redirect");
const peers = ["docker-registry", "nginx"].every((t) => hasTool(t));
const info = "https://info.example/registry";
const privacy = "https://info.example/privacy";
const signatures = "https://signatures.example";
const sigTag = `sha256-${"da".repeat(32)}`;

interface Case {
  name: string;
  method?: string;
  path: string;
  /** X-Forwarded-For as the trusted proxy (loopback) would send it. */
  xff?: string;
  status: number;
  location?: string;
  code?: string;
}

describe.skipIf(!peers)("redirector mode", () => {
  let upstream: RunningDistribution;
  let eu: RunningNginx;
  let us: RunningNginx;
  let redirector: RunningKagami;
  let image: BuiltLayout;
  let layer: string;
  let config: string;
  let layoutDir: string;
  const up = (rest: string) => `${upstream.url}/v2/mirror/${rest}`;

  beforeAll(async () => {
    [upstream, eu, us] = await Promise.all([startDistribution(), startNginx(), startNginx()]);
    layoutDir = await mkdtemp(join(tmpdir(), "kagami-redirect-layout-"));
    image = await buildImageLayout(layoutDir, {
      tag: "v1",
      platforms: [LINUX_AMD64, LINUX_ARM64],
    });
    await pushLayout(upstream.url, "mirror/pause", image);
    const blobs = join(image.dir, "blobs", "sha256");
    // The EU copy holds every blob in archeio's layout; the US copy only configs, in a layout of its own.
    await mkdir(join(eu.root, "containers", "images"), { recursive: true });
    await mkdir(join(us.root, "blobs", "sha256"), { recursive: true });
    for (const hex of await readdir(blobs))
      await copyFile(join(blobs, hex), join(eu.root, "containers", "images", `sha256:${hex}`));
    for (const img of image.images) {
      const hex = img.configDigest.slice("sha256:".length);
      await copyFile(join(blobs, hex), join(us.root, "blobs", "sha256", hex));
    }
    layer = image.images[0]!.layers[0]!.digest;
    config = image.images[0]!.configDigest;
    redirector = await startKagami({
      config: {
        extensions: {
          redirect: {
            mode: "redirector",
            clientAddress: { trustedProxies: ["127.0.0.1/32", "::1/128"], trustedHops: 1 },
            rules: [
              {
                name: "eu",
                networks: ["127.0.0.0/8"],
                networkFiles: [{ path: join(fixtures, "ranges.txt"), format: "plain" }],
                baseUrl: eu.url,
              },
              {
                name: "us",
                networkFiles: [
                  { path: join(fixtures, "ip-ranges.json"), format: "aws", regions: ["us-east-1"] },
                  { path: join(fixtures, "cloud.json"), format: "gcp", scopes: ["us-central1"] },
                ],
                baseUrl: `${us.url}/`,
                layout: "blobs/{algorithm}/{encoded}",
              },
            ],
            check: { timeout: "2s", cacheTTL: "1h" },
            upstream: { url: upstream.url, pathPrefix: "/mirror/" },
            signatureUpstream: { url: signatures },
            pages: { "/": info, "/privacy": privacy },
          },
        },
      },
    });
  }, 120_000);

  afterAll(async () => {
    await redirector?.destroy();
    await Promise.all([upstream?.stop(), eu?.stop(), us?.stop()]);
    if (layoutDir) await rm(layoutDir, { recursive: true, force: true });
  });

  it("answers archeio's cases by method, path and client network", async () => {
    const euCopy = (d: string) => `${eu.url}/containers/images/${d}`;
    const usCopy = (d: string) => `${us.url}/blobs/sha256/${d.slice(7)}`;
    const missing = `sha256:${"a".repeat(64)}`;
    const cases: Case[] = [
      { name: "info page", path: "/", status: 307, location: info },
      { name: "privacy page", path: "/privacy", status: 307, location: privacy },
      { name: "other pages", path: "/v3/", status: 404 },
      { name: "base", path: "/v2/", status: 200 },
      { name: "base without slash", path: "/v2", status: 200 },
      { name: "base HEAD", method: "HEAD", path: "/v2", status: 200 },
      { name: "POST", method: "POST", path: "/v2/", status: 405, code: "UNSUPPORTED" },
      { name: "PUT manifest", method: "PUT", path: "/v2/pause/manifests/v1", status: 405 },
      { name: "DELETE blob", method: "DELETE", path: `/v2/pause/blobs/${layer}`, status: 405 },
      { name: "catalog", path: "/v2/_catalog", xff: "10.1.2.3", status: 404 },
      {
        name: "manifest from an EU client still goes upstream",
        path: "/v2/pause/manifests/v1",
        xff: "10.1.2.3",
        status: 307,
        location: up("pause/manifests/v1"),
      },
      {
        name: "tags, n=0",
        path: "/v2/pause/tags/list?n=0",
        status: 307,
        location: up("pause/tags/list?n=0"),
      },
      {
        name: "tags, paginated",
        path: "/v2/pause/tags/list?n=1000&after=v1.2.3",
        status: 307,
        location: up("pause/tags/list?n=1000&after=v1.2.3"),
      },
      {
        name: "EU (plain file) layer",
        path: `/v2/pause/blobs/${layer}`,
        xff: "10.1.2.3",
        status: 307,
        location: euCopy(layer),
      },
      {
        name: "EU over IPv6",
        path: `/v2/pause/blobs/${layer}`,
        xff: "2001:db8:1::5",
        status: 307,
        location: euCopy(layer),
      },
      {
        name: "HEAD like GET",
        method: "HEAD",
        path: `/v2/pause/blobs/${layer}`,
        xff: "10.1.2.3",
        status: 307,
        location: euCopy(layer),
      },
      {
        name: "US (AWS us-east-1) config",
        path: `/v2/pause/blobs/${config}`,
        xff: "10.2.9.9",
        status: 307,
        location: usCopy(config),
      },
      {
        name: "US over IPv6",
        path: `/v2/pause/blobs/${config}`,
        xff: "2001:db8:2::1",
        status: 307,
        location: usCopy(config),
      },
      {
        name: "US (GCP us-central1) config",
        path: `/v2/pause/blobs/${config}`,
        xff: "10.4.0.1",
        status: 307,
        location: usCopy(config),
      },
      {
        name: "US copy lacks the layer: upstream",
        path: `/v2/pause/blobs/${layer}`,
        xff: "10.2.9.9",
        status: 307,
        location: up(`pause/blobs/${layer}`),
      },
      {
        name: "AWS region filtered out",
        path: `/v2/pause/blobs/${config}`,
        xff: "10.3.0.1",
        status: 307,
        location: up(`pause/blobs/${config}`),
      },
      {
        name: "GCP scope filtered out",
        path: `/v2/pause/blobs/${config}`,
        xff: "10.5.0.1",
        status: 307,
        location: up(`pause/blobs/${config}`),
      },
      {
        name: "no rule: upstream",
        path: `/v2/pause/blobs/${layer}`,
        xff: "192.0.2.1",
        status: 307,
        location: up(`pause/blobs/${layer}`),
      },
      {
        name: "a client's own entry is ignored",
        path: `/v2/pause/blobs/${layer}`,
        xff: "10.1.2.3, 192.0.2.1",
        status: 307,
        location: up(`pause/blobs/${layer}`),
      },
      {
        name: "the proxy's entry counts",
        path: `/v2/pause/blobs/${layer}`,
        xff: "192.0.2.1, 10.1.2.3",
        status: 307,
        location: euCopy(layer),
      },
      {
        name: "malformed X-Forwarded-For",
        path: `/v2/pause/blobs/${layer}`,
        xff: "10.1.2.3asdf",
        status: 400,
        code: "UNSUPPORTED",
      },
      {
        name: "no header: the peer (loopback, EU)",
        path: `/v2/pause/blobs/${layer}`,
        status: 307,
        location: euCopy(layer),
      },
      {
        name: "a blob no copy has",
        path: `/v2/pause/blobs/${missing}`,
        xff: "10.1.2.3",
        status: 307,
        location: up(`pause/blobs/${missing}`),
      },
      {
        name: "not a valid digest",
        path: `/v2/pause/blobs/sha256:${"3b".repeat(64)}`,
        xff: "10.1.2.3",
        status: 307,
        location: up(`pause/blobs/sha256:${"3b".repeat(64)}`),
      },
      {
        name: "cosign .sig tag",
        path: `/v2/pause/manifests/${sigTag}.sig`,
        status: 307,
        location: `${signatures}/v2/mirror/pause/manifests/${sigTag}.sig`,
      },
      {
        name: "cosign .att tag, HEAD, nested name",
        method: "HEAD",
        path: `/v2/kubernetes/pause/manifests/${sigTag}.att`,
        status: 307,
        location: `${signatures}/v2/mirror/kubernetes/pause/manifests/${sigTag}.att`,
      },
    ];
    const got: Case[] = [];
    for (const c of cases) {
      const res = await fetch(`${redirector.url}${c.path}`, {
        method: c.method ?? "GET",
        redirect: "manual",
        headers: c.xff === undefined ? {} : { "X-Forwarded-For": c.xff },
      });
      const body = await res.text();
      const code =
        res.status >= 400 && c.method !== "HEAD"
          ? (JSON.parse(body) as { errors: { code: string }[] }).errors[0]!.code
          : undefined;
      got.push({
        ...c,
        status: res.status,
        location: res.headers.get("location") ?? undefined,
        code: c.code === undefined ? undefined : code,
      });
    }
    expect(got).toEqual(cases.map((c) => ({ ...c, location: c.location })));
  });

  it("refuses dot segments, which fetch would have removed before sending", async () => {
    for (const path of ["/v2/pause/../../x/manifests/v1", "/v2/pause/%2E%2e/blobs/sha256:00"]) {
      const status = await new Promise<number | undefined>((resolve, reject) => {
        // Options, not a URL: a URL would have its dot segments resolved before sending, as fetch does.
        const req = request({ host: "127.0.0.1", port: redirector.port, path }, (res) => {
          res.resume();
          resolve(res.statusCode);
        });
        req.on("error", reject);
        req.end();
      });
      expect(status, path).toBe(400);
    }
  });

  it("stores nothing", async () => {
    expect(await readdir(redirector.rootDir)).toEqual(["config.json"]);
  });

  describe.skipIf(!hasTool("skopeo") || !hasTool("podman"))("real clients through the redirector", () => {
    it("skopeo copy gets every digest right, with the blobs from the EU copy", async () => {
      const ce = await makeClientEnv(redirector.host);
      try {
        const dest = join(ce.dir, "out");
        await run(
          "skopeo",
          [
            "--policy",
            ce.policy,
            "copy",
            "--all",
            "--src-tls-verify=false",
            `docker://${redirector.host}/pause:v1`,
            `oci:${dest}:v1`,
          ],
          { env: ce.env },
        );
        const copied = new Set((await readdir(join(dest, "blobs", "sha256"))).map((h) => `sha256:${h}`));
        for (const d of image.blobs) expect(copied).toContain(d);
        const served = await eu.requests();
        for (const img of image.images)
          for (const l of img.layers) expect(served).toContain(`GET /containers/images/${l.digest} 200`);
      } finally {
        await ce.cleanup();
      }
    }, 120_000);

    it("podman pull gets the image and its digest", async () => {
      const ce = await makeClientEnv(redirector.host);
      try {
        const podman = (...args: string[]) => run("podman", [...ce.storageFlags, ...args], { env: ce.env });
        const ref = `${redirector.host}/pause:v1`;
        await podman("pull", "--tls-verify=false", "--arch", "arm64", ref);
        const [img] = JSON.parse((await podman("image", "inspect", ref)).stdout) as {
          Id: string;
          Digest: string;
          Architecture: string;
        }[];
        const arm = image.images.find((i) => i.platform.architecture === "arm64")!;
        expect(`sha256:${img!.Id}`).toBe(arm.configDigest);
        expect([image.digest, arm.manifestDigest]).toContain(img!.Digest);
        expect(img!.Architecture).toBe("arm64");
      } finally {
        await ce.cleanup();
      }
    }, 120_000);
  });
});
