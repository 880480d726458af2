// Runs seed 004's trackLead server action (track-lead.ts, verbatim from Dub's Clerk guide)
// under Node, as e2e/test_dub_ts_sdk.py drives it:
// - TypeScript only strips the types (transpileModule: no type checking, no rewriting);
// - "@/lib/dub" is lib/dub.mjs, Dub's own SDK pointed at firsttag;
// - Next's cookies() and Clerk's client are stand-ins holding the dub_id cookie read from
//   a real browser, and recording what the action does with them.
// Prints one JSON object: the action's result, the cookies it set, the Clerk updates it
// made and what it logged with console.error.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import ts from "typescript";
import * as libDub from "./lib/dub.mjs";

const require = createRequire(import.meta.url);
const source = readFileSync(new URL("./track-lead.ts", import.meta.url), "utf8");
const { outputText } = ts.transpileModule(source, {
  compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022 },
});

const recorded = { cookiesSet: [], clerkUpdates: [], errors: [] };
const jar = new Map([["dub_id", process.env.DUB_ID]]);
const stand_ins = {
  "@/lib/dub": libDub,
  "next/headers": {
    cookies: async () => ({
      get: (name) => (jar.has(name) ? { name, value: jar.get(name) } : undefined),
      set: (name, value, options) =>
        recorded.cookiesSet.push({ name, value, expires: options?.expires?.toISOString() }),
    }),
  },
  "@clerk/nextjs/server": {
    clerkClient: async () => ({
      users: {
        updateUser: async (id, data) => {
          recorded.clerkUpdates.push({ id, data });
        },
      },
    }),
  },
};
console.error = (...args) =>
  recorded.errors.push(
    args.map((a) => (a instanceof Error ? `${a.name}: ${a.message}` : String(a))).join(" "),
  );

const module = { exports: {} };
new Function("require", "module", "exports", outputText)(
  (name) => stand_ins[name] ?? require(name),
  module,
  module.exports,
);
const result = await module.exports.trackLead({
  id: process.env.USER_ID,
  name: "Ann Example",
  email: "ann@example.com",
  avatar: null,
});
process.stdout.write(JSON.stringify({ result, ...recorded }));
