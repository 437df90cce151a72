// Probe: parse mapping files offline and print the mappings (no registry contacted).
import { readFileSync } from "node:fs";
import { parseMappingFile } from "../dist/mapping/mappings.js";
import { formatMirrorRef } from "../dist/mapping/reference.js";

for (const f of process.argv.slice(2)) {
  try {
    for (const s of parseMappingFile(f, readFileSync(f, "utf8")))
      console.log(`${s.origin}: ${formatMirrorRef(s.src)} -> ${formatMirrorRef(s.dst)}`);
  } catch (e) {
    console.log("ERR", e.message);
  }
}
