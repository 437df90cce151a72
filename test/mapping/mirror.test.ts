import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, readlink, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { mirrorCommand } from "../../src/cli/mirror.ts";
import {
  type BuiltLayout,
  buildImageLayout,
  LINUX_AMD64,
  LINUX_ARM64,
  type Platform,
} from "../fixtures/images.ts";
import { type RunningDistribution, startDistribution } from "../helpers/distribution.ts";
import { writeHtpasswd } from "../helpers/htpasswd.ts";
import { kagamiBin, type RunningKagami, startKagami } from "../helpers/kagami.ts";
import { makeTestPki } from "../helpers/tls.ts";
import { hasTool } from "../helpers/tools.ts";

const LINUX_ARM_V7: Platform = { architecture: "arm", os: "linux", variant: "v7" };
const accept = [
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
  "application/vnd.docker.distribution.manifest.v2+json",
].join(", ");
const haveTools = hasTool("docker-registry") && hasTool("htpasswd");

/** Runs `kagami mirror` in-process, keeping what it wrote to stdout and stderr apart. */
async function mirror(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const out = vi.spyOn(process.stdout, "write").mockImplementation((c: string | Uint8Array) => {
    stdout += c.toString();
    return true;
  });
  const err = vi.spyOn(process.stderr, "write").mockImplementation((c: string | Uint8Array) => {
    stderr += c.toString();
    return true;
  });
  try {
    return { code: await mirrorCommand(argv), stdout, stderr };
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
}

async function manifest(
  base: string,
  repo: string,
  ref: string,
): Promise<{ digest?: string; doc?: IndexDoc }> {
  const res = await fetch(`${base}/v2/${repo}/manifests/${ref}`, { headers: { accept } });
  if (res.status !== 200) return {};
  return {
    digest: res.headers.get("docker-content-digest") ?? undefined,
    doc: (await res.json()) as IndexDoc,
  };
}

interface IndexDoc {
  manifests: { digest: string; platform: { architecture: string; variant?: string } }[];
}

let work: string;
let multi: BuiltLayout;
const versions: Record<string, BuiltLayout> = {};

describe.skipIf(!haveTools)("kagami mirror against real registries", () => {
  let src: RunningDistribution;
  let dst: RunningDistribution;
  let kagami: RunningKagami | undefined;
  let file: (name: string, lines: string[]) => Promise<string>;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "kagami-mirror-"));
    file = async (name, lines) => {
      const p = join(work, name);
      await writeFile(p, `${lines.join("\n")}\n`);
      return p;
    };
    [src, dst] = await Promise.all([startDistribution(), startDistribution()]);
    if (existsSync(kagamiBin)) kagami = await startKagami();
    else if (process.env.CI === "true") throw new Error(`${kagamiBin} is missing: run npm run build first`);
    multi = await buildImageLayout(join(work, "multi"), {
      tag: "multi",
      platforms: [LINUX_AMD64, LINUX_ARM64, LINUX_ARM_V7],
    });
    const seed = async (layout: string, tag: string, to: string) => {
      const r = await mirror("--insecure", "-q", `oci:${layout}:${tag}`, to);
      if (r.code !== 0) throw new Error(r.stderr);
    };
    await seed(join(work, "multi"), "multi", `${src.host}/team/app:multi`);
    for (const v of ["1.0", "1.1", "2.0"]) {
      versions[v] = await buildImageLayout(join(work, `v${v}`), { tag: v });
      await seed(join(work, `v${v}`), v, `${src.host}/team/app:${v}`);
    }
  }, 120_000);

  afterAll(async () => {
    await kagami?.destroy();
    await src?.stop();
    await dst?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it("mirrors a mapping file, keeping digests and printing <digest> <dst>:<tag> per pushed tag", async () => {
    const f = await file("basic.txt", [
      "# release images",
      `${src.host}/team/app:multi ${dst.host}/rel/app:multi ${dst.host}/rel/app:latest`,
      "",
      `${src.host}/team/app:1.0=${dst.host}/rel/app:one   ${src.host}/team/app:1.1=${dst.host}/rel/other`,
    ]);
    const r = await mirror("--insecure", "-f", f);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim().split("\n").sort()).toEqual(
      [
        `${multi.digest} ${dst.host}/rel/app:multi`,
        `${multi.digest} ${dst.host}/rel/app:latest`,
        `${versions["1.0"]!.digest} ${dst.host}/rel/app:one`,
        `${versions["1.1"]!.digest} ${dst.host}/rel/other:1.1`,
      ].sort(),
    );
    expect((await manifest(dst.url, "rel/app", "latest")).digest).toBe(multi.digest);
    expect((await manifest(dst.url, "rel/other", "1.1")).digest).toBe(versions["1.1"]!.digest);
    expect(r.stderr).toMatch(/info: Mirrored 3 images \(0 already there, 0 failed\)/);
  });

  it("skips what the destination has unless --force", async () => {
    const args = ["--insecure", `${src.host}/team/app:1.0`, `${dst.host}/again/app:1.0`];
    expect((await mirror(...args)).code).toBe(0);
    const second = await mirror(...args);
    expect(second.code).toBe(0);
    expect(second.stdout).toBe("");
    expect(second.stderr).toMatch(/already there: 1.0/);
    expect(second.stderr).toMatch(/Mirrored 0 images \(1 already there/);
    const forced = await mirror("--force", ...args);
    expect(forced.code).toBe(0);
    expect(forced.stdout).toBe(`${versions["1.0"]!.digest} ${dst.host}/again/app:1.0\n`);
  });

  it("prints the plan and copies nothing with --dry-run", async () => {
    const r = await mirror("--insecure", "--dry-run", `${src.host}/team/app:2.0`, `${dst.host}/dry/app:2.0`);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(`${versions["2.0"]!.digest} -> 2.0  from ${src.host}/team/app:2.0`);
    expect(r.stderr).toContain("info: Dry run complete");
    expect(r.stdout).toBe("");
    expect((await manifest(dst.url, "dry/app", "2.0")).digest).toBeUndefined();
  });

  it("expands a * tag and an all-tags source into a repository", async () => {
    const wild = await mirror("--insecure", `${src.host}/team/app:1.*=${dst.host}/wild/app`);
    expect(wild.code, wild.stderr).toBe(0);
    expect(wild.stdout.trim().split("\n").sort()).toEqual(
      [
        `${versions["1.0"]!.digest} ${dst.host}/wild/app:1.0`,
        `${versions["1.1"]!.digest} ${dst.host}/wild/app:1.1`,
      ].sort(),
    );
    expect((await manifest(dst.url, "wild/app", "2.0")).digest).toBeUndefined();

    const all = await mirror("--insecure", `${src.host}/team/app`, `${dst.host}/all/app`);
    expect(all.code, all.stderr).toBe(0);
    const tags = (await (await fetch(`${dst.url}/v2/all/app/tags/list`)).json()) as { tags: string[] };
    expect(tags.tags.sort()).toEqual(["1.0", "1.1", "2.0", "multi"]);

    const tagged = await mirror("--insecure", `${src.host}/team/app:*`, `${dst.host}/all/app:x`);
    expect(tagged.code).toBe(2);
    expect(tagged.stderr).toMatch(/must be a repository without a tag/);
  });

  it("refuses bad mapping files before copying anything (exit 2, file and line named)", async () => {
    const cases: [string[], RegExp][] = [
      [
        [`${src.host}/team/app:1.0 ${dst.host}/bad/a:1`, `${src.host}/team/app:2.0`],
        /line 2: .*has no destination/,
      ],
      [
        [`${src.host}/team/app:1.0 ${dst.host}/bad/a@sha256:${"0".repeat(64)}`],
        /line 1: .*cannot name a digest/,
      ],
      [
        [`${src.host}/team/app:1.0 ${dst.host}/bad/a:1`, `${src.host}/team/app:2.0 ${dst.host}/bad/a:1`],
        /line 2: each destination tag may only be specified once/,
      ],
      [[`${src.host}/team/app:1.0 ${src.host}/team/app`], /line 1: SRC and DST may not be the same/],
    ];
    for (const [lines, message] of cases) {
      const f = await file("bad.txt", lines);
      const r = await mirror("--insecure", "-f", f);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(new RegExp(`file ${f}, ${message.source}`));
      expect(r.stdout).toBe("");
    }
    expect((await manifest(dst.url, "bad/a", "1")).digest).toBeUndefined();
    const none = await mirror("--insecure");
    expect(none.code).toBe(2);
  });

  it("fails on a missing source tag, or warns and goes on with --skip-missing", async () => {
    const f = await file("missing.txt", [
      `${src.host}/team/app:nope ${dst.host}/miss/app:nope`,
      `${src.host}/team/app:2.0 ${dst.host}/miss/app:2.0`,
    ]);
    const strict = await mirror("--insecure", "-f", f);
    expect(strict.code).toBe(1);
    expect(strict.stderr).toMatch(
      new RegExp(`file ${f}, line 1: unable to retrieve source image .*team/app:nope`),
    );
    expect((await manifest(dst.url, "miss/app", "2.0")).digest).toBeUndefined();

    const noRepo = await mirror("--insecure", `${src.host}/nothing/here:*`, `${dst.host}/miss/none`);
    expect(noRepo.code).toBe(1);
    const skipped = await mirror(
      "--insecure",
      "--skip-missing",
      `${src.host}/nothing/here:*`,
      `${dst.host}/miss/none`,
    );
    expect(skipped.code, skipped.stderr).toBe(0);
    expect(skipped.stderr).toMatch(/warning: .*nothing\/here.* does not exist and will not be mirrored/);

    const lenient = await mirror("--insecure", "--skip-missing", "-f", f);
    expect(lenient.code, lenient.stderr).toBe(0);
    expect(lenient.stderr).toMatch(/warning: .*team\/app:nope does not exist and will not be mirrored/);
    expect((await manifest(dst.url, "miss/app", "2.0")).digest).toBe(versions["2.0"]!.digest);
  });

  it("keeps going after a failed image with --continue-on-error, still exiting 1", async () => {
    const dead = `127.0.0.1:1`;
    const partly = (repo: string) =>
      file(`${repo}.txt`, [
        `${src.host}/team/app:1.1 ${dead}/gone/app:1.1`,
        `${src.host}/team/app:1.1 ${dst.host}/${repo}/app:1.1`,
      ]);
    const stop = await mirror("--insecure", "--retry-times", "0", "-f", await partly("stopped"));
    expect(stop.code).toBe(1);
    expect(stop.stderr).toMatch(/error: file .*line 1: .*gone\/app/);

    const go = await mirror(
      "--insecure",
      "--retry-times",
      "0",
      "--continue-on-error",
      "--max-registry",
      "1",
      "-f",
      await partly("partly"),
    );
    expect(go.code).toBe(1);
    expect(go.stdout).toBe(`${versions["1.1"]!.digest} ${dst.host}/partly/app:1.1\n`);
    expect(go.stderr).toMatch(/1 failed/);
  });

  it("filters platforms unanchored as oc: linux/arm picks arm64 and arm/v7", async () => {
    const r = await mirror(
      "--insecure",
      "--filter-by-os",
      "linux/arm",
      `${src.host}/team/app:multi`,
      `${dst.host}/arm/app:multi`,
    );
    expect(r.code, r.stderr).toBe(0);
    const got = await manifest(dst.url, "arm/app", "multi");
    expect(got.digest).not.toBe(multi.digest);
    expect(
      got
        .doc!.manifests.map(
          (m) => `${m.platform.architecture}${m.platform.variant ? `/${m.platform.variant}` : ""}`,
        )
        .sort(),
    ).toEqual(["arm/v7", "arm64/v8"]);
    expect(r.stdout).toBe(`${got.digest} ${dst.host}/arm/app:multi\n`);

    const one = await mirror(
      "--insecure",
      "--filter-by-os",
      "amd64",
      `${src.host}/team/app:multi`,
      `${dst.host}/amd/app:1`,
    );
    expect(one.code).toBe(0);
    const amd = multi.images.find((i) => i.platform.architecture === "amd64")!.manifestDigest;
    expect((await manifest(dst.url, "amd/app", "1")).digest).toBe(amd);

    const kept = await mirror(
      "--insecure",
      "--filter-by-os",
      "amd64",
      "--keep-manifest-list",
      `${src.host}/team/app:multi`,
      `${dst.host}/amd/app:2`,
    );
    expect(kept.code).toBe(0);
    const list = await manifest(dst.url, "amd/app", "2");
    expect(list.doc!.manifests).toHaveLength(1);
    expect(list.doc!.manifests[0]!.digest).toBe(amd);

    const none = await mirror(
      "--insecure",
      "--filter-by-os",
      "windows",
      `${src.host}/team/app:multi`,
      `${dst.host}/win/app:1`,
    );
    expect(none.code, none.stderr).toBe(0);
    expect(none.stderr).toMatch(/filtered all images from .*team\/app:multi, skipping/);
    expect(none.stdout).toBe("");

    const bad = await mirror("--filter-by-os", "(", `${src.host}/team/app:multi`, `${dst.host}/amd/app:3`);
    expect(bad.code).toBe(2);
  });

  it("mounts blobs within one registry unless --skip-mount", async () => {
    const mounted = await mirror("--insecure", `${dst.host}/rel/app:one`, `${dst.host}/mounted/app:one`);
    expect(mounted.code, mounted.stderr).toBe(0);
    expect(mounted.stderr).toMatch(/0 blobs copied, [1-9]\d* mounted/);
    const pushed = await mirror(
      "--insecure",
      "--skip-mount",
      `${dst.host}/rel/app:one`,
      `${dst.host}/pushed/app:one`,
    );
    expect(pushed.code).toBe(0);
    expect(pushed.stderr).toMatch(/[1-9]\d* blobs copied, 0 mounted/);
  });

  it("writes and reads oc's file:// tree under --dir, OCI layouts and archives", async () => {
    const dir = join(work, "dir");
    const out = await mirror(
      "--insecure",
      "--dir",
      dir,
      `${src.host}/team/app:multi`,
      "file://mirror/app:multi",
    );
    expect(out.code, out.stderr).toBe(0);
    expect(await readlink(join(dir, "v2/mirror/app/manifests/multi"))).toBe(multi.digest);
    const stored = await readFile(join(dir, "v2/mirror/app/blobs", multi.digest));
    expect(stored.length).toBeGreaterThan(0);

    const dir2 = join(work, "dir2");
    const moved = await mirror(
      "--from-dir",
      dir,
      "--dir",
      dir2,
      "file://mirror/app:multi",
      "file://moved/app",
    );
    expect(moved.code, moved.stderr).toBe(0);
    expect(moved.stdout).toBe(`${multi.digest} file://moved/app:multi\n`);
    expect(await readlink(join(dir2, "v2/moved/app/manifests/multi"))).toBe(multi.digest);

    const archive = join(work, "app.tar");
    const back = await mirror(
      "--dir",
      dir,
      "file://mirror/app:multi",
      `oci-archive:${archive}:multi`,
      `oci:${join(work, "copy")}:multi`,
    );
    expect(back.code, back.stderr).toBe(0);
    const again = await mirror(
      "--insecure",
      `oci-archive:${archive}:multi`,
      `${dst.host}/from-archive/app:multi`,
    );
    expect(again.code, again.stderr).toBe(0);
    expect((await manifest(dst.url, "from-archive/app", "multi")).digest).toBe(multi.digest);
  });

  it("reads mappings from stdin with -f - and takes push credentials from a docker config.json", async () => {
    const htpasswd = join(work, "htpasswd");
    writeHtpasswd(htpasswd, [["robot", "pushpass"]]);
    const locked = await startDistribution({
      extraYaml: ["auth:", "  htpasswd:", "    realm: kagami-test", `    path: ${htpasswd}`].join("\n"),
    });
    try {
      const config = join(work, "config.json");
      await writeFile(
        config,
        JSON.stringify({
          auths: { [locked.host]: { auth: Buffer.from("robot:pushpass").toString("base64") } },
        }),
      );
      const mapping = `${src.host}/team/app:2.0 ${locked.host}/ci/app:2.0\n`;
      const denied = await mirror(
        "--insecure",
        "--retry-times",
        "0",
        "-a",
        join(work, "none.json"),
        `${src.host}/team/app:2.0`,
        `${locked.host}/ci/app:2.0`,
      );
      expect(denied.code).toBe(1);
      const res = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        const p = spawn(process.execPath, [kagamiBin, "mirror", "--insecure", "-a", config, "-f", "-"]);
        let stdout = "";
        let stderr = "";
        p.stdout.on("data", (d: Buffer) => (stdout += d));
        p.stderr.on("data", (d: Buffer) => (stderr += d));
        p.on("close", (code) => resolve({ code, stdout, stderr }));
        p.stdin.end(mapping);
      });
      expect(res.code, res.stderr).toBe(0);
      expect(res.stdout).toBe(`${versions["2.0"]!.digest} ${locked.host}/ci/app:2.0\n`);
    } finally {
      await locked.stop();
    }
  });

  it("mirrors to and from Kagami", async () => {
    if (!kagami) return;
    const to = await mirror("--insecure", `${src.host}/team/app:multi`, `${kagami.host}/k/app:multi`);
    expect(to.code, to.stderr).toBe(0);
    expect((await manifest(kagami.url, "k/app", "multi")).digest).toBe(multi.digest);
    const from = await mirror("--insecure", `${kagami.host}/k/app:multi=${dst.host}/from-kagami/app:multi`);
    expect(from.code, from.stderr).toBe(0);
    expect((await manifest(dst.url, "from-kagami/app", "multi")).digest).toBe(multi.digest);
    const within = await mirror("--insecure", `${kagami.host}/k/app:multi`, `${kagami.host}/k2/app:multi`);
    expect(within.code).toBe(0);
    expect(within.stderr).toMatch(/0 blobs copied, [1-9]\d* mounted/);
  });

  it("trusts a registry's CA given with --certificate-authority", async () => {
    if (!kagami) return;
    const pki = makeTestPki();
    const secure = await startKagami({ tls: { cert: pki.cert, key: pki.key } });
    try {
      const args = ["--retry-times", "0", `oci:${join(work, "v2.0")}:2.0`, `${secure.host}/tls/app:2.0`];
      const untrusted = await mirror(...args);
      expect(untrusted.code).toBe(1);
      const trusted = await mirror("--certificate-authority", pki.caCert, ...args);
      expect(trusted.code, trusted.stderr).toBe(0);
      expect(trusted.stdout).toBe(`${versions["2.0"]!.digest} ${secure.host}/tls/app:2.0\n`);
    } finally {
      await secure.destroy();
      await rm(pki.dir, { recursive: true, force: true });
    }
  });
});
