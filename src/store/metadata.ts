import Database from "better-sqlite3";
import { PullTimes } from "./pull-times.ts";
import { notWritableCode, StorageNotWritableError } from "./read-only.ts";

export interface ManifestRow {
  repo: string;
  digest: string;
  mediaType: string;
  size: number;
  artifactType: string | null;
  subject: string | null;
  annotations: Record<string, string> | null;
}

/**
 * Decides whether a tag that points at `current` (undefined: no such tag yet) may be pointed at
 * `next`; refuses by throwing.
 */
export type TagGuard = (current: string | undefined, next: string) => void;

export interface NewManifest extends ManifestRow {
  /** Digests of the config, layers (kind blob) and child manifests (kind manifest) it references. */
  refs: { digest: string; kind: "blob" | "manifest" }[];
}

export interface UploadRow {
  id: string;
  repo: string;
  createdAt: number;
  updatedAt: number;
}

/**
 * The schema as it stood before it was versioned (user_version 0): a database written by an
 * older Kagami has exactly these tables, so it is migration 1 and runs as a no-op there.
 */
const baseline = `
CREATE TABLE IF NOT EXISTS repos (
  name TEXT PRIMARY KEY,
  created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blobs (
  digest TEXT PRIMARY KEY,
  size INTEGER NOT NULL,
  created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS repo_blobs (
  repo TEXT NOT NULL,
  digest TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (repo, digest)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS repo_blobs_digest ON repo_blobs (digest);
CREATE TABLE IF NOT EXISTS manifests (
  repo TEXT NOT NULL,
  digest TEXT NOT NULL,
  media_type TEXT NOT NULL,
  size INTEGER NOT NULL,
  artifact_type TEXT,
  subject TEXT,
  annotations TEXT,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (repo, digest)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS manifests_subject ON manifests (repo, subject) WHERE subject IS NOT NULL;
CREATE TABLE IF NOT EXISTS manifest_refs (
  repo TEXT NOT NULL,
  parent TEXT NOT NULL,
  child TEXT NOT NULL,
  kind TEXT NOT NULL,
  PRIMARY KEY (repo, parent, child)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS manifest_refs_child ON manifest_refs (repo, child);
CREATE TABLE IF NOT EXISTS tags (
  repo TEXT NOT NULL,
  tag TEXT NOT NULL,
  digest TEXT NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (repo, tag)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tags_digest ON tags (repo, digest);
CREATE TABLE IF NOT EXISTS uploads (
  id TEXT PRIMARY KEY,
  repo TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
) WITHOUT ROWID;
`;

/**
 * Migration i brings a database from user_version i to i + 1. Append only: a released migration
 * never changes, since databases out there already ran it.
 */
const migrations: string[] = [
  baseline,
  // Retention and the mirror's cache quota need when a manifest was last pushed and pulled, and
  // whether it came from an upstream (only that may be evicted to make room).
  `ALTER TABLE manifests ADD COLUMN pushed_at INTEGER;
   UPDATE manifests SET pushed_at = created_at;
   ALTER TABLE manifests ADD COLUMN pulled_at INTEGER;
   ALTER TABLE manifests ADD COLUMN mirrored INTEGER NOT NULL DEFAULT 0;
   CREATE INDEX manifests_mirrored ON manifests (mirrored, pulled_at) WHERE mirrored = 1;`,
];

/** The schema version this build writes. */
export const schemaVersion = migrations.length;

/** The database was written by a newer Kagami: opening it could misread or damage what it holds. */
export class SchemaTooNewError extends Error {
  constructor(
    readonly path: string,
    readonly found: number,
    readonly known: number,
  ) {
    super(
      `metadata database ${path} has schema version ${found}, but this Kagami knows versions up to ${known}: ` +
        "it was last opened by a newer Kagami. Run that newer version again, or restore the backup taken " +
        "before the upgrade (database and blobs together) to go back to this one.",
    );
    this.name = "SchemaTooNewError";
  }
}

/** Brings the schema to `schemaVersion` in one transaction: a failed migration leaves the old schema. */
function migrate(db: Database.Database, path: string): void {
  const found = db.pragma("user_version", { simple: true }) as number;
  if (found > schemaVersion) throw new SchemaTooNewError(path, found, schemaVersion);
  if (found === schemaVersion) return;
  db.transaction(() => {
    for (let v = found; v < schemaVersion; v++) db.exec(migrations[v]!);
    db.pragma(`user_version = ${schemaVersion}`);
  })();
}

type Row = Record<string, unknown>;

function toManifest(r: Row): ManifestRow {
  return {
    repo: r.repo as string,
    digest: r.digest as string,
    mediaType: r.media_type as string,
    size: r.size as number,
    artifactType: (r.artifact_type as string | null) ?? null,
    subject: (r.subject as string | null) ?? null,
    annotations: r.annotations ? (JSON.parse(r.annotations as string) as Record<string, string>) : null,
  };
}

/**
 * Opens the database in WAL mode and proves it can be written: SQLite quietly opens a file it may
 * not write read-only, and the failure would otherwise surface at the first push, or hang shutdown.
 */
function openWritable(path: string): Database.Database {
  let db: Database.Database | undefined;
  try {
    db = new Database(path);
    db.pragma("journal_mode = WAL");
    const version = db.pragma("user_version", { simple: true }) as number;
    db.pragma(`user_version = ${version}`);
    return db;
  } catch (err) {
    try {
      db?.close();
    } catch {
      // Already failing for a clearer reason.
    }
    const code = notWritableCode(err);
    throw code ? new StorageNotWritableError(path, code, err) : err;
  }
}

/**
 * Every fact about repositories, tags, manifests and blob links, in one SQLite file (WAL).
 * Rows are written only after the content they point at is durable on disk.
 */
export class Metadata {
  readonly db: Database.Database;
  /** Manifest pulls, written in batches (see pull-times.ts). */
  readonly pulls: PullTimes;
  private readonly q;

  /** `clock` stamps pushes and pulls; tests of retention set it. */
  constructor(
    path: string,
    readonly clock: () => number = Date.now,
  ) {
    this.db = openWritable(path);
    // WAL with synchronous=NORMAL is durable against process crashes; FULL adds power-loss durability of the last commit.
    this.db.pragma("synchronous = FULL");
    this.db.pragma("busy_timeout = 5000");
    try {
      migrate(this.db, path);
    } catch (err) {
      this.db.close();
      throw err;
    }
    const db = this.db;
    this.q = {
      ensureRepo: db.prepare("INSERT OR IGNORE INTO repos (name, created_at) VALUES (?, ?)"),
      repoExists: db.prepare("SELECT 1 FROM repos WHERE name = ?").pluck(),
      insertBlob: db.prepare("INSERT OR IGNORE INTO blobs (digest, size, created_at) VALUES (?, ?, ?)"),
      globalBlobSize: db.prepare("SELECT size FROM blobs WHERE digest = ?").pluck(),
      linkBlob: db.prepare("INSERT OR IGNORE INTO repo_blobs (repo, digest, created_at) VALUES (?, ?, ?)"),
      unlinkBlob: db.prepare("DELETE FROM repo_blobs WHERE repo = ? AND digest = ?"),
      repoBlobSize: db
        .prepare(
          `SELECT b.size FROM blobs b WHERE b.digest = @digest AND (
             EXISTS (SELECT 1 FROM repo_blobs rb WHERE rb.repo = @repo AND rb.digest = @digest)
             OR EXISTS (SELECT 1 FROM manifests m WHERE m.repo = @repo AND m.digest = @digest))`,
        )
        .pluck(),
      isReferenced: db.prepare("SELECT 1 FROM manifest_refs WHERE repo = ? AND child = ? LIMIT 1").pluck(),
      reposWithBlob: db.prepare("SELECT repo FROM repo_blobs WHERE digest = ? ORDER BY repo").pluck(),
      getManifest: db.prepare("SELECT * FROM manifests WHERE repo = ? AND digest = ?"),
      // A manifest pushed again is pushed now; once pushed locally it is no longer the mirror's to evict.
      putManifest: db.prepare(
        `INSERT INTO manifests (repo, digest, media_type, size, artifact_type, subject, annotations, created_at,
           pushed_at, mirrored)
         VALUES (@repo, @digest, @mediaType, @size, @artifactType, @subject, @annotations, @now, @now, @mirrored)
         ON CONFLICT (repo, digest) DO UPDATE SET pushed_at = excluded.pushed_at,
           mirrored = min(mirrored, excluded.mirrored)`,
      ),
      putRef: db.prepare(
        "INSERT OR IGNORE INTO manifest_refs (repo, parent, child, kind) VALUES (?, ?, ?, ?)",
      ),
      deleteManifest: db.prepare("DELETE FROM manifests WHERE repo = ? AND digest = ?"),
      deleteRefs: db.prepare("DELETE FROM manifest_refs WHERE repo = ? AND parent = ?"),
      deleteTagsOf: db.prepare("DELETE FROM tags WHERE repo = ? AND digest = ?"),
      getTag: db.prepare("SELECT digest FROM tags WHERE repo = ? AND tag = ?").pluck(),
      putTag: db.prepare(
        `INSERT INTO tags (repo, tag, digest, updated_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (repo, tag) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at`,
      ),
      deleteTag: db.prepare("DELETE FROM tags WHERE repo = ? AND tag = ?"),
      listTags: db.prepare("SELECT tag FROM tags WHERE repo = ? AND tag > ? ORDER BY tag LIMIT ?").pluck(),
      listRepos: db.prepare("SELECT name FROM repos WHERE name > ? ORDER BY name LIMIT ?").pluck(),
      referrers: db.prepare(
        "SELECT * FROM manifests WHERE repo = ? AND subject = ? ORDER BY created_at, digest",
      ),
      insertUpload: db.prepare("INSERT INTO uploads (id, repo, created_at, updated_at) VALUES (?, ?, ?, ?)"),
      getUpload: db.prepare("SELECT * FROM uploads WHERE id = ?"),
      touchUpload: db.prepare("UPDATE uploads SET updated_at = ? WHERE id = ?"),
      deleteUpload: db.prepare("DELETE FROM uploads WHERE id = ?"),
      staleUploads: db.prepare("SELECT id FROM uploads WHERE updated_at < ?").pluck(),
      allUploadIds: db.prepare("SELECT id FROM uploads").pluck(),
    };
    this.pulls = new PullTimes(db, clock);
  }

  close(): void {
    this.pulls.close();
    this.db.close();
  }

  repoExists(repo: string): boolean {
    return this.q.repoExists.get(repo) === 1;
  }

  /** Size of a blob visible in `repo` (pushed, mounted, or a manifest of the repo), else undefined. */
  blobInRepo(repo: string, digest: string): number | undefined {
    return this.q.repoBlobSize.get({ repo, digest }) as number | undefined;
  }

  /** Whether a manifest of `repo` names `digest` (config, layer or child manifest). */
  isReferenced(repo: string, digest: string): boolean {
    return this.q.isReferenced.get(repo, digest) === 1;
  }

  blobAnywhere(digest: string): number | undefined {
    return this.q.globalBlobSize.get(digest) as number | undefined;
  }

  reposWithBlob(digest: string): string[] {
    return this.q.reposWithBlob.all(digest) as string[];
  }

  /** Records a durable, verified blob and makes it visible in `repo` (ending `finishedUpload`'s session). */
  linkBlob(repo: string, digest: string, size: number, finishedUpload?: string): void {
    const now = Date.now();
    this.db.transaction(() => {
      this.q.ensureRepo.run(repo, now);
      this.q.insertBlob.run(digest, size, now);
      this.q.linkBlob.run(repo, digest, now);
      // The upload session that produced the blob ends in the same commit: one fsync, not two.
      if (finishedUpload !== undefined) this.q.deleteUpload.run(finishedUpload);
    })();
  }

  unlinkBlob(repo: string, digest: string): boolean {
    return this.q.unlinkBlob.run(repo, digest).changes > 0;
  }

  getManifest(repo: string, digest: string): ManifestRow | undefined {
    const r = this.q.getManifest.get(repo, digest) as Row | undefined;
    return r ? toManifest(r) : undefined;
  }

  resolveTag(repo: string, tag: string): string | undefined {
    return this.q.getTag.get(repo, tag) as string | undefined;
  }

  /**
   * Stores a manifest (whose bytes are already durable) and optionally points a tag at it, atomically.
   * `guard` sees where the tag points inside the same transaction, so what it allows cannot have
   * changed by the time the tag is written; a throw leaves nothing stored.
   */
  putManifest(m: NewManifest, tag?: string, guard?: TagGuard, mirrored = false): void {
    const now = this.clock();
    this.db.transaction(() => {
      if (tag !== undefined) guard?.(this.resolveTag(m.repo, tag), m.digest);
      this.q.ensureRepo.run(m.repo, now);
      this.q.insertBlob.run(m.digest, m.size, now);
      this.q.putManifest.run({
        repo: m.repo,
        digest: m.digest,
        mediaType: m.mediaType,
        size: m.size,
        artifactType: m.artifactType,
        subject: m.subject,
        annotations: m.annotations ? JSON.stringify(m.annotations) : null,
        now,
        mirrored: mirrored ? 1 : 0,
      });
      for (const ref of m.refs) this.q.putRef.run(m.repo, m.digest, ref.digest, ref.kind);
      if (tag !== undefined) this.q.putTag.run(m.repo, tag, m.digest, now);
    })();
  }

  /**
   * Marks an image copied from an upstream (the manifest, the manifests it names, its referrers) as the mirror's,
   * so the cache quota may evict it; a periodic sync stores through the copy engine, which cannot say so.
   * `local` (from localManifests before the copy) stays local: a signature a user pushed for the image
   * (allowLocalWrites), or the same image pushed here before, is not upstream's to evict.
   */
  markMirrored(repo: string, digest: string, local: ReadonlySet<string> = new Set()): void {
    this.db
      .prepare(
        `WITH RECURSIVE tree(d) AS (SELECT @digest
           UNION SELECT r.child FROM manifest_refs r JOIN tree ON r.parent = tree.d WHERE r.repo = @repo AND r.kind = 'manifest'
           UNION SELECT m.digest FROM manifests m JOIN tree ON m.subject = tree.d WHERE m.repo = @repo)
         UPDATE manifests SET mirrored = 1 WHERE repo = @repo AND digest IN (SELECT d FROM tree)
           AND digest NOT IN (SELECT value FROM json_each(@local))`,
      )
      .run({ repo, digest, local: JSON.stringify([...local]) });
  }

  /** Manifests of `repo` stored as pushed here, not mirrored. */
  localManifests(repo: string): Set<string> {
    const rows = this.db
      .prepare("SELECT digest FROM manifests WHERE repo = ? AND mirrored = 0")
      .pluck()
      .all(repo) as string[];
    return new Set(rows);
  }

  /** Deletes a manifest and every tag that points at it. */
  deleteManifest(repo: string, digest: string): boolean {
    return this.db.transaction(() => {
      const changed = this.q.deleteManifest.run(repo, digest).changes > 0;
      this.q.deleteRefs.run(repo, digest);
      this.q.deleteTagsOf.run(repo, digest);
      return changed;
    })();
  }

  deleteTag(repo: string, tag: string): boolean {
    return this.q.deleteTag.run(repo, tag).changes > 0;
  }

  listTags(repo: string, after: string, limit: number): string[] {
    return this.q.listTags.all(repo, after, limit) as string[];
  }

  listRepos(after: string, limit: number): string[] {
    return this.q.listRepos.all(after, limit) as string[];
  }

  referrers(repo: string, subject: string): ManifestRow[] {
    return (this.q.referrers.all(repo, subject) as Row[]).map(toManifest);
  }

  createUpload(id: string, repo: string): void {
    const now = Date.now();
    this.q.insertUpload.run(id, repo, now, now);
  }

  getUpload(id: string): UploadRow | undefined {
    const r = this.q.getUpload.get(id) as Row | undefined;
    if (!r) return undefined;
    return {
      id: r.id as string,
      repo: r.repo as string,
      createdAt: r.created_at as number,
      updatedAt: r.updated_at as number,
    };
  }

  touchUpload(id: string): void {
    this.q.touchUpload.run(Date.now(), id);
  }

  deleteUpload(id: string): void {
    this.q.deleteUpload.run(id);
  }

  staleUploads(olderThan: number): string[] {
    return this.q.staleUploads.all(olderThan) as string[];
  }

  uploadIds(): Set<string> {
    return new Set(this.q.allUploadIds.all() as string[]);
  }

  /**
   * Bytes and counts per repository, from aggregates over the primary keys (no file is read):
   * blob bytes as linked into the repository plus its manifests' own bytes.
   */
  usage(): RepoUsage[] {
    const byRepo = new Map<string, RepoUsage>();
    const at = (repo: string) => {
      let u = byRepo.get(repo);
      if (!u) {
        u = { repo, bytes: 0, blobs: 0, manifests: 0, tags: 0 };
        byRepo.set(repo, u);
      }
      return u;
    };
    const blobs = this.db.prepare(
      "SELECT rb.repo AS repo, COUNT(*) AS n, COALESCE(SUM(b.size), 0) AS bytes FROM repo_blobs rb JOIN blobs b ON b.digest = rb.digest GROUP BY rb.repo",
    );
    for (const r of blobs.all() as { repo: string; n: number; bytes: number }[]) {
      const u = at(r.repo);
      u.blobs = r.n;
      u.bytes += r.bytes;
    }
    const manifests = this.db.prepare(
      "SELECT repo, COUNT(*) AS n, COALESCE(SUM(size), 0) AS bytes FROM manifests GROUP BY repo",
    );
    for (const r of manifests.all() as { repo: string; n: number; bytes: number }[]) {
      const u = at(r.repo);
      u.manifests = r.n;
      u.bytes += r.bytes;
    }
    const tags = this.db.prepare("SELECT repo, COUNT(*) AS n FROM tags GROUP BY repo");
    for (const r of tags.all() as { repo: string; n: number }[]) at(r.repo).tags = r.n;
    return [...byRepo.values()];
  }
}

export interface RepoUsage {
  repo: string;
  bytes: number;
  blobs: number;
  manifests: number;
  tags: number;
}
