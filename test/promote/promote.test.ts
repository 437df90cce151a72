import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { copyCommand } from "../../src/cli/copy.ts";
import { type BuiltLayout, buildImageLayout, LINUX_AMD64, LINUX_ARM64 } from "../fixtures/images.ts";
import { cli } from "../helpers/cli.ts";
import { type RunningDistribution, startDistribution } from "../helpers/distribution.ts";
import { writeHtpasswd } from "../helpers/htpasswd.ts";
import { kagamiBin, type RunningKagami, startKagami } from "../helpers/kagami.ts";
import { hasTool } from "../helpers/tools.ts";
import { fakeDigest, promote, put } from "./run.ts";

const haveTools = hasTool("docker-registry") && hasTool("htpasswd");
const accept = [
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.v2+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
].join(", ");

/** What `repo:ref` resolves to at a registry, or undefined. */
async function digestAt(host: string, repo: string, ref: string): Promise<string | undefined> {
  const res = await fetch(`http://${host}/v2/${repo}/manifests/${ref}`, {
    method: "HEAD",
    headers: { accept },
  });
  if (res.status === 404) return undefined;
  expect(res.status).toBe(200);
  return res.headers.get("docker-content-digest") ?? undefined;
}

async function tagsAt(host: string, repo: string): Promise<string[]> {
  const res = await fetch(`http://${host}/v2/${repo}/tags/list`);
  if (res.status === 404) return [];
  return (((await res.json()) as { tags?: string[] | null }).tags ?? []).sort();
}

let work: string;
const noTls = "--tls-verify=false";

describe.skipIf(!haveTools)("kagami promote against distribution and Kagami", () => {
  let src: RunningDistribution;
  let prod: RunningDistribution;
  let kagami: RunningKagami;
  let A: BuiltLayout; // a two-platform index
  let B: BuiltLayout;
  let C: BuiltLayout; // in the source by digest only
  let E: BuiltLayout;
  let n = 0;

  async function push(image: BuiltLayout, dest: string): Promise<void> {
    const res = await cli(copyCommand, "--all", "-q", "--dest-tls-verify=false", image.ref, dest);
    expect(res.stderr).toBe("");
    expect(res.code).toBe(0);
  }

  function registries(dsts: string[]): string {
    return `registries:\n- name: ${src.host}/staging\n  src: true\n${dsts.map((d) => `- name: ${d}\n  service-account: promoter@example.iam\n`).join("")}`;
  }

  async function manifest(dsts: string[], images: string): Promise<string> {
    return put(join(work, `manifest-${n++}.yaml`), `${registries(dsts)}images:\n${images}`);
  }

  beforeAll(async () => {
    if (!existsSync(kagamiBin)) throw new Error(`${kagamiBin} is missing: run npm run build first`);
    work = await mkdtemp(join(tmpdir(), "kagami-promote-"));
    [src, prod, kagami] = await Promise.all([startDistribution(), startDistribution(), startKagami()]);
    A = await buildImageLayout(join(work, "a"), {
      tag: "a",
      platforms: [LINUX_AMD64, LINUX_ARM64],
      random: true,
    });
    B = await buildImageLayout(join(work, "b"), { tag: "b", random: true });
    C = await buildImageLayout(join(work, "c"), { tag: "c", random: true });
    E = await buildImageLayout(join(work, "e"), { tag: "e", random: true });
    await push(A, `docker://${src.host}/staging/app:v1`);
    await push(B, `docker://${src.host}/staging/app:v2`);
    await push(C, `docker://${src.host}/staging/tool@${C.digest}`);
    await push(E, `docker://${src.host}/staging/tool:e1`);
  }, 120_000);

  afterAll(async () => {
    await Promise.all([src?.stop(), prod?.stop(), kagami?.destroy()]);
    if (work) await rm(work, { recursive: true, force: true });
  });

  const dsts = () => [`${prod.host}/prod`, `${kagami.host}/mirror/prod`];
  const baseImages = () =>
    `- name: app\n  dmap:\n    "${A.digest}": ["v1", "latest"]\n    "${B.digest}": ["v2"]\n- name: tool\n  dmap:\n    "${C.digest}": []\n`;

  it("dry run by default: prints the plan and writes nothing", async () => {
    const res = await promote(noTls, "--manifest", await manifest(dsts(), baseImages()));
    expect(res.stderr).toContain("service-account promoter@example.iam not used");
    expect(res.code).toBe(0);
    expect(res.stdout).toContain(`copy     ${src.host}/staging/app@${A.digest} -> ${prod.host}/prod/app:v1`);
    expect(res.stdout).toContain(
      `copy     ${src.host}/staging/tool@${C.digest} -> ${kagami.host}/mirror/prod/tool@${C.digest}`,
    );
    expect(res.stdout).toContain("dry run: 8 to copy, 0 to tag, 0 already promoted, 0 lost");
    expect(await digestAt(prod.host, "prod/app", "v1")).toBeUndefined();
    expect(await digestAt(kagami.host, "mirror/prod/app", A.digest)).toBeUndefined();
  });

  it("--confirm copies every edge by digest, children and all, to distribution and Kagami", async () => {
    const res = await promote(noTls, "-q", "--confirm", "--manifest", await manifest(dsts(), baseImages()));
    expect(res.stderr).not.toContain("failed");
    expect(res.code).toBe(0);
    expect(res.stdout).toContain(`${A.digest} ${prod.host}/prod/app:v1`);
    expect(res.stdout).toContain(`${C.digest} ${kagami.host}/mirror/prod/tool\n`);
    for (const [host, repo] of [
      [prod.host, "prod"],
      [kagami.host, "mirror/prod"],
    ] as const) {
      expect(await digestAt(host, `${repo}/app`, "v1")).toBe(A.digest);
      expect(await digestAt(host, `${repo}/app`, "latest")).toBe(A.digest);
      expect(await digestAt(host, `${repo}/app`, "v2")).toBe(B.digest);
      for (const child of A.images)
        expect(await digestAt(host, `${repo}/app`, child.manifestDigest)).toBe(child.manifestDigest);
      expect(await digestAt(host, `${repo}/tool`, C.digest)).toBe(C.digest);
      expect(await tagsAt(host, `${repo}/tool`)).toEqual([]);
    }
  });

  it("a second run finds everything promoted", async () => {
    const file = await manifest(dsts(), baseImages());
    const res = await promote(noTls, "--confirm", "--manifest", file);
    expect(res.code).toBe(0);
    expect(res.stdout).toContain("promoting: 0 to copy, 0 to tag, 8 already promoted, 0 lost");
    expect(res.stdout).not.toContain("present");
    const verbose = await promote(noTls, "-v", "--manifest", file);
    expect(verbose.stdout).toContain(`present  ${prod.host}/prod/app:v1`);
  });

  it("adds a tag to a digest the destination already holds", async () => {
    const images = baseImages().replace(`["v1", "latest"]`, `["v1", "latest", "stable"]`);
    const dry = await promote(noTls, "--manifest", await manifest(dsts(), images));
    expect(dry.stdout).toContain(`add tag  ${prod.host}/prod/app:stable (the digest is already there)`);
    expect(dry.stdout).toContain("dry run: 0 to copy, 2 to tag");
    expect(await digestAt(prod.host, "prod/app", "stable")).toBeUndefined();
    const res = await promote(noTls, "-q", "--confirm", "--manifest", await manifest(dsts(), images));
    expect(res.code).toBe(0);
    expect(await digestAt(prod.host, "prod/app", "stable")).toBe(A.digest);
    expect(await digestAt(kagami.host, "mirror/prod/app", "stable")).toBe(A.digest);
  });

  it("reports and skips a digest the source lacks, promoting the rest", async () => {
    const lost = fakeDigest("d");
    const images = `- name: app\n  dmap:\n    "${lost}": ["v9"]\n- name: tool\n  dmap:\n    "${E.digest}": ["e1"]\n`;
    const res = await promote(
      noTls,
      "-q",
      "--confirm",
      "--manifest",
      await manifest([`${prod.host}/prod`], images),
    );
    expect(res.code).toBe(0);
    expect(res.stdout).toContain(
      `lost     ${src.host}/staging/app@${lost}: not in the source registry; skipped`,
    );
    expect(res.stderr).toContain("1 edge(s) name digests the source does not have");
    expect(await digestAt(prod.host, "prod/app", "v9")).toBeUndefined();
    expect(await digestAt(prod.host, "prod/tool", "e1")).toBe(E.digest);
  });

  it("refuses the whole run when a destination tag points at another digest, copying nothing", async () => {
    const images = `- name: app\n  dmap:\n    "${B.digest}": ["v1"]\n- name: tool\n  dmap:\n    "${E.digest}": ["e1"]\n`;
    const res = await promote(
      noTls,
      "--confirm",
      "--manifest",
      await manifest([`${kagami.host}/mirror/prod`], images),
    );
    expect(res.code).toBe(1);
    expect(res.stderr).toContain(
      `REFUSED  ${kagami.host}/mirror/prod/app:v1 points at ${A.digest}, not ${B.digest}: tag moves are not supported`,
    );
    expect(res.stderr).toMatch(/refusing the whole promotion: 1 destination tag\(s\).*nothing was copied/);
    expect(await digestAt(kagami.host, "mirror/prod/app", "v1")).toBe(A.digest);
    expect(await digestAt(kagami.host, "mirror/prod/tool", "e1")).toBeUndefined();
    expect(await digestAt(kagami.host, "mirror/prod/tool", E.digest)).toBeUndefined();
  });

  it("promotes from Kagami as the source", async () => {
    const file = await put(
      join(work, "from-kagami.yaml"),
      `registries:\n- name: ${kagami.host}/mirror/prod\n  src: true\n- name: ${prod.host}/from-kagami\nimages:\n- name: app\n  dmap:\n    "${A.digest}": ["v1"]\n`,
    );
    const res = await promote(noTls, "-q", "--confirm", "--manifest", file);
    expect(res.code).toBe(0);
    expect(await digestAt(prod.host, "from-kagami/app", "v1")).toBe(A.digest);
  });

  it("snapshots a registry path in images.yaml and csv form; the snapshot promotes as a thin manifest", async () => {
    const yaml = await promote(noTls, "--snapshot", `${src.host}/staging`);
    expect(yaml.code).toBe(0);
    expect(yaml.stdout).toContain(`- name: app\n  dmap:\n`);
    expect(yaml.stdout).toContain(`    "${A.digest}": ["v1"]\n`);
    for (const child of A.images) expect(yaml.stdout).toContain(`    "${child.manifestDigest}": []\n`);
    expect(yaml.stdout).toContain(`- name: tool\n  dmap:\n    "${E.digest}": ["e1"]\n`);
    const tagged = await promote(noTls, "--snapshot", `${src.host}/staging`, "--snapshot-tag", "e1");
    expect(tagged.stdout).toBe(`- name: tool\n  dmap:\n    "${E.digest}": ["e1"]\n`);
    const minimal = await promote(noTls, "--snapshot", `${src.host}/staging`, "--minimal-snapshot");
    expect(minimal.stdout).not.toContain(A.images[0]!.manifestDigest);

    const csv = await promote(noTls, "--snapshot", `${src.host}/staging`, "--output", "csv");
    expect(csv.stdout).toContain(`app@${A.digest},app:v1\n`);
    expect(csv.stdout).toContain(`app@${A.images[0]!.manifestDigest},-\n`);
    expect(csv.stdout).toContain(`tool@${E.digest},tool:e1\n`);

    const dir = join(work, "thin");
    await put(join(dir, "images/staging/images.yaml"), yaml.stdout);
    await put(
      join(dir, "manifests/staging/promoter-manifest.yaml"),
      `registries:\n- name: ${src.host}/staging\n  src: true\n- name: ${prod.host}/copy\n`,
    );
    expect((await promote("--parse-only", "--thin-manifest-dir", dir)).code).toBe(0);
    const res = await promote(noTls, "-q", "--confirm", "--thin-manifest-dir", dir);
    expect(res.code).toBe(0);
    const again = await promote(noTls, "--snapshot", `${prod.host}/copy`);
    expect(again.stdout).toBe(yaml.stdout);
  });

  it("takes per-registry credentials as kagami copy does, and fails closed without them", async () => {
    const htpasswd = join(work, "htpasswd");
    writeHtpasswd(htpasswd, [["carol", "s3cret"]]);
    const locked = await startDistribution({
      extraYaml: ["auth:", "  htpasswd:", "    realm: kagami-test", `    path: ${htpasswd}`].join("\n"),
    });
    try {
      const file = await manifest(
        [`${locked.host}/prod`],
        `- name: tool\n  dmap:\n    "${E.digest}": ["e1"]\n`,
      );
      const denied = await promote(noTls, "--manifest", file);
      expect(denied.code).toBe(1);
      expect(denied.stderr).toMatch(/looking up .*tool:e1 at the destination/);
      const authfile = join(work, "auth.json");
      await writeFile(
        authfile,
        JSON.stringify({
          auths: { [locked.host]: { auth: Buffer.from("carol:s3cret").toString("base64") } },
        }),
      );
      const res = await promote(noTls, "-q", "--confirm", "--dest-authfile", authfile, "--manifest", file);
      expect(res.code).toBe(0);
      const ok = await fetch(`http://${locked.host}/v2/prod/tool/manifests/e1`, {
        method: "HEAD",
        headers: { accept, authorization: `Basic ${Buffer.from("carol:s3cret").toString("base64")}` },
      });
      expect(ok.headers.get("docker-content-digest")).toBe(E.digest);
    } finally {
      await locked.stop();
    }
  });
});
