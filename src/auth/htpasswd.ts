import { createHmac, randomBytes } from "node:crypto";
import { readFileSync, unwatchFile, watchFile } from "node:fs";
import htpasswd from "htpasswd-js";
import type { Logger } from "pino";
import { verify as verifyShaCrypt } from "unixcrypt";

/** Successful checks are remembered briefly so bcrypt's cost is paid once per client, not per request. */
const cacheTtlMs = 5 * 60_000;
const cacheMax = 10_000;

export interface ParsedHtpasswd {
  users: Map<string, string>;
  /** Lines that were skipped, with why. */
  problems: string[];
}

const supported = /^(\$2[abxy]?\$|\$apr1\$|\$1\$|\{SHA\}|\$5\$|\$6\$)/;

export function parseHtpasswd(text: string): ParsedHtpasswd {
  const users = new Map<string, string>();
  const problems: string[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    const idx = line.indexOf(":");
    if (idx <= 0) {
      problems.push(`line ${i + 1}: expected user:hash`);
      return;
    }
    const user = line.slice(0, idx);
    const hash = line.slice(idx + 1);
    if (!supported.test(hash)) {
      problems.push(
        `line ${i + 1} (${user}): unsupported hash; use bcrypt (htpasswd -B), $apr1$, {SHA}, $5$ or $6$`,
      );
      return;
    }
    users.set(user, hash);
  });
  return { users, problems };
}

async function checkHash(user: string, password: string, hash: string): Promise<boolean> {
  if (hash.startsWith("$5$") || hash.startsWith("$6$")) return verifyShaCrypt(password, hash);
  return htpasswd.authenticate({ username: user, password, data: `${user}:${hash}\n` });
}

/** Accounts of an htpasswd file, re-read when the file changes; a broken file keeps the last good accounts. */
export class HtpasswdAccounts {
  private users = new Map<string, string>();
  private generation = 0;
  private readonly cacheKey = randomBytes(32);
  private readonly cache = new Map<string, { expires: number; generation: number }>();

  constructor(
    readonly path: string,
    private readonly logger: Logger,
  ) {
    this.reload(true);
    watchFile(path, { interval: 1000 }, () => this.reload(false));
  }

  private reload(initial: boolean): void {
    let text: string;
    try {
      text = readFileSync(this.path, "utf8");
    } catch (err) {
      const msg = `cannot read htpasswd file ${this.path}: ${(err as Error).message}`;
      if (initial) throw new Error(msg);
      this.logger.error(`${msg}; keeping the ${this.users.size} accounts loaded before`);
      return;
    }
    const parsed = parseHtpasswd(text);
    for (const p of parsed.problems) this.logger.warn({ file: this.path }, `htpasswd ${p}`);
    if (parsed.users.size === 0 && this.users.size > 0) {
      this.logger.error(
        { file: this.path },
        "htpasswd file has no valid account; keeping the accounts loaded before",
      );
      return;
    }
    this.users = parsed.users;
    this.generation++;
    this.cache.clear();
    if (!initial) this.logger.info({ file: this.path, accounts: this.users.size }, "htpasswd file reloaded");
  }

  get size(): number {
    return this.users.size;
  }

  /** Whether the account still exists: a token issued to a removed account must stop working. */
  has(user: string): boolean {
    return this.users.has(user);
  }

  async verify(user: string, password: string): Promise<boolean> {
    const key = createHmac("sha256", this.cacheKey)
      .update(user)
      .update("\0")
      .update(password)
      .digest("base64");
    const hit = this.cache.get(key);
    if (hit && hit.generation === this.generation && hit.expires > Date.now()) return true;
    const hash = this.users.get(user);
    // An unknown user is checked against some real account's hash, so it costs as long as a known one.
    const probe = hash ?? this.users.values().next().value;
    if (probe === undefined) return false;
    let ok: boolean;
    try {
      ok = await checkHash(user, password, probe);
    } catch {
      ok = false;
    }
    if (!hash) return false;
    if (ok) {
      if (this.cache.size >= cacheMax) this.cache.clear();
      this.cache.set(key, { expires: Date.now() + cacheTtlMs, generation: this.generation });
    }
    return ok;
  }

  close(): void {
    unwatchFile(this.path);
  }
}
