import { type OpenedEndpoint, openEndpoint, type RemoteSettings, remoteFor } from "../copy/transport.ts";
import { OcDirRegistry } from "../layout/oc-dir.ts";
import { RegistryError } from "../oci/errors.ts";
import type { Registry } from "../registry/registry.ts";
import type { RemoteRegistry } from "../remote/remote.ts";
import type { MirrorLocation } from "./reference.ts";

export interface PlaceOptions {
  remote: RemoteSettings;
  /** Where `file://` repositories are written (oc's --dir). */
  dir: string;
  /** Where `file://` sources are read from (oc's --from-dir). */
  fromDir: string;
}

/** A repository opened for a mapping: the Registry that holds it and its name there. */
export interface OpenedRepo {
  registry: Registry;
  repo: string;
}

/**
 * Opens each registry, --dir tree, layout and archive once for the whole run, so that images of
 * one registry share its connections and tokens, and an archive is written once at the end.
 */
export class Places {
  private readonly remotes = new Map<string, Promise<RemoteRegistry>>();
  private readonly layouts = new Map<string, Promise<OpenedEndpoint>>();
  private readonly fileTrees = new Map<string, OcDirRegistry>();

  constructor(private readonly opts: PlaceOptions) {}

  async open(l: MirrorLocation, role: "source" | "destination"): Promise<OpenedRepo> {
    switch (l.kind) {
      case "registry": {
        let r = this.remotes.get(l.host);
        if (!r) {
          r = remoteFor(l.host, this.opts.remote);
          this.remotes.set(l.host, r);
        }
        return { registry: await r, repo: l.repo };
      }
      case "file": {
        const dir = role === "source" ? this.opts.fromDir : this.opts.dir;
        let tree = this.fileTrees.get(dir);
        if (!tree) {
          tree = new OcDirRegistry(dir);
          this.fileTrees.set(dir, tree);
        }
        return { registry: tree, repo: l.repo };
      }
      default: {
        const key = `${role} ${l.kind}:${l.path}`;
        let e = this.layouts.get(key);
        if (!e) {
          e = openEndpoint({ transport: l.kind, path: l.path, reference: "" }, role, {
            remote: this.opts.remote,
            openLocal: () => Promise.reject(new Error("kagami:// is not a mirror location")),
          });
          this.layouts.set(key, e);
        }
        return { registry: (await e).registry, repo: "" };
      }
    }
  }

  /** Makes written layouts and archives durable; `failed` drops an archive that was not committed. */
  async finish(failed: boolean): Promise<void> {
    for (const e of this.layouts.values()) {
      const opened = await e.catch(() => undefined);
      if (!opened) continue;
      if (!failed) await opened.commit();
      await opened.close(failed).catch(() => {});
    }
    for (const r of this.remotes.values()) (await r.catch(() => undefined))?.close();
  }
}

/** Whether a registry error means "not there" (tag, manifest or repository unknown). */
export function isNotFound(err: unknown): boolean {
  if (!(err instanceof RegistryError)) return false;
  return err.code === "NAME_UNKNOWN" || err.code === "MANIFEST_UNKNOWN" || err.status === 404;
}
