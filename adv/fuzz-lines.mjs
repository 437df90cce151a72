// Probe: random mapping lines must fail as MappingError (file, line), never with another error.
import { parseMappingFile } from "../dist/mapping/mappings.js";

const alphabet = [
  "a",
  "B",
  "/",
  ":",
  "@",
  "=",
  "*",
  ".",
  "-",
  "_",
  "sha256:",
  "0",
  "9",
  " ",
  "#",
  "file://",
  "oci:",
  "oci-archive:",
  "docker://",
  "s3://",
  "localhost",
  "[",
  "]",
  "%",
  "\u00e9",
  "\t",
  "\\",
  "..",
  "~",
];
let bad = 0;
for (let i = 0; i < 50000; i++) {
  let line = "";
  const n = 1 + Math.floor(Math.random() * 14);
  for (let j = 0; j < n; j++) line += alphabet[Math.floor(Math.random() * alphabet.length)];
  try {
    parseMappingFile("f", line);
  } catch (e) {
    if (e.name !== "MappingError" || !/^file f, line 1: /.test(e.message)) {
      bad++;
      if (bad < 10) console.log(JSON.stringify(line), e.name, e.message);
    }
  }
}
console.log("unexpected:", bad);
