/**
 * Sets of client networks: CIDRs written inline, or read from the range files the clouds publish
 * (AWS ip-ranges.json, GCP cloud.json) or from a plain list, one CIDR a line.
 */
import { readFileSync } from "node:fs";
import { isIP } from "node:net";

export interface Cidr {
  address: string;
  prefix: number;
  family: "ipv4" | "ipv6";
}

/** An address as Node and X-Forwarded-For write it, in the form NetworkSet compares: IPv4-mapped IPv6 is IPv4. */
export function normalizeIp(value: string): string | undefined {
  const v = value.trim();
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(v);
  if (mapped && isIP(mapped[1]!) === 4) return mapped[1];
  return isIP(v) === 0 ? undefined : v;
}

/** `10.0.0.0/8` or `2600:1f00::/24`; undefined when it is not one. A bare address is a /32 or /128. */
export function parseCidr(text: string): Cidr | undefined {
  const [addr, bits, extra] = text.trim().split("/");
  // A zone (`fe80::%eth0`) names an interface, not a network.
  if (extra !== undefined || addr === undefined || addr.includes("%")) return undefined;
  const kind = isIP(addr);
  if (kind === 0) return undefined;
  const max = kind === 4 ? 32 : 128;
  if (bits !== undefined && !/^\d{1,3}$/.test(bits)) return undefined;
  const prefix = bits === undefined ? max : Number(bits);
  if (prefix > max) return undefined;
  return { address: addr, prefix, family: kind === 4 ? "ipv4" : "ipv6" };
}

/** A range file that cannot be used: missing, not in its format, or naming a bad CIDR. */
export class NetworkFileError extends Error {
  constructor(
    readonly file: string,
    message: string,
  ) {
    super(`${file}: ${message}`);
    this.name = "NetworkFileError";
  }
}

export type NetworkFileFormat = "aws" | "gcp" | "plain";

export interface NetworkFile {
  path: string;
  format: NetworkFileFormat;
  /** AWS: keep only prefixes of these regions (e.g. `eu-west-3`). */
  regions?: string[];
  /** GCP: keep only prefixes of these scopes (e.g. `us-central1`). */
  scopes?: string[];
}

/** An IP address as one integer: 32 bits for IPv4, 128 for IPv6. The text must pass isIP. */
function ipValue(text: string, family: 4 | 6): bigint {
  if (family === 4) return text.split(".").reduce((v, o) => (v << 8n) | BigInt(Number(o)), 0n);
  let t = text.replace(/%.*$/, "");
  // A trailing dotted quad (`::ffff:1.2.3.4`) is the last two groups.
  const quad = /(\d+\.\d+\.\d+\.\d+)$/.exec(t);
  if (quad) {
    const v = ipValue(quad[1]!, 4);
    t = `${t.slice(0, -quad[1]!.length)}${(v >> 16n).toString(16)}:${(v & 0xffffn).toString(16)}`;
  }
  const [head, tail] = t.split("::") as [string, string | undefined];
  const groups = (g: string) => (g === "" ? [] : g.split(":"));
  const left = groups(head);
  const right = tail === undefined ? [] : groups(tail);
  const all = [...left, ...Array(8 - left.length - right.length).fill("0"), ...right];
  return all.reduce((v, g) => (v << 16n) | BigInt(Number.parseInt(g, 16)), 0n);
}

/** Sorted, merged [first, last] ranges of one family, searched by halving. */
class Ranges {
  private pending: [bigint, bigint][] = [];
  private firsts: bigint[] = [];
  private lasts: bigint[] = [];

  add(first: bigint, last: bigint): void {
    this.pending.push([first, last]);
  }

  private settle(): void {
    if (this.pending.length === 0) return;
    const all: [bigint, bigint][] = [
      ...this.firsts.map((f, i): [bigint, bigint] => [f, this.lasts[i]!]),
      ...this.pending,
    ].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    this.pending = [];
    this.firsts = [];
    this.lasts = [];
    for (const [f, l] of all) {
      const n = this.lasts.length;
      if (n > 0 && f <= this.lasts[n - 1]! + 1n) {
        if (l > this.lasts[n - 1]!) this.lasts[n - 1] = l;
      } else {
        this.firsts.push(f);
        this.lasts.push(l);
      }
    }
  }

  has(v: bigint): boolean {
    this.settle();
    let lo = 0;
    let hi = this.firsts.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (v < this.firsts[mid]!) hi = mid - 1;
      else if (v > this.lasts[mid]!) lo = mid + 1;
      else return true;
    }
    return false;
  }
}

/** ::ffff:0:0/96, where IPv4 addresses live in IPv6 (IPv4-mapped). */
const mappedBase = 0xffffn << 32n;

/**
 * The client networks of one rule; answers whether an address is in any of them. Ranges are kept
 * sorted and merged, so a lookup costs a binary search however many CIDRs a cloud's file holds
 * (node's BlockList compares them one by one: ~7 ms per request for AWS's ~14,000). As BlockList
 * did, IPv4 and IPv4-mapped IPv6 are one address space.
 */
export class NetworkSet {
  private readonly v4 = new Ranges();
  private readonly v6 = new Ranges();
  private count = 0;

  /** Throws on a malformed CIDR: configuration and files are checked before this is reached. */
  add(cidr: string): void {
    const c = parseCidr(cidr);
    if (!c) throw new Error(`not a CIDR: ${JSON.stringify(cidr)}`);
    const bits = c.family === "ipv4" ? 32 : 128;
    const span = (1n << BigInt(bits - c.prefix)) - 1n;
    const first = ipValue(c.address, c.family === "ipv4" ? 4 : 6) & ~span & ((1n << BigInt(bits)) - 1n);
    (c.family === "ipv4" ? this.v4 : this.v6).add(first, first + span);
    this.count++;
  }

  get size(): number {
    return this.count;
  }

  has(ip: string): boolean {
    const a = normalizeIp(ip);
    if (a === undefined) return false;
    if (isIP(a) === 4) {
      const v = ipValue(a, 4);
      return this.v4.has(v) || this.v6.has(mappedBase | v);
    }
    const v = ipValue(a, 6);
    if (this.v6.has(v)) return true;
    return v >> 32n === 0xffffn && this.v4.has(v & 0xffffffffn);
  }

  static of(cidrs: Iterable<string>): NetworkSet {
    const set = new NetworkSet();
    for (const c of cidrs) set.add(c);
    return set;
  }
}

function checked(file: string, cidrs: string[]): string[] {
  for (const c of cidrs) {
    if (!parseCidr(c)) throw new NetworkFileError(file, `${JSON.stringify(c)} is not a CIDR`);
  }
  return cidrs;
}

function parseJson(file: string, text: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new NetworkFileError(file, `not valid JSON: ${(err as Error).message}`);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v))
    throw new NetworkFileError(file, "expected a JSON object");
  return v as Record<string, unknown>;
}

function entries(file: string, doc: Record<string, unknown>, key: string): Record<string, unknown>[] {
  const list = doc[key];
  if (list === undefined) return [];
  if (!Array.isArray(list)) throw new NetworkFileError(file, `'${key}' must be a list`);
  return list.filter((e): e is Record<string, unknown> => typeof e === "object" && e !== null);
}

/** AWS ip-ranges.json: `prefixes[].ip_prefix` and `ipv6_prefixes[].ipv6_prefix`, each with a `region`. */
export function parseAwsRanges(text: string, regions?: string[], file = "ip-ranges.json"): string[] {
  const doc = parseJson(file, text);
  if (!Array.isArray(doc.prefixes))
    throw new NetworkFileError(file, "not an AWS ip-ranges.json: no 'prefixes' list");
  const wanted = regions ? new Set(regions) : undefined;
  const out = new Set<string>();
  for (const [key, field] of [
    ["prefixes", "ip_prefix"],
    ["ipv6_prefixes", "ipv6_prefix"],
  ] as const) {
    for (const e of entries(file, doc, key)) {
      if (wanted && !wanted.has(String(e.region))) continue;
      if (typeof e[field] === "string") out.add(e[field]);
    }
  }
  return checked(file, [...out]);
}

/** GCP cloud.json: `prefixes[]` with `ipv4Prefix` or `ipv6Prefix`, each with a `scope` (a region). */
export function parseGcpRanges(text: string, scopes?: string[], file = "cloud.json"): string[] {
  const doc = parseJson(file, text);
  if (!Array.isArray(doc.prefixes))
    throw new NetworkFileError(file, "not a GCP cloud.json: no 'prefixes' list");
  const wanted = scopes ? new Set(scopes) : undefined;
  const out = new Set<string>();
  for (const e of entries(file, doc, "prefixes")) {
    if (wanted && !wanted.has(String(e.scope))) continue;
    for (const field of ["ipv4Prefix", "ipv6Prefix"]) if (typeof e[field] === "string") out.add(e[field]);
  }
  return checked(file, [...out]);
}

/** One CIDR a line; blank lines and `#` comments are skipped. */
export function parsePlainRanges(text: string, file = "ranges.txt"): string[] {
  const out: string[] = [];
  for (const [i, raw] of text.split("\n").entries()) {
    const line = raw.replace(/#.*/, "").trim();
    if (line === "") continue;
    if (!parseCidr(line))
      throw new NetworkFileError(file, `line ${i + 1}: ${JSON.stringify(line)} is not a CIDR`);
    out.push(line);
  }
  return out;
}

/** Reads a range file and returns the CIDRs it holds after its filter. */
export function loadNetworkFile(f: NetworkFile): string[] {
  let text: string;
  try {
    text = readFileSync(f.path, "utf8");
  } catch (err) {
    throw new NetworkFileError(f.path, `cannot read the file: ${(err as Error).message}`);
  }
  const cidrs =
    f.format === "aws"
      ? parseAwsRanges(text, f.regions, f.path)
      : f.format === "gcp"
        ? parseGcpRanges(text, f.scopes, f.path)
        : parsePlainRanges(text, f.path);
  if (cidrs.length === 0) {
    // A filter that matches nothing (a misspelt region) would silently send nobody to the copy.
    throw new NetworkFileError(f.path, "no networks left after the region/scope filter");
  }
  return cidrs;
}
