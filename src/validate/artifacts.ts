import { createHash } from "node:crypto";
import { Agent, type Dispatcher, request } from "undici";
import { formatBytes } from "../copy/format.ts";
import { describeNetworkError } from "../remote/retry.ts";
import type { TlsMaterial } from "../remote/tls.ts";
import type { ChecksumResult, FileResult } from "./report.ts";

export interface ArtifactOptions {
  /** Base URL of the file host, e.g. `https://dl.example.org`; each path is below it. */
  base: string;
  tlsVerify: boolean;
  tls?: TlsMaterial;
  /** A file with neither `.sha256` nor `.sha512` beside it is a warning instead of a failure. */
  allowMissingChecksums: boolean;
}

const maxHops = 10;
const algorithms = ["sha256", "sha512"] as const;
const hexLength = { sha256: 64, sha512: 128 };

/** A response after redirects, with every Location followed. */
interface Fetched {
  res: Dispatcher.ResponseData;
  url: string;
  redirects: string[];
}

/** A file that could not be fetched at all (network, TLS, too many redirects). */
class FetchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "FetchError";
  }
}

async function fetchFollowing(agent: Agent, url: string): Promise<Fetched> {
  const redirects: string[] = [];
  let current = url;
  for (let hop = 0; ; hop++) {
    let res: Dispatcher.ResponseData;
    try {
      res = await request(current, {
        method: "GET",
        dispatcher: agent,
        headers: { "user-agent": "kagami-validate" },
      });
    } catch (err) {
      throw new FetchError(`GET ${current}: ${describeNetworkError(err)}`);
    }
    const location = res.headers.location;
    if ([301, 302, 303, 307, 308].includes(res.statusCode) && typeof location === "string") {
      await res.body.dump().catch(() => {});
      if (hop >= maxHops) throw new FetchError(`GET ${url}: more than ${maxHops} redirects`);
      current = new URL(location, current).href;
      redirects.push(current);
      continue;
    }
    return { res, url: current, redirects };
  }
}

/** The digest a `.sha256`/`.sha512` file publishes: its first word (`<hex>` or `<hex>  <name>`). */
export function parseChecksumFile(text: string, algorithm: "sha256" | "sha512"): string | undefined {
  const word = text.trim().split(/\s+/)[0]?.toLowerCase() ?? "";
  return word.length === hexLength[algorithm] && /^[0-9a-f]+$/.test(word) ? word : undefined;
}

/** Fetches `<url>.<algorithm>`: the published digest, undefined when there is none (404), or a problem. */
async function published(
  agent: Agent,
  url: string,
  algorithm: "sha256" | "sha512",
): Promise<{ digest?: string; problem?: string }> {
  const f = await fetchFollowing(agent, `${url}.${algorithm}`);
  if (f.res.statusCode === 404) {
    await f.res.body.dump().catch(() => {});
    return {};
  }
  const text = await f.res.body.text();
  if (f.res.statusCode !== 200) return { problem: `${url}.${algorithm} answered HTTP ${f.res.statusCode}` };
  const digest = parseChecksumFile(text.slice(0, 4096), algorithm);
  if (!digest) return { problem: `${url}.${algorithm} does not hold a ${algorithm} digest` };
  return { digest };
}

/**
 * Downloads one release file as a user would, follows redirects (recording where they went), hashes
 * it with both algorithms while it streams, and compares with the `.sha256`/`.sha512` published
 * beside it. Nothing is written to disk.
 */
export async function checkFile(agent: Agent, opts: ArtifactOptions, path: string): Promise<FileResult> {
  const url = `${opts.base.replace(/\/+$/, "")}/${path.replace(/^\/+/, "")}`;
  const result: FileResult = {
    path,
    url,
    status: "fail",
    message: "",
    size: 0,
    redirects: [],
    checksums: [],
  };
  try {
    const f = await fetchFollowing(agent, url);
    result.redirects = f.redirects;
    result.host = new URL(f.url).host;
    if (f.res.statusCode !== 200) {
      await f.res.body.dump().catch(() => {});
      result.message = `${f.url} answered HTTP ${f.res.statusCode}`;
      return result;
    }
    const hashes = { sha256: createHash("sha256"), sha512: createHash("sha512") };
    for await (const chunk of f.res.body) {
      result.size += (chunk as Buffer).length;
      hashes.sha256.update(chunk as Buffer);
      hashes.sha512.update(chunk as Buffer);
    }
    const length = Number(f.res.headers["content-length"]);
    if (Number.isSafeInteger(length) && length !== result.size) {
      result.message = `the download ended after ${result.size} of the ${length} bytes announced`;
      return result;
    }
    const problems: string[] = [];
    for (const algorithm of algorithms) {
      const actual = hashes[algorithm].digest("hex");
      const p = await published(agent, url, algorithm);
      if (p.problem) problems.push(p.problem);
      const c: ChecksumResult = { algorithm, actual, status: "missing" };
      if (p.digest) {
        c.expected = p.digest;
        c.status = p.digest === actual ? "match" : "mismatch";
      }
      result.checksums.push(c);
    }
    const mismatched = result.checksums.filter((c) => c.status === "mismatch");
    const matched = result.checksums.filter((c) => c.status === "match");
    const via = result.redirects.length ? `, served by ${result.host}` : "";
    if (mismatched.length > 0) {
      result.message = mismatched
        .map((c) => `${c.algorithm} is ${c.actual}, but ${url}.${c.algorithm} says ${c.expected}`)
        .join("; ");
    } else if (problems.length > 0) {
      result.message = problems.join("; ");
    } else if (matched.length === 0) {
      result.message = `${formatBytes(result.size)}, but neither ${url}.sha256 nor ${url}.sha512 is published`;
      if (opts.allowMissingChecksums) result.status = "warn";
    } else {
      result.status = "pass";
      result.message = `${formatBytes(result.size)}, ${matched.map((c) => c.algorithm).join(" and ")} match${via}`;
    }
  } catch (err) {
    result.message = err instanceof FetchError ? err.message : describeNetworkError(err);
  }
  return result;
}

/** An HTTP agent with the TLS settings of the registry checks. */
export function artifactAgent(opts: ArtifactOptions): Agent {
  return new Agent({
    connect: {
      rejectUnauthorized: opts.tlsVerify,
      ...(opts.tls?.ca ? { ca: opts.tls.ca } : {}),
      ...(opts.tls?.cert ? { cert: opts.tls.cert, key: opts.tls.key } : {}),
    },
    connectTimeout: 30_000,
    headersTimeout: 60_000,
    bodyTimeout: 60_000,
  });
}
