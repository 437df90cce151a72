import { describe, expect, it } from "vitest";
import type { SyncContent } from "../../src/config/config.ts";
import { parseConfig } from "../../src/config/config.ts";
import {
  accessorySubject,
  describeFilters,
  filterTags,
  isZotVersion,
  tagRefusal,
  tagVersion,
} from "../../src/sync/filters.ts";

const rule = (tags: NonNullable<SyncContent["tags"]>): SyncContent => ({
  prefix: "/x",
  stripPrefix: false,
  tags,
});
const upstreamTags = [
  "4.0.0",
  "4.1.0-rc1",
  "4.2.1",
  "v5.0.0",
  "latest",
  "3.9.9",
  "1.4.2",
  "22.04",
  "20.04.1",
  "2024.01.15",
  "1.2.3-01",
];

describe("tags.semver: true reads versions as zot's Masterminds/semver v1.5.0 NewVersion does", () => {
  it.each([
    ["4.0.0", true],
    ["4.1.0-rc1", true],
    ["4.2.1", true],
    ["v5.0.0", true],
    ["latest", false],
    ["3.9.9", true],
    ["1.4.2", true],
    ["22.04", true],
    ["20.04.1", true],
    ["2024.01.15", true],
    ["1.2.3-01", true],
    ["01.02.03", true],
    ["7", true],
    ["v1", true],
    ["1.0.0-alpha.01.-x", true],
    ["9223372036854775807", true],
    ["9223372036854775808", false],
    ["1.2.3.4", false],
    ["V1.0", false],
    ["v", false],
    ["1.0-", false],
    ["1.0-a..b", false],
    ["1.2.3_4", false],
    ["sha256-0123.sig", false],
  ])("%s → %s", (tag, expected) => {
    expect(isZotVersion(tag)).toBe(expected);
    expect(tagRefusal(tag, rule({ semver: true })) === undefined).toBe(expected);
  });

  it("keeps every version of the upstream table and drops latest", () => {
    expect(filterTags(upstreamTags, rule({ semver: true }))).toEqual(
      upstreamTags.filter((t) => t !== "latest"),
    );
  });

  it("reads lenient versions for Kagami's ranges: missing parts are 0, leading zeros dropped", () => {
    expect(tagVersion("22.04")?.version).toBe("22.4.0");
    expect(tagVersion("2024.01.15")?.version).toBe("2024.1.15");
    expect(tagVersion("1.2.3-01")?.prerelease).toEqual([1]);
    expect(filterTags(upstreamTags, rule({ semver: ">=4.0.0 <23" }))).toEqual([
      "4.0.0",
      "4.2.1",
      "v5.0.0",
      "22.04",
      "20.04.1",
    ]);
  });
});

describe("tags.regex and excludeRegex are Go (RE2) expressions, matched anywhere in the tag", () => {
  it.each([
    // Go's MatchString is unanchored, as in zot's example "4.*".
    ["4.*", ["4.0.0", "4.1.0-rc1", "4.2.1", "1.4.2", "22.04", "20.04.1", "2024.01.15"]],
    ["^4\\.", ["4.0.0", "4.1.0-rc1", "4.2.1"]],
    ["(?i)^V5", ["v5.0.0"]],
    ["^(?P<year>[[:digit:]]{2})\\.(?P<month>0[1-9]|1[0-2])(\\.[[:digit:]]+)?$", ["22.04", "20.04.1"]],
    ["\\.0\\z", ["4.0.0", "v5.0.0"]],
    ["\\Q4.\\E", ["4.0.0", "4.1.0-rc1", "4.2.1", "1.4.2", "20.04.1", "2024.01.15"]],
    ["(?s)^l.t", ["latest"]],
    ["(?<name>-)", ["4.1.0-rc1", "1.2.3-01"]],
  ])("regex %s", (regex, kept) => {
    expect(filterTags(upstreamTags, rule({ regex }))).toEqual(kept);
  });

  it("excludeRegex drops what it matches, after regex and before semver", () => {
    expect(
      filterTags(upstreamTags, rule({ regex: "^v?[45]\\.", excludeRegex: "(?i)-RC", semver: true })),
    ).toEqual(["4.0.0", "4.2.1", "v5.0.0"]);
  });

  it("an empty regex keeps no tag, as zot's filter does; an empty excludeRegex drops none", () => {
    expect(filterTags(upstreamTags, rule({ regex: "" }))).toEqual([]);
    expect(filterTags(upstreamTags, rule({ excludeRegex: "" }))).toEqual(upstreamTags);
  });

  it.each(["(a)\\1", "(?=4)", "(?!4)", "(?<=v)5", "(?<!v)5", "\\Z", "a{1001}", "x*+"])(
    "refuses %s at load time, naming the field",
    (regex) => {
      const config = (tags: object) => ({
        storage: { rootDirectory: "/tmp/x" },
        extensions: {
          sync: { registries: [{ urls: ["https://example.com"], content: [{ prefix: "a", tags }] }] },
        },
      });
      expect(() => parseConfig(config({ regex }))).toThrow(
        /registries\[0\]\.content\[0\]\.tags\.regex: must be a Go \(RE2\) regular expression/,
      );
      expect(() => parseConfig(config({ excludeRegex: regex }))).toThrow(/content\[0\]\.tags\.excludeRegex/);
    },
  );
});

describe("messages for refused tags", () => {
  it("say what a rule lets through, and why a tag failed it", () => {
    const r = rule({ regex: "^4", excludeRegex: "-rc", semver: true });
    expect(describeFilters(r)).toBe(
      "tags that match tags.regex '^4' and do not match tags.excludeRegex '-rc' and are versions (tags.semver: true)",
    );
    expect(tagRefusal("latest", r)).toBe("'latest' does not match tags.regex '^4'");
    expect(tagRefusal("4.1.0-rc1", r)).toBe("'4.1.0-rc1' matches tags.excludeRegex '-rc'");
    expect(tagRefusal("4x", r)).toMatch(/^'4x' is not a version/);
    expect(tagRefusal("v1.28.0", rule({ semver: ">=1.29.0" }))).toBe(
      "'v1.28.0' is not in tags.semver range '>=1.29.0'",
    );
    expect(describeFilters(undefined)).toBe("every tag");
  });
});

describe("cosign accessory tags", () => {
  const hex = "a".repeat(64);
  it.each([
    [`sha256-${hex}.sig`, `sha256:${hex}`],
    [`sha256-${hex}.att`, `sha256:${hex}`],
    [`sha256-${hex}.sbom`, `sha256:${hex}`],
    [`sha256-${hex}`, `sha256:${hex}`],
    [`sha256-${hex}.sig2`, undefined],
    [`sha256-${hex.slice(1)}.sig`, undefined],
    [`xsha256-${hex}.sig`, undefined],
    ["latest", undefined],
  ])("%s names %s", (tag, subject) => {
    expect(accessorySubject(tag)).toBe(subject);
  });
});
