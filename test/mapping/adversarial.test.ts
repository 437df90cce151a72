import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { mirrorCommand } from "../../src/cli/mirror.ts";
import { OcDirRegistry } from "../../src/layout/oc-dir.ts";
import { expandMappings, parseMappingArgs } from "../../src/mapping/mappings.ts";
import { formatMirrorRef } from "../../src/mapping/reference.ts";
import { RegistryError } from "../../src/oci/errors.ts";
import { type RunningDistribution, startDistribution } from "../helpers/distribution.ts";
import { hasTool } from "../helpers/tools.ts";

async function mirror(...argv: string[]): Promise<{ code: number; stderr: string }> {
  let stderr = "";
  const out = vi.spyOn(process.stdout, "write").mockImplementation(() => true);
  const err = vi.spyOn(process.stderr, "write").mockImplementation((c: string | Uint8Array) => {
    stderr += c.toString();
    return true;
  });
  try {
    return { code: await mirrorCommand(argv), stderr };
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
}

describe("mirror against a hostile source", () => {
  let work: string;
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "kagami-mirror-adv-"));
  });
  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it("does not take tag names a source lists that are not tags (../ would become a path)", async () => {
    const specs = parseMappingArgs(["q.io/a/b:*", "file://c/d"]);
    const { mappings, warnings } = await expandMappings(specs, async () => [
      "v1",
      "../../../../escaped",
      "v2/../../x",
    ]);
    expect(mappings.map((m) => formatMirrorRef(m.dst))).toEqual(["file://c/d:v1"]);
    expect(warnings.join("\n")).toMatch(/2 invalid tag names .*not mirrored/);
    // Every tag: the same filter.
    const all = await expandMappings(parseMappingArgs(["q.io/a/b", "q.io/c/d"]), async () => ["..", "ok"]);
    expect(all.mappings.map((m) => m.dst.tag)).toEqual(["ok"]);
  });

  it("an oc --dir tree refuses to write or read a tag that is not a tag", async () => {
    const tree = new OcDirRegistry(join(work, "tree"));
    const bytes = Buffer.from('{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}');
    await expect(tree.putManifest("c/d", "../../../../escaped", bytes)).rejects.toBeInstanceOf(RegistryError);
    expect(await readdir(work)).not.toContain("escaped");
    expect(await tree.getManifest("c/d", "../../../../etc/passwd")).toBeUndefined();
  });
});

describe.skipIf(!hasTool("docker-registry"))("mirror to a plain-HTTP registry without --insecure", () => {
  let reg: RunningDistribution;
  beforeAll(async () => {
    reg = await startDistribution();
  });
  afterAll(async () => {
    await reg?.stop();
  });

  it("advises --insecure, since a mapping has no http:// form", async () => {
    const r = await mirror("--dry-run", `${reg.host}/a/b:1`, `${reg.host}/c/d:1`);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("pass --insecure (which also allows plain HTTP)");
    expect(r.stderr).not.toContain("http://");
  });
});

describe("the mirror plan", () => {
  it("lists a job's tags in a stable order, whichever destination lookup answers first", async () => {
    const { makePlan, formatPlan } = await import("../../src/mapping/plan.ts");
    const manifest = Buffer.from(
      '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":2},"layers":[]}',
    );
    let zetaAsked!: () => void;
    const zeta = new Promise<void>((r) => {
      zetaAsked = r;
    });
    const registry = {
      getManifest: async () => ({
        digest: "",
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        size: manifest.length,
        bytes: manifest,
      }),
      // "alpha" answers only after "zeta" has: without sorting, the plan would say zeta, alpha.
      headManifest: async (_repo: string, ref: string) => {
        if (ref === "alpha") await zeta;
        else setImmediate(zetaAsked);
        return undefined;
      },
    };
    const places = { open: async (l: { repo: string }) => ({ registry, repo: l.repo }) };
    const { mappings } = await expandMappings(
      parseMappingArgs(["q.io/a/b:1", "r.io/c:alpha", "r.io/c:zeta"]),
      async () => [],
    );
    const plan = await makePlan(mappings, places as never, {
      platforms: { kind: "all" },
      keepManifestList: false,
      force: false,
      skipMissing: false,
      maxPerRegistry: 6,
    });
    expect(plan.jobs[0]?.tags).toEqual(["alpha", "zeta"]);
    expect(formatPlan(plan)).toContain("-> alpha, zeta");
  });
});
