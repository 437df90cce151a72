import { compileGoRegexp } from "../src/config/go-regexp.ts";

console.log(compileGoRegexp("v2.*").test("xv2"), compileGoRegexp("v2.*").test("v3"));
