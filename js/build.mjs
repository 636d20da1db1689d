// Bundle the widgets' ES modules (and their npm dependencies) into lmnb/widgets/static, so the
// Python package carries all its JavaScript: no CDN, notebooks work offline.
//   node build.mjs           write the bundles
//   node build.mjs --check   fail if the committed bundles differ from a fresh build (CI)
import * as esbuild from "esbuild";
import { readFileSync, writeFileSync, mkdtempSync, copyFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const OUT = new URL("../lmnb/widgets/static/", import.meta.url).pathname;
const ENTRIES = ["chat"];
const STYLES = ["chat.css"];
const LICENSED = ["markdown-it", "dompurify", "highlight.js", "linkify-it", "mdurl", "uc.micro", "entities", "punycode.js"];
const check = process.argv.includes("--check");
const dest = check ? mkdtempSync(join(tmpdir(), "lmnb-js-")) : OUT;

for (const name of ENTRIES) {
  await esbuild.build({
    entryPoints: [`src/${name}.js`],
    outfile: join(dest, `${name}.js`),
    bundle: true,
    format: "esm",
    minify: true,
    target: "es2020",
    legalComments: "eof",
    logLevel: "warning",
  });
}
for (const file of STYLES) copyFileSync(`src/${file}`, join(dest, file));

// The bundles include these packages' code: ship their licences next to them.
let notices = "Third-party code bundled into lmnb/widgets/static/*.js (built by js/build.mjs):\n";
for (const pkg of LICENSED) {
  const meta = JSON.parse(readFileSync(`node_modules/${pkg}/package.json`, "utf8"));
  const file = ["LICENSE", "LICENSE.md", "LICENSE.txt"].map((f) => `node_modules/${pkg}/${f}`).find(existsSync);
  notices += `\n${"=".repeat(72)}\n${pkg} ${meta.version} (${meta.license})\n${"=".repeat(72)}\n`;
  notices += file ? readFileSync(file, "utf8") : `License: ${meta.license}\n`;
}
writeFileSync(join(dest, "THIRD_PARTY_LICENSES.txt"), notices);

if (check) {
  const stale = [...ENTRIES.map((n) => `${n}.js`), ...STYLES, "THIRD_PARTY_LICENSES.txt"].filter((f) => {
    const committed = existsSync(join(OUT, f)) ? readFileSync(join(OUT, f), "utf8") : null;
    return committed !== readFileSync(join(dest, f), "utf8");
  });
  if (stale.length) {
    console.error(`Out of date: ${stale.join(", ")} in lmnb/widgets/static. Run \`npm run build\` in js/ and commit.`);
    process.exit(1);
  }
  console.log("lmnb/widgets/static is up to date.");
}
