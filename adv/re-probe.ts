import { compileGoRegexp } from "/work/wt-adv15/src/config/go-regexp.ts";
console.log(compileGoRegexp("v2.*").test("xv2"), compileGoRegexp("v2.*").test("v3"));
