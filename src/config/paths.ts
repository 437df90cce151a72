/**
 * One way to print where a field is: `extensions.sync.registries[0].urls[1]`, dots between names
 * and brackets around array indexes, as zot's documentation writes them.
 */
export function fieldPath(segments: readonly (string | number)[]): string {
  let out = "";
  for (const s of segments) {
    if (typeof s === "number") out += `[${s}]`;
    else out += out === "" ? s : `.${s}`;
  }
  return out;
}

/** The same form for an ajv error's JSON Pointer (`/extensions/sync/registries/0`). */
export function pointerToPath(pointer: string, arrayAt: (segments: string[]) => boolean): string {
  const parts = pointer
    .split("/")
    .slice(1)
    .map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"));
  return fieldPath(parts.map((p, i) => (/^\d+$/.test(p) && arrayAt(parts.slice(0, i)) ? Number(p) : p)));
}
