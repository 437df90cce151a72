/**
 * Tag filters through the mirror (issue 12, items 3, 5, 7): zot's lenient versions and Go regexes
 * on demand and in `kagami sync`, and cosign-style signature tags served and copied with the image
 * they sign. A real distribution upstream.
 */
import { execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningDistribution, startDistribution } from "../helpers/distribution.ts";
import { kagamiBin, type RunningKagami, startKagami } from "../helpers/kagami.ts";
import { ociManifest, pushBlob, pushImage, sha256 } from "../helpers/push.ts";
import { hasTool } from "../helpers/tools.ts";

const run = promisify(execFile);
const upstreamTags = ["4.0.0", "4.1.0-rc1", "4.2.1", "v5.0.0", "latest", "3.9.9", "1.4.2", "22.04"];
const accessoryTag = (digest: string, suffix: string) => `${digest.replace(":", "-")}.${suffix}`;

/** A cosign-style accessory: an OCI manifest with one simple-signing layer, under `sha256-<hex>.<suffix>`. */
async function pushAccessory(base: string, repo: string, subject: string, suffix: string): Promise<string> {
  const payload = Buffer.from(
    JSON.stringify({ critical: { image: { "docker-manifest-digest": subject }, type: suffix } }),
  );
  const config = Buffer.from("{}");
  await pushBlob(base, repo, payload);
  await pushBlob(base, repo, config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: ociManifest,
      config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: sha256(config), size: 2 },
      layers: [
        {
          mediaType: "application/vnd.dev.cosign.simplesigning.v1+json",
          digest: sha256(payload),
          size: payload.length,
          annotations: { "dev.cosignproject.cosign/signature": "MEUCIQ-not-a-real-signature" },
        },
      ],
    }),
  );
  const res = await fetch(`${base}/v2/${repo}/manifests/${accessoryTag(subject, suffix)}`, {
    method: "PUT",
    body: manifest,
    headers: { "Content-Type": ociManifest },
  });
  expect(res.status).toBe(201);
  return sha256(manifest);
}

async function get(url: string): Promise<{ status: number; digest: string | null; message: string }> {
  const res = await fetch(url, { headers: { Accept: ociManifest } });
  const body = await res.text();
  const message = res.ok
    ? ""
    : ((JSON.parse(body) as { errors: { message: string }[] }).errors[0]?.message ?? "");
  return { status: res.status, digest: res.headers.get("docker-content-digest"), message };
}

describe.runIf(hasTool("docker-registry"))("tag filters and signature tags through the mirror", () => {
  let upstream: RunningDistribution;
  let empty: RunningDistribution;
  const servers: RunningKagami[] = [];
  const digests: Record<string, string> = {};
  const sigs: Record<string, string> = {};

  const reg = (url: string, extra: Record<string, unknown>) => ({
    urls: [url],
    tlsVerify: false,
    maxRetries: 0,
    retryDelay: "10ms",
    negativeCacheTTL: "0s",
    ...extra,
  });
  async function mirror(registries: Record<string, unknown>[]) {
    const k = await startKagami({ config: { extensions: { sync: { enable: true, registries } } } });
    servers.push(k);
    return k;
  }
  async function sync(k: RunningKagami): Promise<string> {
    const file = join(k.rootDir, "sync-cli.json");
    writeFileSync(file, readFileSync(k.configPath, "utf8"));
    return (await run(process.execPath, [kagamiBin, "sync", "--config", file])).stdout;
  }
  async function tags(k: RunningKagami, repo: string): Promise<string[]> {
    const body = (await (await fetch(`${k.url}/v2/${repo}/tags/list`)).json()) as { tags?: string[] };
    return (body.tags ?? []).sort();
  }

  beforeAll(async () => {
    [upstream, empty] = await Promise.all([startDistribution(), startDistribution()]);
    for (const t of upstreamTags) digests[t] = (await pushImage(upstream.url, "lib/app", t)).digest;
    for (const t of ["4.2.1", "22.04", "latest"])
      sigs[t] = await pushAccessory(upstream.url, "lib/app", digests[t]!, "sig");
    sigs["4.2.1.att"] = await pushAccessory(upstream.url, "lib/app", digests["4.2.1"]!, "att");
  }, 60_000);

  afterAll(async () => {
    await Promise.all(servers.map((s) => s.destroy()));
    await Promise.all([upstream?.stop(), empty?.stop()]);
  });

  it("on demand: zot's versions pass semver, and a signed image's signature tags come with it under onlySigned", async () => {
    const k = await mirror([
      reg(upstream.url, {
        onDemand: true,
        onlySigned: true,
        content: [{ prefix: "lib/app", tags: { semver: true } }],
      }),
    ]);
    const m = (ref: string) => get(`${k.url}/v2/lib/app/manifests/${ref}`);
    expect(await m("22.04")).toMatchObject({ status: 200, digest: digests["22.04"] });
    expect(await m(accessoryTag(digests["22.04"]!, "sig"))).toMatchObject({
      status: 200,
      digest: sigs["22.04"],
    });
    // An attestation tag is served before its image was pulled (cosign asks for it first): the
    // image is fetched by its digest behind it, and a signature is not asked for a signature.
    const att = accessoryTag(digests["4.2.1"]!, "att");
    expect(await m(att)).toMatchObject({ status: 200, digest: sigs["4.2.1.att"] });
    expect(await m("4.2.1")).toMatchObject({ status: 200, digest: digests["4.2.1"] });
    // The filter still holds for the tag: latest is refused. Its signature goes with the image's
    // digest, which (as every digest reference) the tag filters do not govern.
    const latest = await m("latest");
    expect(latest.status).toBe(404);
    expect(latest.message).toContain("'latest' is not a version");
    expect(latest.message).not.toContain("allow only");
    expect((await m(accessoryTag(digests.latest!, "sig"))).status).toBe(200);
    // A signature-shaped tag of a digest upstream does not have is filtered like any tag.
    const stray = await m(`sha256-${"ab".repeat(32)}.sig`);
    expect(stray.status).toBe(404);
    expect(stray.message).toMatch(/is not a version/);
    // An unsigned version passes the filter but not onlySigned.
    expect((await m("4.0.0")).status).toBe(403);
  });

  it("on demand: Go regexes, and messages that say which filter refused a tag, behind a catch-all too", async () => {
    const k = await mirror([
      reg(empty.url, { onDemand: true }),
      reg(upstream.url, {
        onDemand: true,
        content: [{ prefix: "lib/app", tags: { regex: "^v?[[:digit:]]+\\.", excludeRegex: "(?i)-RC" } }],
      }),
    ]);
    const m = (ref: string) => get(`${k.url}/v2/lib/app/manifests/${ref}`);
    // The catch-all (first) has nothing; the filtered upstream serves what its filter lets through.
    expect(await m("v5.0.0")).toMatchObject({ status: 200, digest: digests["v5.0.0"] });
    const rc = await m("4.1.0-rc1");
    expect(rc.status).toBe(404);
    expect(rc.message).toContain("not looked for further");
    expect(rc.message).toContain("'4.1.0-rc1' matches tags.excludeRegex '(?i)-RC'");
    expect(rc.message).toContain("do not match tags.excludeRegex");
    const latest = await m("latest");
    expect(latest.message).toContain("'latest' does not match tags.regex '^v?[[:digit:]]+\\.'");
  });

  it("kagami sync keeps zot's versions and copies the signature tags of what it copies", async () => {
    const k = await mirror([reg(upstream.url, { content: [{ prefix: "lib/app", tags: { semver: true } }] })]);
    const out = await sync(k);
    expect(out).not.toMatch(/failed/);
    const versions = upstreamTags.filter((t) => t !== "latest");
    expect(await tags(k, "lib/app")).toEqual(
      [
        ...versions,
        accessoryTag(digests["4.2.1"]!, "sig"),
        accessoryTag(digests["4.2.1"]!, "att"),
        accessoryTag(digests["22.04"]!, "sig"),
      ].sort(),
    );
  });

  it("kagami sync with syncLegacyCosignTags: false leaves the signature tags out", async () => {
    const k = await mirror([
      reg(upstream.url, {
        syncLegacyCosignTags: false,
        content: [{ prefix: "lib/app", tags: { semver: true } }],
      }),
    ]);
    expect(await sync(k)).not.toMatch(/failed/);
    expect(await tags(k, "lib/app")).toEqual(upstreamTags.filter((t) => t !== "latest").sort());
  });

  it("kagami sync under onlySigned copies signed images with their signatures, and signatures added later", async () => {
    const k = await mirror([
      reg(upstream.url, { onlySigned: true, content: [{ prefix: "lib/app", tags: { semver: true } }] }),
    ]);
    const first = await sync(k);
    expect(first).not.toMatch(/skipped unsigned\s+lib\/app:sha256-/);
    expect(await tags(k, "lib/app")).toEqual(
      [
        "22.04",
        "4.2.1",
        accessoryTag(digests["4.2.1"]!, "sig"),
        accessoryTag(digests["4.2.1"]!, "att"),
        accessoryTag(digests["22.04"]!, "sig"),
      ].sort(),
    );
    // An attestation added upstream to an image already synced is copied by the next run.
    const att = await pushAccessory(upstream.url, "lib/app", digests["22.04"]!, "att");
    await sync(k);
    expect(
      await get(`${k.url}/v2/lib/app/manifests/${accessoryTag(digests["22.04"]!, "att")}`),
    ).toMatchObject({
      status: 200,
      digest: att,
    });
  });
});
