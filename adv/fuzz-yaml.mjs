// Probe: mutated promoter manifests must fail as ManifestError naming the file, never otherwise.
import { writeFileSync } from "node:fs";
import { toEdges } from "../dist/promote/edges.js";
import { loadPlainManifest } from "../dist/promote/manifest.js";

const base = `registries:
- &r
  name: staging.example/src
  src: true
- <<: *r
  name: prod.example/p
  src: false
images:
- name: app
  dmap:
    "sha256:${"a".repeat(64)}": &t [v1, "1.10"]
    "sha256:${"b".repeat(64)}": *t
`;
const pieces = [
  "*t",
  "&x",
  "<<: ",
  "- ",
  ": ",
  "[",
  "]",
  "{",
  "}",
  "\n",
  "  ",
  "~",
  "!!str ",
  "!!binary ",
  "? ",
  "|",
  ">",
  "'",
  '"',
  "#",
  "*r",
  "%YAML 1.1\n---\n",
  "---\n",
  "\t",
  "null",
  "true",
];
let bad = 0;
const f = "/tmp/adv13/fuzz.yaml";
for (let i = 0; i < 20000; i++) {
  let s = base;
  for (let k = 0; k < 1 + Math.floor(Math.random() * 3); k++) {
    const at = Math.floor(Math.random() * s.length);
    const cut = Math.floor(Math.random() * 4);
    s = s.slice(0, at) + pieces[Math.floor(Math.random() * pieces.length)] + s.slice(at + cut);
  }
  writeFileSync(f, s);
  try {
    toEdges([loadPlainManifest(f)]);
  } catch (e) {
    if (e.name !== "ManifestError" && e.name !== "OverlappingEdgesError") {
      bad++;
      if (bad < 6) console.log(JSON.stringify(s), e.name, e.message, e.stack.split("\n")[1]);
    }
  }
}
console.log("unexpected:", bad);
