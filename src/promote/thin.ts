import { readdirSync, statSync } from "node:fs";
import { join, relative, sep } from "node:path";
import { loadThinManifest, ManifestError, type ManifestProblem, type PromoterManifest } from "./manifest.ts";

export const thinManifestName = "promoter-manifest.yaml";
export const thinImagesName = "images.yaml";

export interface LoadedManifests {
  manifests: PromoterManifest[];
  /** Things a person should hear about that do not stop the run. */
  warnings: string[];
}

function isDir(p: string): boolean {
  return statSync(p, { throwIfNoEntry: false })?.isDirectory() === true;
}

function isFile(p: string): boolean {
  return statSync(p, { throwIfNoEntry: false })?.isFile() === true;
}

/** Every promoter-manifest.yaml below `dir`, at any depth (the layout allows exactly one). */
function findManifestFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...findManifestFiles(p));
    else if (e.name === thinManifestName) out.push(p);
  }
  return out;
}

/**
 * A thin-manifest tree: DIR/manifests/<sub>/promoter-manifest.yaml names the registries and
 * DIR/images/<sub>/images.yaml the images, the same <sub> on both sides. Keeping the two apart
 * lets a repository give image lists and registries different owners.
 */
export function loadThinManifestDir(dir: string): LoadedManifests {
  const problems: ManifestProblem[] = [];
  const warnings: string[] = [];
  const imagesRoot = join(dir, "images");
  const manifestsRoot = join(dir, "manifests");
  for (const d of [imagesRoot, manifestsRoot]) {
    if (!isDir(d))
      problems.push({ file: d, message: "missing: a thin-manifest directory holds images/ and manifests/" });
  }
  if (problems.length) throw new ManifestError(problems);

  const pairs: [string, string][] = [];
  for (const file of findManifestFiles(manifestsRoot)) {
    const parts = relative(manifestsRoot, file).split(sep);
    if (parts.length !== 2) {
      problems.push({
        file,
        message: `unexpected manifest path: want ${join(manifestsRoot, "<sub>", thinManifestName)}`,
      });
      continue;
    }
    const images = join(imagesRoot, parts[0]!, thinImagesName);
    if (!isFile(images)) {
      problems.push({
        file,
        message: `corresponding file ${images} does not exist (the <sub> directories of images/ and manifests/ must match)`,
      });
      continue;
    }
    pairs.push([file, images]);
  }
  for (const e of readdirSync(imagesRoot, { withFileTypes: true })) {
    if (e.isDirectory() && !isFile(join(manifestsRoot, e.name, thinManifestName))) {
      warnings.push(
        `${join(imagesRoot, e.name)}: no ${join(manifestsRoot, e.name, thinManifestName)} names its registries; its images are not promoted`,
      );
    }
  }
  const manifests: PromoterManifest[] = [];
  for (const [file, images] of pairs.sort((a, b) => a[0].localeCompare(b[0]))) {
    try {
      manifests.push(loadThinManifest(file, images));
    } catch (err) {
      if (!(err instanceof ManifestError)) throw err;
      problems.push(...err.problems);
    }
  }
  if (problems.length) throw new ManifestError(problems);
  if (manifests.length === 0)
    throw new ManifestError([
      { file: manifestsRoot, message: `no manifests found (want <sub>/${thinManifestName})` },
    ]);
  return { manifests, warnings };
}
