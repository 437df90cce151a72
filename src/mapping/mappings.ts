import { isValidTag } from "../oci/names.ts";
import { at, MappingError, SourceError } from "./errors.ts";
import {
  formatMirrorRef,
  type MirrorRef,
  parseDestinationRef,
  parseSourceRef,
  type SourceSpec,
  tagMatches,
} from "./reference.ts";

/** One SRC → DST as written, before `*` and all-tags sources are expanded. */
export interface MappingSpec {
  src: SourceSpec;
  dst: MirrorRef;
  /** `file F, line N` for a mapping read from a file; absent for command-line arguments. */
  origin?: string;
}

/** One concrete SRC (tag or digest) → DST (tag, or none: by digest). */
export interface Mapping {
  src: MirrorRef;
  dst: MirrorRef;
  origin?: string;
}

/**
 * Reads arguments as oc does: `SRC=DST` pairs, or `SRC DST [DST…]`. A line that mixes the two forms
 * is refused (oc drops the plain words silently).
 */
export function parseMappingArgs(args: string[], origin?: string): MappingSpec[] {
  const pairs: [string, string][] = [];
  const plain: string[] = [];
  try {
    for (const a of args) {
      if (a === "") continue;
      const eq = a.indexOf("=");
      if (eq < 0) {
        plain.push(a);
        continue;
      }
      const src = a.slice(0, eq);
      const dst = a.slice(eq + 1);
      if (!src || !dst) throw new MappingError(`'${a}': all arguments must be valid SRC=DST mappings`);
      pairs.push([src, dst]);
    }
    if (pairs.length && plain.length) {
      throw new MappingError(
        `SRC=DST pairs cannot be mixed with SRC DST [DST…] arguments (${plain.map((p) => `'${p}'`).join(", ")})`,
      );
    }
    if (plain.length === 1) {
      throw new MappingError(
        `'${plain[0]}' has no destination: give SRC=DST pairs, or one SRC followed by one or more DST`,
      );
    }
    if (plain.length > 1) for (const d of plain.slice(1)) pairs.push([plain[0]!, d]);
    return pairs.map(([s, d]) => {
      const src = parseSourceRef(s);
      const dst = parseDestinationRef(d);
      if ((src.pattern || src.allTags) && dst.tag) {
        throw new MappingError(
          `'${s}' names ${src.pattern ? "a tag pattern" : "no tag (every tag)"}, so the destination '${d}' must be a repository without a tag`,
        );
      }
      const out: MappingSpec = { src, dst };
      if (origin) out.origin = origin;
      return out;
    });
  } catch (err) {
    throw at(origin, err);
  }
}

/** A mapping file: `#` starts a comment, blank lines are skipped, each line is parsed as arguments. */
export function parseMappingFile(name: string, text: string): MappingSpec[] {
  const out: MappingSpec[] = [];
  const lines = text.split(/\r?\n/);
  for (const [i, raw] of lines.entries()) {
    const hash = raw.indexOf("#");
    const line = (hash >= 0 ? raw.slice(0, hash) : raw).trim();
    if (!line) continue;
    out.push(...parseMappingArgs(line.split(/\s+/), `file ${name}, line ${i + 1}`));
  }
  return out;
}

/**
 * Expands `*` and all-tags sources against the source's tag list, then applies the whole-run rules:
 * a DST without tag takes the source tag, a destination tag is written once, SRC differs from DST.
 */
export async function expandMappings(
  specs: MappingSpec[],
  listTags: (src: SourceSpec) => Promise<string[] | undefined>,
): Promise<{ mappings: Mapping[]; warnings: string[] }> {
  const mappings: Mapping[] = [];
  const warnings: string[] = [];
  const written = new Map<string, string>();
  for (const spec of specs) {
    let sources: MirrorRef[] = [spec.src];
    if (spec.src.pattern || spec.src.allTags) {
      let tags: string[] | undefined;
      try {
        tags = await listTags(spec.src);
      } catch (err) {
        const where = spec.origin ? `${spec.origin}: ` : "";
        throw new SourceError(
          `${where}listing the tags of ${formatMirrorRef(spec.src)}: ${(err as Error).message}`,
        );
      }
      if (tags === undefined) {
        const where = spec.origin ? `${spec.origin}: ` : "";
        warnings.push(`${where}${formatMirrorRef(spec.src)} does not exist and will not be mirrored`);
        continue;
      }
      // A tag list comes from the source registry, which need not be trusted: a name like
      // "../../x" would become a destination tag and so a path (under --dir, or in a URL).
      const bad = tags.filter((t) => !isValidTag(t));
      if (bad.length) {
        warnings.push(
          `${spec.origin ? `${spec.origin}: ` : ""}${formatMirrorRef(spec.src)} lists ${bad.length} invalid tag name${bad.length === 1 ? "" : "s"} (${bad
            .slice(0, 3)
            .map((t) => JSON.stringify(t))
            .join(", ")}${bad.length > 3 ? ", …" : ""}); they are not mirrored`,
        );
      }
      const pattern = spec.src.pattern;
      const picked = tags.filter((t) => isValidTag(t) && (pattern ? tagMatches(pattern, t) : true)).sort();
      if (picked.length === 0) {
        warnings.push(
          `${spec.origin ? `${spec.origin}: ` : ""}no tag of ${formatMirrorRef(spec.src)} matches${pattern ? ` '${pattern}'` : ""}`,
        );
      }
      sources = picked.map((tag) => ({ location: spec.src.location, tag }));
    }
    for (const src of sources) {
      const dst: MirrorRef = { ...spec.dst };
      if (!dst.tag && src.tag) dst.tag = src.tag;
      const dstName = formatMirrorRef(dst);
      const srcName = formatMirrorRef(src);
      if (srcName === dstName) throw at(spec.origin, `SRC and DST may not be the same (${srcName})`);
      if (dst.tag) {
        const before = written.get(dstName);
        if (before !== undefined) {
          throw at(
            spec.origin,
            `each destination tag may only be specified once: ${dstName} (also from ${before})`,
          );
        }
        written.set(dstName, spec.origin ?? srcName);
      }
      const m: Mapping = { src, dst };
      if (spec.origin) m.origin = spec.origin;
      mappings.push(m);
    }
  }
  return { mappings, warnings };
}
