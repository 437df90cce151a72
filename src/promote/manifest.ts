import { readFileSync } from "node:fs";
import {
  type Document,
  isAlias,
  isMap,
  isScalar,
  isSeq,
  LineCounter,
  type Node,
  type Pair,
  parseDocument,
  type YAMLMap,
} from "yaml";
import { isValidName } from "../oci/names.ts";
import { registryNameProblem } from "./edges.ts";

/** One entry of `registries:`; the name may carry a path (`us.gcr.io/k8s-artifacts-prod/foo`). */
export interface RegistryEntry {
  name: string;
  serviceAccount?: string;
  src: boolean;
}

/** One entry of `images:`: a repository name below each registry and its digests with their tags. */
export interface ImageEntry {
  name: string;
  /** Digest → tags, in file order; no tags: promote by digest only. */
  dmap: Map<string, string[]>;
}

/** A promoter manifest, plain or assembled from a thin manifest and its images.yaml. */
export interface PromoterManifest {
  /** The file that named the registries. */
  file: string;
  /** For a thin manifest, the file that listed the images. */
  imagesFile?: string;
  registries: RegistryEntry[];
  images: ImageEntry[];
  source: RegistryEntry;
}

/** A problem in a manifest, with where it is. */
export interface ManifestProblem {
  file: string;
  line?: number;
  message: string;
}

/** Manifests that cannot be used; every problem found is listed, each naming file, image and field. */
export class ManifestError extends Error {
  constructor(readonly problems: ManifestProblem[]) {
    super(problems.map(formatProblem).join("\n"));
    this.name = "ManifestError";
  }
}

export function formatProblem(p: ManifestProblem): string {
  return `${p.file}${p.line ? `:${p.line}` : ""}: ${p.message}`;
}

// The promoter's own patterns (promoter/image/schema): stricter than the OCI spec's.
const digestPattern = /^sha256:[0-9a-f]{64}$/;
const tagPattern = /^\w[\w.-]{0,127}$/;

// The promoter reads YAML 1.1 (yaml.v2), where these spell booleans.
const trueWords = /^(y|yes|true|on)$/i;
const falseWords = /^(n|no|false|off)$/i;

const maxAliases = 100;

/** Reads YAML where every scalar stays a string, so `1.10` is the tag "1.10", not a number. */
class YamlFile {
  readonly problems: ManifestProblem[] = [];
  private readonly lines = new LineCounter();
  readonly root: Node | null = null;
  /** Read and parsed: further problems are about the content. */
  readonly ok: boolean = false;

  constructor(readonly file: string) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (err) {
      this.problems.push({ file, message: `cannot read: ${(err as Error).message}` });
      return;
    }
    const doc = parseDocument(text, { schema: "failsafe", uniqueKeys: true, lineCounter: this.lines });
    for (const e of doc.errors) {
      this.problems.push({
        file,
        line: e.linePos?.[0].line,
        message: `not valid YAML: ${e.message.split("\n")[0]}`,
      });
    }
    if (doc.errors.length === 0) {
      const before = this.problems.length;
      this.root = this.expand(doc, doc.contents as Node | null, new Set());
      this.ok = this.problems.length === before;
    }
  }

  private aliases = 0;

  /**
   * Resolves aliases (`*name`) and merge keys (`<<: *name`) as the promoter's YAML 1.1 reader
   * does, so that the walk below sees plain maps, lists and strings. Aliases are counted: a few
   * hundred bytes of nested aliases can otherwise stand for millions of edges.
   */
  private expand(doc: Document, node: Node | null, open: Set<Node>): Node | null {
    if (node == null) return node;
    if (isAlias(node)) {
      const target = node.resolve(doc) as Node | undefined;
      if (++this.aliases > maxAliases) {
        if (this.aliases === maxAliases + 1)
          this.problem(node, `more than ${maxAliases} YAML aliases; write the entries out`);
        return null;
      }
      if (!target) {
        this.problem(node, `alias *${node.source} names no anchor`);
        return null;
      }
      if (open.has(target)) {
        this.problem(node, `alias *${node.source} refers to a node that contains it`);
        return null;
      }
      return this.expand(doc, target, open);
    }
    if (isSeq(node)) {
      open.add(node);
      node.items = node.items.map((i) => this.expand(doc, i as Node | null, open));
      open.delete(node);
    } else if (isMap(node)) {
      open.add(node);
      const merged: Pair[] = [];
      const own: Pair[] = [];
      for (const pair of node.items) {
        pair.value = this.expand(doc, pair.value as Node | null, open);
        // A quoted "<<" is an ordinary key.
        if (isScalar(pair.key) && pair.key.value === "<<" && pair.key.type === "PLAIN") {
          const from = pair.value as Node | null;
          const maps = isSeq(from) ? from.items : [from];
          for (const m of maps) {
            if (isMap(m)) merged.push(...(m.items as Pair[]));
            else this.problem(pair.key as Node, "<<: merges a map or a list of maps");
          }
        } else own.push(pair);
      }
      // Keys written in the map win over merged ones; of merged maps, the first wins (YAML 1.1).
      const keyOf = (p: Pair) => (isScalar(p.key) ? String(p.key.value) : p.key);
      const have = new Set(own.map(keyOf));
      for (const p of merged) {
        if (have.has(keyOf(p))) continue;
        have.add(keyOf(p));
        own.push(p);
      }
      node.items = own;
      open.delete(node);
    }
    return node;
  }

  lineOf(node: Node | null | undefined): number | undefined {
    return node?.range ? this.lines.linePos(node.range[0]).line : undefined;
  }

  problem(node: Node | null | undefined, message: string): void {
    const line = this.lineOf(node);
    this.problems.push(line ? { file: this.file, line, message } : { file: this.file, message });
  }

  /** The entries of a map, refusing keys not in `known` (the promoter unmarshals strictly). */
  entries(map: YAMLMap, where: string, known: string[]): Map<string, Node | null> {
    const out = new Map<string, Node | null>();
    for (const pair of map.items) {
      const key = isScalar(pair.key) ? String(pair.key.value) : undefined;
      if (key === undefined || !known.includes(key)) {
        this.problem(
          pair.key as Node,
          `${where}: unknown field '${key ?? "?"}' (known: ${known.join(", ")})`,
        );
        continue;
      }
      out.set(key, (pair.value as Node | null) ?? null);
    }
    return out;
  }

  /** A scalar's text; empty and null (`~`, nothing) read as "". */
  text(node: Node | null | undefined, where: string): string | undefined {
    if (node == null) return "";
    if (isScalar(node)) {
      const v = node.value;
      return v == null || v === "~" || v === "null" ? "" : String(v);
    }
    this.problem(node, `${where}: want a string, not a ${isSeq(node) ? "list" : "map"}`);
    return undefined;
  }
}

function parseRegistries(y: YamlFile, node: Node | null | undefined): RegistryEntry[] {
  const out: RegistryEntry[] = [];
  if (node == null) return out;
  if (!isSeq(node)) {
    y.problem(node, "registries: want a list of {name, src, service-account}");
    return out;
  }
  node.items.forEach((item, i) => {
    const where = `registries[${i}]`;
    if (!isMap(item)) {
      y.problem(item as Node, `${where}: want a map with name, src and service-account`);
      return;
    }
    const fields = y.entries(item, where, ["name", "service-account", "src"]);
    const name = (y.text(fields.get("name"), `${where}: name`) ?? "").replace(/\/+$/, "");
    const entry: RegistryEntry = { name, src: false };
    if (name === "") y.problem(item, `${where}: 'name' field cannot be empty`);
    const sa = y.text(fields.get("service-account"), `${where} (${name}): service-account`);
    if (sa) entry.serviceAccount = sa;
    const src = fields.has("src") ? y.text(fields.get("src"), `${where} (${name}): src`) : "";
    if (src && trueWords.test(src)) entry.src = true;
    else if (src && !falseWords.test(src)) {
      y.problem(fields.get("src"), `${where} (${name}): src: want true or false, not '${src}'`);
    }
    const bad = name === "" ? undefined : registryNameProblem(name);
    if (bad) y.problem(item, `${where}: name: ${bad}`);
    out.push(entry);
  });
  return out;
}

function parseImages(y: YamlFile, node: Node | null | undefined, field: string): ImageEntry[] {
  const out: ImageEntry[] = [];
  if (node == null) return out;
  if (!isSeq(node)) {
    y.problem(node, `${field}: want a list of {name, dmap}`);
    return out;
  }
  node.items.forEach((item, i) => {
    let where = `${field}[${i}]`;
    if (!isMap(item)) {
      y.problem(item as Node, `${where}: want a map with name and dmap`);
      return;
    }
    const name = y.text(item.get("name", true) as Node | undefined, `${where}: name`) ?? "";
    if (name) where = `${where} (image ${name})`;
    const fields = y.entries(item, where, ["name", "dmap"]);
    if (name === "") y.problem(item, `${where}: 'name' field cannot be empty`);
    else {
      if (!isValidName(name)) {
        y.problem(
          fields.get("name"),
          `${where}: name: not a valid repository path (lowercase, digits, . _ - separators, / between components)`,
        );
      }
    }
    const dmap = new Map<string, string[]>();
    const dmapNode = fields.get("dmap");
    if (dmapNode != null && !isMap(dmapNode))
      y.problem(dmapNode, `${where}: dmap: want a map of digest to tags`);
    else if (dmapNode != null) {
      for (const pair of dmapNode.items) {
        const digest = isScalar(pair.key) ? String(pair.key.value) : "";
        if (!digestPattern.test(digest)) {
          y.problem(
            pair.key as Node,
            `${where}: dmap: invalid digest '${digest}' (want sha256: and 64 lowercase hex digits)`,
          );
          continue;
        }
        dmap.set(digest, parseTags(y, pair.value as Node | null, `${where}: dmap: ${digest}`));
      }
    }
    if (dmap.size === 0 && !(dmapNode != null && isMap(dmapNode) && dmapNode.items.length > 0)) {
      y.problem(item, `${where}: 'dmap' field cannot be empty`);
    }
    out.push({ name, dmap });
  });
  return out;
}

function parseTags(y: YamlFile, node: Node | null, where: string): string[] {
  if (node == null || (isScalar(node) && (node.value == null || node.value === ""))) return [];
  if (!isSeq(node)) {
    y.problem(node, `${where}: want a list of tags, like ["v1.0"] or []`);
    return [];
  }
  const tags: string[] = [];
  for (const t of node.items) {
    const tag = y.text(t as Node, `${where}: tag`);
    if (tag === undefined) continue;
    if (!tagPattern.test(tag)) {
      y.problem(
        t as Node,
        `${where}: invalid tag '${tag}' (a word character, then up to 127 of word characters, . and -)`,
      );
    } else if (!tags.includes(tag)) tags.push(tag);
  }
  return tags;
}

/** The promoter's checks on the registries: some, each named, exactly one source. */
function checkRegistries(
  y: YamlFile,
  registries: RegistryEntry[],
  node: Node | null | undefined,
): RegistryEntry | undefined {
  if (registries.length === 0) {
    y.problem(node, "'registries' field cannot be empty");
    return undefined;
  }
  const sources = registries.filter((r) => r.src);
  if (sources.length > 1) {
    y.problem(
      node,
      `cannot have more than 1 source registry (src: true on ${sources.map((s) => s.name).join(", ")})`,
    );
  }
  if (sources.length === 0) y.problem(node, "source registry must be set (mark one registry with src: true)");
  const seen = new Set<string>();
  for (const r of registries) {
    // Host names are case-insensitive: GCR.io/p and gcr.io/p are one registry.
    const key = r.name.replace(/^[^/]+/, (h) => h.toLowerCase());
    if (r.name && seen.has(key)) y.problem(node, `registries: '${r.name}' is listed twice`);
    seen.add(key);
  }
  return sources.length === 1 ? sources[0] : undefined;
}

/** Newer promoters check provenance before copying; passing over such a policy would fail open. */
function refuseProvenance(y: YamlFile, fields: Map<string, Node | null>): void {
  if (fields.has("provenance")) {
    y.problem(
      fields.get("provenance"),
      "provenance: provenance policies are not supported by kagami promote; verify provenance in an earlier step and drop the field",
    );
  }
}

/**
 * The top-level map of a manifest file with the registries checked: `kind` names it in messages,
 * `known` lists its fields besides `registries` and `provenance`.
 */
function readTopLevel(
  y: YamlFile,
  kind: string,
  known: string[],
): { fields: Map<string, Node | null>; registries: RegistryEntry[]; source?: RegistryEntry } {
  let fields = new Map<string, Node | null>();
  if (y.root != null && !isMap(y.root))
    y.problem(y.root, `want a map with registries${known.length ? ` and ${known.join(", ")}` : ""}`);
  else if (y.root != null) fields = y.entries(y.root, kind, ["registries", ...known, "provenance"]);
  refuseProvenance(y, fields);
  const registries = parseRegistries(y, fields.get("registries"));
  const source = y.ok ? checkRegistries(y, registries, fields.get("registries") ?? y.root) : undefined;
  return source ? { fields, registries, source } : { fields, registries };
}

function finish(
  manifest: Omit<PromoterManifest, "source">,
  source: RegistryEntry | undefined,
  problems: ManifestProblem[],
): PromoterManifest {
  if (problems.length > 0 || !source) throw new ManifestError(problems);
  return { ...manifest, source };
}

/** A plain manifest: `registries:` and `images:` in one file. */
export function loadPlainManifest(file: string): PromoterManifest {
  const y = new YamlFile(file);
  const { fields, registries, source } = readTopLevel(y, "manifest", ["images"]);
  const images = parseImages(y, fields.get("images"), "images");
  return finish({ file, registries, images }, source, y.problems);
}

/** A thin manifest (registries only) and the images.yaml beside it in the images tree. */
export function loadThinManifest(file: string, imagesFile: string): PromoterManifest {
  const y = new YamlFile(file);
  // imagesPath is deprecated in the promoter and does nothing there either.
  const { registries, source } = readTopLevel(y, "thin manifest", ["imagesPath"]);
  const imgs = new YamlFile(imagesFile);
  const images = parseImages(imgs, imgs.root, "images");
  return finish({ file, imagesFile, registries, images }, source, [...y.problems, ...imgs.problems]);
}
