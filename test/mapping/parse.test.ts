import { describe, expect, it } from "vitest";
import { MappingError } from "../../src/mapping/errors.ts";
import { expandMappings, parseMappingArgs, parseMappingFile } from "../../src/mapping/mappings.ts";
import { formatMirrorRef, parseMirrorRef, parseSourceRef, tagMatches } from "../../src/mapping/reference.ts";

const digest = `sha256:${"a".repeat(64)}`;

function fails(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(MappingError);
    return (err as Error).message;
  }
  throw new Error("expected a MappingError");
}

describe("oc references", () => {
  it("applies Docker Hub's defaults and keeps registries with a host", () => {
    expect(formatMirrorRef(parseMirrorRef("busybox:1"))).toBe("docker.io/library/busybox:1");
    expect(formatMirrorRef(parseMirrorRef("docker.io/team/app:2"))).toBe("docker.io/team/app:2");
    expect(formatMirrorRef(parseMirrorRef("index.docker.io/x"))).toBe("docker.io/library/x");
    expect(formatMirrorRef(parseMirrorRef("quay.io/openshift/release:4.1"))).toBe(
      "quay.io/openshift/release:4.1",
    );
    expect(formatMirrorRef(parseMirrorRef("localhost:5000/a/b@" + digest))).toBe(
      `localhost:5000/a/b@${digest}`,
    );
  });

  it("reads file://, oci: and oci-archive: locations", () => {
    expect(parseMirrorRef("file://openshift/release:4.1")).toEqual({
      location: { kind: "file", repo: "openshift/release" },
      tag: "4.1",
    });
    expect(parseMirrorRef("file:///a/b")).toEqual({ location: { kind: "file", repo: "a/b" } });
    expect(parseMirrorRef("oci:/tmp/x:v1")).toEqual({ location: { kind: "oci", path: "/tmp/x" }, tag: "v1" });
    expect(parseMirrorRef("oci-archive:/tmp/x.tar")).toEqual({
      location: { kind: "oci-archive", path: "/tmp/x.tar" },
    });
  });

  it("turns a * tag into a pattern and a missing tag into every tag", () => {
    expect(parseSourceRef("quay.io/a/b:4.*")).toEqual({
      location: { kind: "registry", host: "quay.io", repo: "a/b" },
      pattern: "4.*",
    });
    expect(parseSourceRef("quay.io/a/b").allTags).toBe(true);
    expect(tagMatches("4.*", "4.10")).toBe(true);
    expect(tagMatches("4.*", "v4.10")).toBe(false);
    expect(tagMatches("*-rc", "1.0-rc")).toBe(true);
    expect(fails(() => parseSourceRef("quay.io/a*/b:1"))).toMatch(/not a valid image reference/);
  });
});

describe("mapping lines", () => {
  it("reads SRC DST DST, SRC=DST pairs, comments and blank lines, numbering lines", () => {
    const specs = parseMappingFile(
      "m.txt",
      [
        "# header comment",
        "",
        "q.io/a/b:1 r.io/c/d:1 r.io/c/e   # two destinations",
        "  q.io/a/b:2=r.io/c/d:2\tq.io/a/b:3=r.io/c/d:3",
      ].join("\n"),
    );
    expect(specs.map((s) => [formatMirrorRef(s.src), formatMirrorRef(s.dst), s.origin])).toEqual([
      ["q.io/a/b:1", "r.io/c/d:1", "file m.txt, line 3"],
      ["q.io/a/b:1", "r.io/c/e", "file m.txt, line 3"],
      ["q.io/a/b:2", "r.io/c/d:2", "file m.txt, line 4"],
      ["q.io/a/b:3", "r.io/c/d:3", "file m.txt, line 4"],
    ]);
  });

  it("names the file and line of each kind of bad line", () => {
    const bad: [string, RegExp][] = [
      ["q.io/a/b:1", /line 2: .*has no destination/],
      ["q.io/a/b:1=", /line 2: .*SRC=DST/],
      [`q.io/a/b:1 r.io/c/d@${digest}`, /line 2: .*cannot name a digest/],
      ["q.io/a/b:1* r.io/c/d:1", /line 2: .*must be a repository/],
      ["q.io/a/b r.io/c/d:1", /line 2: .*every tag.*must be a repository/],
      ["q.io/a/b:1=r.io/c/d:1 r.io/x", /line 2: .*cannot be mixed/],
      ["q.io/A/b:1 r.io/c/d", /line 2: .*not a valid image reference/],
      ["q.io/a/b:1 s3://bucket/x", /line 2: .*s3:\/\/ destinations are not supported/],
    ];
    for (const [line, message] of bad) {
      expect(fails(() => parseMappingFile("bad.txt", `# ok\n${line}\n`))).toMatch(
        new RegExp(`^file bad.txt, ${message.source}`),
      );
    }
  });

  it("refuses a destination tag written twice and SRC equal to DST, after expansion", async () => {
    const specs = [
      ...parseMappingFile("one", "q.io/a/b:1 r.io/c/d:1"),
      ...parseMappingFile("two", "\n\nq.io/a/b:2 r.io/c/d:1"),
    ];
    await expect(expandMappings(specs, async () => [])).rejects.toThrow(
      /^file two, line 3: each destination tag may only be specified once: r.io\/c\/d:1/,
    );
    await expect(
      expandMappings(parseMappingArgs(["q.io/a/b:1", "q.io/a/b"]), async () => []),
    ).rejects.toThrow(/SRC and DST may not be the same/);
    const expanded = parseMappingFile("w", "q.io/a/b:1.* r.io/c/d\nq.io/a/b:1.1 r.io/c/d:1.1");
    await expect(expandMappings(expanded, async () => ["1.0", "1.1", "2.0"])).rejects.toThrow(
      /^file w, line 2: each destination tag may only be specified once: r.io\/c\/d:1.1/,
    );
  });

  it("expands patterns and all-tags sources, a tagless DST taking the source tag", async () => {
    const { mappings } = await expandMappings(
      [...parseMappingArgs(["q.io/a/b:1.*=r.io/c/d"]), ...parseMappingArgs(["q.io/x/y", "r.io/z"])],
      async (src) =>
        src.location.kind === "registry" && src.location.repo === "a/b" ? ["1.0", "2.0", "1.1"] : ["v"],
    );
    expect(mappings.map((m) => `${formatMirrorRef(m.src)} ${formatMirrorRef(m.dst)}`)).toEqual([
      "q.io/a/b:1.0 r.io/c/d:1.0",
      "q.io/a/b:1.1 r.io/c/d:1.1",
      "q.io/x/y:v r.io/z:v",
    ]);
  });

  it("pushes by digest when a digest source has a tagless destination", async () => {
    const { mappings } = await expandMappings(
      parseMappingArgs([`q.io/a/b@${digest}`, "r.io/c/d"]),
      async () => [],
    );
    expect(mappings[0]?.dst.tag).toBeUndefined();
    expect(mappings[0]?.src.digest).toBe(digest);
  });
});
