import type Database from "better-sqlite3";

export interface MirroredTag {
  repo: string;
  tag: string;
  digest: string;
  upstream: string;
  checkedAt: number;
}

export interface SyncRunRecord {
  registry: string;
  startedAt: number;
  finishedAt: number;
  repos: number;
  tagsChecked: number;
  copied: number;
  bytes: number;
  errors: string[];
}

const schema = `
CREATE TABLE IF NOT EXISTS mirror_tags (
  repo TEXT NOT NULL,
  tag TEXT NOT NULL,
  digest TEXT NOT NULL,
  upstream TEXT NOT NULL,
  checked_at INTEGER NOT NULL,
  PRIMARY KEY (repo, tag)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sync_runs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  registry TEXT NOT NULL,
  started_at INTEGER NOT NULL,
  finished_at INTEGER NOT NULL,
  repos INTEGER NOT NULL,
  tags_checked INTEGER NOT NULL,
  copied INTEGER NOT NULL,
  bytes INTEGER NOT NULL,
  errors TEXT NOT NULL
);
`;

/** What the mirror remembers across restarts: when each cached tag was last checked upstream, and every sync run. */
export class SyncState {
  private readonly q;

  constructor(db: Database.Database) {
    db.exec(schema);
    this.q = {
      get: db.prepare("SELECT * FROM mirror_tags WHERE repo = ? AND tag = ?"),
      put: db.prepare(
        `INSERT INTO mirror_tags (repo, tag, digest, upstream, checked_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (repo, tag) DO UPDATE SET digest = excluded.digest, upstream = excluded.upstream,
         checked_at = excluded.checked_at`,
      ),
      addRun: db.prepare(
        `INSERT INTO sync_runs (registry, started_at, finished_at, repos, tags_checked, copied, bytes, errors)
         VALUES (@registry, @startedAt, @finishedAt, @repos, @tagsChecked, @copied, @bytes, @errors)`,
      ),
      lastRun: db.prepare("SELECT * FROM sync_runs WHERE registry = ? ORDER BY id DESC LIMIT 1"),
    };
  }

  tag(repo: string, tag: string): MirroredTag | undefined {
    const r = this.q.get.get(repo, tag) as Record<string, unknown> | undefined;
    if (!r) return undefined;
    return {
      repo: r.repo as string,
      tag: r.tag as string,
      digest: r.digest as string,
      upstream: r.upstream as string,
      checkedAt: r.checked_at as number,
    };
  }

  checked(repo: string, tag: string, digest: string, upstream: string, at = Date.now()): void {
    this.q.put.run(repo, tag, digest, upstream, at);
  }

  recordRun(run: SyncRunRecord): void {
    this.q.addRun.run({ ...run, errors: JSON.stringify(run.errors) });
  }

  lastRun(registry: string): SyncRunRecord | undefined {
    const r = this.q.lastRun.get(registry) as Record<string, unknown> | undefined;
    if (!r) return undefined;
    return {
      registry: r.registry as string,
      startedAt: r.started_at as number,
      finishedAt: r.finished_at as number,
      repos: r.repos as number,
      tagsChecked: r.tags_checked as number,
      copied: r.copied as number,
      bytes: r.bytes as number,
      errors: JSON.parse(r.errors as string) as string[],
    };
  }
}
