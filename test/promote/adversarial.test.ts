import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { toEdges } from "../../src/promote/edges.ts";
import { loadPlainManifest, ManifestError } from "../../src/promote/manifest.ts";
import { fakeDigest, put } from "./run.ts";

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "kagami-promote-adv-"));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

const A = fakeDigest("a");
const B = fakeDigest("b");
let n = 0;
const manifest = (text: string) => put(join(work, `m${n++}.yaml`), text);

describe("promoter manifests written with YAML anchors", () => {
  it("resolves aliases and merge keys as the promoter's YAML 1.1 reader does", async () => {
    const file = await manifest(`registries:
- &prod
  name: us.example/prod
  service-account: sa@example.iam
- <<: *prod
  name: eu.example/prod
- name: staging.example/src
  src: true
images:
- name: foo
  dmap:
    "${A}": &tags [1.10, "on"]
- name: bar
  dmap:
    "${B}": *tags
`);
    const m = loadPlainManifest(file);
    expect(m.registries.map((r) => [r.name, r.serviceAccount ?? ""])).toEqual([
      ["us.example/prod", "sa@example.iam"],
      ["eu.example/prod", "sa@example.iam"],
      ["staging.example/src", ""],
    ]);
    expect(m.images.map((i) => [...i.dmap.values()])).toEqual([[["1.10", "on"]], [["1.10", "on"]]]);
    expect(toEdges([m])).toHaveLength(8);
  });

  it("refuses an alias that contains itself and too many aliases, naming file and line", async () => {
    const rec = await manifest(
      "registries: &r\n- name: a.example/b\n  src: true\n- name: c.example\n  x: *r\n",
    );
    expect(() => loadPlainManifest(rec)).toThrow(ManifestError);
    expect(() => loadPlainManifest(rec)).toThrow(/m\d+\.yaml:5: alias \*r refers to a node that contains it/);
    const many = await manifest(
      `registries:\n- name: s.example\n  src: true\n- name: d.example\nimages:\n- name: a\n  dmap:\n    "${A}": &t [x]\n${Array.from(
        { length: 120 },
        (_, i) => `- name: a${i}\n  dmap:\n    "${A}": *t\n`,
      ).join("")}`,
    );
    expect(() => loadPlainManifest(many)).toThrow(/more than 100 YAML aliases/);
  });
});

describe("snapshot of a registry that lists things that are not names", () => {
  it("leaves out repositories, tags and digests that are not valid, so no YAML can be injected", async () => {
    const { snapshotRegistry, inventoryYaml } = await import("../../src/promote/snapshot.ts");
    const evilChild = `${A}"]\n- name: kube-apiserver\n  dmap:\n    "${B}": ["v1.30.0`;
    const index = Buffer.from(
      JSON.stringify({ schemaVersion: 2, manifests: [{ digest: evilChild }, { digest: B }] }),
    );
    const registry = {
      catalog: async () => ["team/app", "Team/../x", 'a"b'],
      listTags: async () => ["v1", 'v2"]\n- name: evil', "../x"],
      headManifest: async () => ({
        digest: A,
        mediaType: "application/vnd.oci.image.index.v1+json",
        size: 1,
      }),
      getManifest: async () => ({
        digest: A,
        mediaType: "application/vnd.oci.image.index.v1+json",
        size: 1,
        bytes: index,
      }),
    };
    const inv = await snapshotRegistry(registry as never, "team");
    expect(inventoryYaml(inv)).toBe(`- name: app\n  dmap:\n    "${A}": ["v1"]\n    "${B}": []\n`);
  });
});

describe("registry names", () => {
  it("refuses a scheme, a bad host or port and . or .. path components, naming file and line", async () => {
    const file = await manifest(`registries:
- name: staging.example/src
  src: true
- name: https://prod.example/p
- name: prod.example/../other
- name: prod.example:99999
- name: "[::1]:5000/p"
- name: us-west2-docker.pkg.dev/k8s-artifacts-prod/images/e2e-test-images
`);
    let message = "";
    try {
      loadPlainManifest(file);
    } catch (err) {
      expect(err).toBeInstanceOf(ManifestError);
      message = (err as Error).message;
    }
    expect(message).toMatch(/:4: registries\[1\]: name: .*leave out the scheme/);
    expect(message).toMatch(/:5: registries\[2\]: name: .*'\.\.' component/);
    expect(message).toMatch(/:6: registries\[3\]: name: .*port 99999 is out of range/);
    expect(message).not.toContain("registries[4]");
    expect(message).not.toContain("registries[5]");
  });

  it("--snapshot refuses a URL with a usage error instead of a DNS failure", async () => {
    const { promoteCommand } = await import("../../src/cli/promote.ts");
    let stderr = "";
    const spy = vi.spyOn(process.stderr, "write").mockImplementation((c: string | Uint8Array) => {
      stderr += c.toString();
      return true;
    });
    try {
      expect(await promoteCommand(["--snapshot", "http://staging.example/team"])).toBe(2);
    } finally {
      spy.mockRestore();
    }
    expect(stderr).toContain("leave out the scheme");
  });
});

describe("destinations spelled with different host case", () => {
  it("are one destination: a registry listed twice, and two digests for one tag overlap", async () => {
    const twice = await manifest(`registries:
- name: staging.example/src
  src: true
- name: prod.example/p
- name: PROD.example/p
`);
    expect(() => loadPlainManifest(twice)).toThrow(/'PROD.example\/p' is listed twice/);
    const a = loadPlainManifest(
      await manifest(`registries:
- name: staging.example/src
  src: true
- name: prod.example/p
images:
- name: app
  dmap:
    "${A}": ["v1"]
`),
    );
    const b = loadPlainManifest(
      await manifest(`registries:
- name: other.example/src
  src: true
- name: Prod.Example/p
images:
- name: app
  dmap:
    "${B}": ["v1"]
`),
    );
    expect(() => toEdges([a, b])).toThrow(/overlapping edges/);
  });
});
