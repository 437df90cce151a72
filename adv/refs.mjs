// Probe: how mapping arguments/lines parse.
import { parseMappingArgs } from "../dist/mapping/mappings.js";
import { formatMirrorRef } from "../dist/mapping/reference.js";

const cases = process.argv.slice(2);
for (const c of cases) {
  try {
    const specs = parseMappingArgs(c.split(" "));
    console.log(
      JSON.stringify(c),
      "=>",
      specs
        .map(
          (s) =>
            `${formatMirrorRef(s.src)}${s.src.pattern ? `[${s.src.pattern}]` : ""}${s.src.allTags ? "[all]" : ""} -> ${formatMirrorRef(s.dst)}`,
        )
        .join(" | "),
    );
  } catch (e) {
    console.log(JSON.stringify(c), "ERR", e.name, e.message);
  }
}
