import { execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningDistribution, startDistribution } from "../helpers/distribution.ts";
import { kagamiBin, type RunningKagami, startKagami } from "../helpers/kagami.ts";
import { errorCode, ociManifest, pushBlob, pushImage } from "../helpers/push.ts";
import { hasTool } from "../helpers/tools.ts";

const run = promisify(execFile);

async function head(base: string, path: string): Promise<{ status: number; digest: string | null }> {
  const res = await fetch(`${base}${path}`, { method: "HEAD" });
  return { status: res.status, digest: res.headers.get("docker-content-digest") };
}

describe.runIf(hasTool("docker-registry"))(
  "mirror content rules, ns routing, onlySigned and periodic sync",
  () => {
    let upstream: RunningDistribution;
    const servers: RunningKagami[] = [];
    const images: Record<string, { digest: string; manifest: Buffer }> = {};

    async function mirror(registries: Record<string, unknown>[], extra: Record<string, unknown> = {}) {
      const k = await startKagami({
        config: { extensions: { sync: { enable: true, registries, ...extra } } },
      });
      servers.push(k);
      return k;
    }
    const reg = (extra: Record<string, unknown>) => ({
      urls: [upstream.url],
      tlsVerify: false,
      maxRetries: 0,
      retryDelay: "10ms",
      ...extra,
    });

    beforeAll(async () => {
      upstream = await startDistribution();
      for (const [repo, tag] of [
        ["repo2/repo", "v1"],
        ["team/app", "v1.2.3"],
        ["team/app", "latest"],
        ["team/app", "v2.0.0"],
        ["team/app", "v1.3.0-rc.1"],
        ["team/tool", "v1.0.0"],
        ["signed/app", "v1"],
        ["unsigned/app", "v1"],
      ] as const) {
        images[`${repo}:${tag}`] = await pushImage(upstream.url, repo, tag);
      }
      // A cosign-style signature for signed/app:v1, stored under the sha256-<hex>.sig tag.
      const subject = images["signed/app:v1"]!;
      const cfg = await pushBlob(upstream.url, "signed/app", Buffer.from("{}"));
      const sig = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: ociManifest,
          config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: cfg, size: 2 },
          layers: [],
        }),
      );
      const res = await fetch(
        `${upstream.url}/v2/signed/app/manifests/${subject.digest.replace(":", "-")}.sig`,
        {
          method: "PUT",
          body: sig,
          headers: { "Content-Type": ociManifest },
        },
      );
      expect(res.status).toBe(201);
    });
    afterAll(async () => {
      for (const s of servers) await s.destroy();
      await upstream?.stop();
    });

    it("serves upstream /repo2/repo:v1 as /repo2:v1 with destination and stripPrefix (zot's example)", async () => {
      const k = await mirror([
        reg({
          onDemand: true,
          content: [{ prefix: "/repo2/repo", destination: "/repo2", stripPrefix: true }],
        }),
      ]);
      expect(await head(k.url, "/v2/repo2/manifests/v1")).toEqual({
        status: 200,
        digest: images["repo2/repo:v1"]!.digest,
      });
      // Names outside the content rules are not mirrored at all.
      expect((await head(k.url, "/v2/repo2/repo/manifests/v1")).status).toBe(404);
    });

    it("applies tags.regex, excludeRegex and semver ranges to on-demand pulls", async () => {
      const k = await mirror([
        reg({
          onDemand: true,
          content: [{ prefix: "/team/**", tags: { regex: "^v", excludeRegex: "-rc", semver: ">=1.0.0 <2" } }],
        }),
      ]);
      expect((await head(k.url, "/v2/team/app/manifests/v1.2.3")).status).toBe(200);
      for (const tag of ["latest", "v2.0.0", "v1.3.0-rc.1"]) {
        const res = await fetch(`${k.url}/v2/team/app/manifests/${tag}`);
        expect(res.status, tag).toBe(404);
        const body = (await res.json()) as { errors: { message: string }[] };
        expect(body.errors[0]!.message).toMatch(/not mirrored: .* lets through only tags that /);
      }
      // A digest is immutable and not a tag: it passes the tag filters.
      expect((await head(k.url, `/v2/team/app/manifests/${images["team/app:latest"]!.digest}`)).status).toBe(
        200,
      );
    });

    it("routes containerd's ?ns= to the upstream with that host and stores it under the host", async () => {
      const host = new URL(upstream.url).host;
      const k = await mirror([reg({ onDemand: true })]);
      const res = await head(k.url, `/v2/team/tool/manifests/v1.0.0?ns=${host}`);
      expect(res).toEqual({ status: 200, digest: images["team/tool:v1.0.0"]!.digest });
      const local = host.replace(":", "-");
      const catalog = (await (await fetch(`${k.url}/v2/_catalog`)).json()) as { repositories: string[] };
      expect(catalog.repositories).toContain(`${local}/team/tool`);
      // The same content is reachable by its local name without ns.
      expect((await head(k.url, `/v2/${local}/team/tool/manifests/v1.0.0`)).status).toBe(200);
      // An ns no upstream answers to is a fast 404, so containerd tries its next host; it is never
      // answered from another registry under the bare name.
      expect((await head(k.url, "/v2/team/tool/manifests/v1.0.0?ns=quay.io")).status).toBe(404);
    });

    it("refuses unsigned images with onlySigned, and serves signed ones", async () => {
      const k = await mirror([reg({ onDemand: true, onlySigned: true })]);
      expect((await head(k.url, "/v2/signed/app/manifests/v1")).status).toBe(200);
      const res = await fetch(`${k.url}/v2/unsigned/app/manifests/v1`);
      expect(res.status).toBe(403);
      const body = (await res.json()) as { errors: { code: string; message: string }[] };
      expect(body.errors[0]!.code).toBe("DENIED");
      expect(body.errors[0]!.message).toMatch(/is not signed.*onlySigned/);
    });

    it("polls upstream on pollInterval: catalog globs and exact names, filtered, complete, recorded", async () => {
      const k = await mirror([
        reg({
          pollInterval: "1h",
          content: [
            {
              prefix: "/team/**",
              tags: { semver: true, excludeRegex: "-rc" },
              destination: "/synced",
              stripPrefix: true,
            },
            { prefix: "/repo2/repo" },
          ],
        }),
      ]);
      await expect
        .poll(
          async () =>
            ((await (await fetch(`${k.url}/_kagami/sync`)).json()) as { upstreams: { lastRun: unknown }[] })
              .upstreams[0]!.lastRun,
          {
            timeout: 20_000,
            interval: 250,
          },
        )
        .not.toBeNull();
      const status = (await (await fetch(`${k.url}/_kagami/sync`)).json()) as {
        upstreams: {
          lastRun: { repos: number; copied: number; errors: string[] };
          health: { ok: boolean };
        }[];
      };
      expect(status.upstreams[0]!.lastRun).toMatchObject({ repos: 3, copied: 4, errors: [] });
      expect(status.upstreams[0]!.health.ok).toBe(true);
      const tags = async (repo: string) =>
        ((await (await fetch(`${k.url}/v2/${repo}/tags/list`)).json()) as { tags?: string[] }).tags;
      expect(await tags("synced/app")).toEqual(["v1.2.3", "v2.0.0"]);
      expect(await tags("synced/tool")).toEqual(["v1.0.0"]);
      expect(await tags("repo2/repo")).toEqual(["v1"]);
      // Periodic sync copies whole images: every blob is local.
      const m = (await (await fetch(`${k.url}/v2/synced/app/manifests/v1.2.3`)).json()) as {
        layers: { digest: string }[];
      };
      for (const l of m.layers)
        expect((await head(k.url, `/v2/synced/app/blobs/${l.digest}`)).status).toBe(200);
    });

    it("kagami sync runs one pass now, with --dry-run listing what it would copy", async () => {
      const k = await mirror([reg({ content: [{ prefix: "/team/app", tags: { regex: "^v1\\.2" } }] })]);
      const cfg = JSON.parse(readFileSync(k.configPath, "utf8"));
      const file = join(k.rootDir, "sync-cli.json");
      writeFileSync(file, JSON.stringify(cfg));
      const dry = await run(process.execPath, [kagamiBin, "sync", "--config", file, "--dry-run"]);
      expect(dry.stdout).toMatch(/would copy\s+team\/app:v1\.2\.3 -> team\/app:v1\.2\.3/);
      expect(dry.stdout).toMatch(/1 tags checked, 0 copied/);
      const real = await run(process.execPath, [kagamiBin, "sync", "--config", file]);
      expect(real.stdout).toMatch(/copied\s+team\/app:v1\.2\.3/);
      expect(real.stdout).toMatch(/1 copied/);
      // The running server sees what the CLI wrote into the shared store.
      expect(await head(k.url, "/v2/team/app/manifests/v1.2.3")).toEqual({
        status: 200,
        digest: images["team/app:v1.2.3"]!.digest,
      });
      const again = await run(process.execPath, [kagamiBin, "sync", "--config", file]);
      expect(again.stdout).toMatch(/0 copied/);
      expect(await errorCode(await fetch(`${k.url}/v2/team/app/manifests/nope`))).toBe("MANIFEST_UNKNOWN");
    });
  },
);
