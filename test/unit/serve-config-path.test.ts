import { describe, expect, it } from "vitest";
import { serveConfigPath } from "../../src/cli/serve-config-path.ts";

describe("the HEALTHCHECK finds the config the container's server runs with", () => {
  it("reads --config from a serve command line, in either spelling", () => {
    const node = ["node", "/app/dist/cli/main.js"];
    expect(serveConfigPath([...node, "serve", "--config", "/conf/kagami.json", ""])).toBe(
      "/conf/kagami.json",
    );
    expect(serveConfigPath([...node, "serve", "--config=/conf/x.json", ""])).toBe("/conf/x.json");
    expect(serveConfigPath([...node, "serve", ""])).toBeUndefined();
    expect(serveConfigPath([...node, "serve", "--config"])).toBeUndefined();
    // Not the server (a shell, another program): its flags mean nothing here.
    expect(serveConfigPath(["/bin/sh", "-c", "sleep 1", "--config", "/x.json"])).toBeUndefined();
  });
});
