/** A directory index when listing is on: plain HTML, names only, no server or product named. */
import { readdir } from "node:fs/promises";

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** `urlPath` is the path the client asked for (ending in `/`), shown as the title. */
export async function renderListing(dir: string, urlPath: string): Promise<string> {
  const entries = (await readdir(dir, { withFileTypes: true }))
    .filter((e) => !e.name.startsWith(".") && (e.isFile() || e.isDirectory() || e.isSymbolicLink()))
    .map((e) => (e.isDirectory() ? `${e.name}/` : e.name))
    .sort();
  const title = escapeHtml(`Index of ${urlPath}`);
  const links = entries.map(
    (n) =>
      `<a href="${escapeHtml(encodeURIComponent(n.replace(/\/$/, "")) + (n.endsWith("/") ? "/" : ""))}">${escapeHtml(n)}</a>`,
  );
  return `<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>${title}</title></head>\n<body><h1>${title}</h1>\n<pre>\n<a href="../">../</a>\n${links.join("\n")}\n</pre></body></html>\n`;
}
