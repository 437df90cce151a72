import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OverlappingEdgesError, toEdges } from "../../src/promote/edges.ts";
import { loadPlainManifest, ManifestError } from "../../src/promote/manifest.ts";
import { loadThinManifestDir } from "../../src/promote/thin.ts";
import { fakeDigest, promote, put } from "./run.ts";

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "kagami-promote-manifest-"));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

const A = fakeDigest("a");
const B = fakeDigest("b");
let n = 0;
async function manifest(text: string): Promise<string> {
  return put(join(work, `m${n++}.yaml`), text);
}

function problems(file: string): string {
  try {
    loadPlainManifest(file);
  } catch (err) {
    expect(err).toBeInstanceOf(ManifestError);
    return (err as Error).message;
  }
  throw new Error("the manifest was accepted");
}

const registries = `registries:
- name: staging.example/src
  src: true
- name: us.example/prod/sub
  service-account: promoter@example.iam
- name: eu.example
`;

describe("promoter manifests", () => {
  it("reads a plain manifest: registries with paths, tags, digest-only entries, quoted and bare digests", async () => {
    const file = await manifest(`${registries}images:
- name: app
  dmap:
    "${A}": ["1.10", latest]
    ${B}: []
- name: team/tool
  dmap:
    "${B}":
`);
    const m = loadPlainManifest(file);
    expect(m.source.name).toBe("staging.example/src");
    expect(m.registries[1]).toEqual({
      name: "us.example/prod/sub",
      serviceAccount: "promoter@example.iam",
      src: false,
    });
    expect([...m.images[0]!.dmap]).toEqual([
      [A, ["1.10", "latest"]],
      [B, []],
    ]);
    const edges = toEdges([m]).map(
      (e) => `${e.src}/${e.name}@${e.digest.slice(7, 9)} -> ${e.dst}/${e.name}:${e.tag}`,
    );
    expect(edges.sort()).toEqual(
      [
        "staging.example/src/app@aa -> us.example/prod/sub/app:1.10",
        "staging.example/src/app@aa -> us.example/prod/sub/app:latest",
        "staging.example/src/app@bb -> us.example/prod/sub/app:",
        "staging.example/src/team/tool@bb -> us.example/prod/sub/team/tool:",
        "staging.example/src/app@aa -> eu.example/app:1.10",
        "staging.example/src/app@aa -> eu.example/app:latest",
        "staging.example/src/app@bb -> eu.example/app:",
        "staging.example/src/team/tool@bb -> eu.example/team/tool:",
      ].sort(),
    );
  });

  it("refuses two source registries, none, and an empty registry list", async () => {
    expect(
      problems(
        await manifest(
          `registries:\n- name: a.example\n  src: true\n- name: b.example\n  src: yes\nimages: []\n`,
        ),
      ),
    ).toMatch(/cannot have more than 1 source registry \(src: true on a.example, b.example\)/);
    expect(problems(await manifest(`registries:\n- name: a.example\n- name: b.example\n`))).toMatch(
      /source registry must be set/,
    );
    expect(problems(await manifest(`registries: []\nimages: []\n`))).toMatch(
      /'registries' field cannot be empty/,
    );
    expect(problems(await manifest(""))).toMatch(/'registries' field cannot be empty/);
  });

  it("refuses empty names and dmaps, naming the file, the line, the image and the field", async () => {
    const file = await manifest(`registries:
- name: ""
  src: true
- name: b.example
images:
- name: ""
  dmap:
    "${A}": []
- name: app
`);
    const msg = problems(file);
    expect(msg).toContain(`${file}:2: registries[0]: 'name' field cannot be empty`);
    expect(msg).toContain(`${file}:6: images[0]: 'name' field cannot be empty`);
    expect(msg).toContain(`${file}:9: images[1] (image app): 'dmap' field cannot be empty`);
  });

  it("refuses digests and tags the promoter refuses", async () => {
    const file = await manifest(`${registries}images:
- name: app
  dmap:
    "sha256:${"A".repeat(64)}": ["v1"]
    "sha512:${"a".repeat(128)}": ["v1"]
    "sha256:abc": []
    "${A}": [".hidden", "-x", "${"t".repeat(129)}", "ok_${"t".repeat(125)}", "a:b"]
`);
    const msg = problems(file);
    expect(msg).toContain(
      `${file}:10: images[0] (image app): dmap: invalid digest 'sha256:${"A".repeat(64)}'`,
    );
    expect(msg).toContain("dmap: invalid digest 'sha512:");
    expect(msg).toContain("dmap: invalid digest 'sha256:abc'");
    expect(msg).toContain(`images[0] (image app): dmap: ${A}: invalid tag '.hidden'`);
    expect(msg).toContain("invalid tag '-x'");
    expect(msg).toContain(`invalid tag '${"t".repeat(129)}'`);
    expect(msg).toContain("invalid tag 'a:b'");
    expect(msg).not.toContain("invalid tag 'ok_");
  });

  it("refuses unknown fields, bad YAML, bad src values, bad image names and provenance policies", async () => {
    expect(problems(await manifest(`${registries}images: []\nextra: 1\n`))).toMatch(
      /manifest: unknown field 'extra'/,
    );
    expect(problems(await manifest(`registries:\n- name: a.example\n  src: true\n  token: x\n`))).toMatch(
      /registries\[0\]: unknown field 'token'/,
    );
    expect(
      problems(await manifest(`${registries}images:\n- name: app\n  dmap: {"${A}": []}\n  tags: [x]\n`)),
    ).toMatch(/images\[0\] \(image app\): unknown field 'tags'/);
    const bad = await manifest(`registries:\n- name: a\n  src: true\n bad indent: [\n`);
    expect(problems(bad)).toMatch(new RegExp(`${bad}:\\d+: not valid YAML`));
    expect(problems(await manifest(`registries:\n- name: a.example\n  src: maybe\n`))).toMatch(
      /src: want true or false, not 'maybe'/,
    );
    expect(
      problems(await manifest(`${registries}images:\n- name: App/Upper\n  dmap: {"${A}": []}\n`)),
    ).toMatch(/images\[0\] \(image App\/Upper\): name: not a valid repository path/);
    expect(problems(await manifest(`${registries}provenance:\n  enabled: true\n`))).toMatch(
      /provenance policies are not supported/,
    );
    expect(
      problems(await manifest(`${registries}images:\n- name: app\n  dmap:\n    "${A}": "v1"\n`)),
    ).toMatch(/want a list of tags/);
  });

  it("fails overlapping edges: two digests aimed at one destination tag, across manifests too", async () => {
    const one = loadPlainManifest(
      await manifest(`${registries}images:\n- name: app\n  dmap:\n    "${A}": ["v1"]\n`),
    );
    const two = loadPlainManifest(
      await manifest(`${registries}images:\n- name: app\n  dmap:\n    "${B}": ["v1"]\n`),
    );
    expect(toEdges([one, one])).toHaveLength(2); // the same edge twice counts once
    let caught: unknown;
    try {
      toEdges([one, two]);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(OverlappingEdgesError);
    expect((caught as Error).message).toMatch(/overlapping edges detected/);
    expect((caught as Error).message).toContain(`us.example/prod/sub/app:v1 is asked to be ${A}`);
    const cli = await promote(
      "--parse-only",
      "--manifest",
      await manifest(`${registries}images:
- name: app
  dmap:
    "${A}": ["v1"]
    "${B}": ["v1"]
`),
    );
    expect(cli.code).toBe(1);
    expect(cli.stderr).toMatch(/overlapping edges detected/);
  });
});

describe("thin manifests", () => {
  const thin = `registries:\n- name: staging.example/x\n  src: true\n- name: prod.example/x\n  service-account: sa@example\n`;
  const images = `- name: app\n  dmap:\n    "${A}": ["v1"]\n`;

  it("pairs manifests/<sub>/promoter-manifest.yaml with images/<sub>/images.yaml", async () => {
    const dir = join(work, "thin-ok");
    await put(join(dir, "manifests/a/promoter-manifest.yaml"), thin);
    await put(join(dir, "images/a/images.yaml"), images);
    await put(join(dir, "images/a/OWNERS"), "approvers: []\n");
    await put(join(dir, "manifests/b/promoter-manifest.yaml"), thin.replaceAll("/x", "/y"));
    await put(join(dir, "images/b/images.yaml"), `- name: tool\n  dmap:\n    "${B}": []\n`);
    await put(join(dir, "images/orphan/images.yaml"), images);
    const { manifests, warnings } = loadThinManifestDir(dir);
    expect(manifests.map((m) => [m.source.name, m.images[0]!.name, m.imagesFile])).toEqual([
      ["staging.example/x", "app", join(dir, "images/a/images.yaml")],
      ["staging.example/y", "tool", join(dir, "images/b/images.yaml")],
    ]);
    expect(warnings.join("\n")).toContain("images/orphan: no");
    const res = await promote("--parse-only", "--thin-manifest-dir", dir);
    expect(res.code).toBe(0);
    expect(res.stdout).toContain("manifests are valid: 2 manifest(s), 2 image(s), 2 edge(s)");
    expect(res.stderr).toContain("service-account sa@example not used");
  });

  it("refuses a missing images.yaml, a manifest at the wrong depth, missing directories and an empty tree", async () => {
    const dir = join(work, "thin-bad");
    await put(join(dir, "manifests/a/promoter-manifest.yaml"), thin);
    await put(join(dir, "manifests/deep/er/promoter-manifest.yaml"), thin);
    await put(join(dir, "images/b/images.yaml"), images);
    const res = await promote("--parse-only", "--thin-manifest-dir", dir);
    expect(res.code).toBe(1);
    expect(res.stderr).toContain(`corresponding file ${join(dir, "images/a/images.yaml")} does not exist`);
    expect(res.stderr).toContain(
      `${join(dir, "manifests/deep/er/promoter-manifest.yaml")}: unexpected manifest path`,
    );

    expect((await promote("--parse-only", "--thin-manifest-dir", join(work, "nothing"))).stderr).toMatch(
      /images: missing: a thin-manifest directory holds images\/ and manifests\//,
    );
    const empty = join(work, "thin-empty");
    await put(join(empty, "images/.keep"), "");
    await put(join(empty, "manifests/.keep"), "");
    expect((await promote("--parse-only", "--thin-manifest-dir", empty)).stderr).toMatch(
      /no manifests found/,
    );
  });

  it("names the images file in errors about images", async () => {
    const dir = join(work, "thin-images-bad");
    await put(join(dir, "manifests/a/promoter-manifest.yaml"), thin);
    await put(join(dir, "images/a/images.yaml"), `- name: app\n  dmap:\n    "${A}": ["bad tag"]\n`);
    const res = await promote("--parse-only", "--thin-manifest-dir", dir);
    expect(res.code).toBe(1);
    expect(res.stderr).toContain(
      `${join(dir, "images/a/images.yaml")}:3: images[0] (image app): dmap: ${A}: invalid tag 'bad tag'`,
    );
  });
});

describe("manifest-based snapshots", () => {
  it("prints what the manifests would put below a registry, names relative to it", async () => {
    const file = await manifest(`${registries}images:
- name: app
  dmap:
    "${A}": ["v1", "latest"]
    "${B}": []
`);
    const yaml = await promote("--manifest", file, "--manifest-based-snapshot-of", "us.example/prod");
    expect(yaml.code).toBe(0);
    expect(yaml.stdout).toBe(`- name: sub/app\n  dmap:\n    "${A}": ["latest", "v1"]\n    "${B}": []\n`);
    const csv = await promote(
      "--manifest",
      file,
      "--manifest-based-snapshot-of",
      "eu.example",
      "--output",
      "csv",
    );
    expect(csv.stdout).toBe(`app@${A},app:latest\napp@${A},app:v1\napp@${B},-\n`);
    const tagged = await promote(
      "--manifest",
      file,
      "--manifest-based-snapshot-of",
      "eu.example",
      "--snapshot-tag",
      "v1",
    );
    expect(tagged.stdout).toBe(`- name: app\n  dmap:\n    "${A}": ["latest", "v1"]\n`);
    expect((await promote("--manifest", file, "--output", "csv")).stderr).toMatch(
      /--output goes with --snapshot or --manifest-based-snapshot-of/,
    );
  });
});

describe("kagami promote usage", () => {
  it("says what it needs, exit 2", async () => {
    const none = await promote();
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/needs --manifest FILE, --thin-manifest-dir DIR or --snapshot REGISTRY/);
    expect((await promote("--manifest", "a", "--thin-manifest-dir", "b")).code).toBe(2);
    expect((await promote("--manifest", "a", "--confirm", "--parse-only")).code).toBe(2);
    expect((await promote("--snapshot", "x.example", "--output", "json")).stderr).toMatch(
      /--output takes yaml or csv/,
    );
    const help = await promote("--help");
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("--thin-manifest-dir DIR");
  });

  it("reports a missing manifest file", async () => {
    const res = await promote("--parse-only", "--manifest", join(work, "absent.yaml"));
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/absent\.yaml: cannot read/);
  });
});
