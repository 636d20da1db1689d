// Build the JupyterLab extension into lmnb/labextension, which is committed so that installing lmnb
// needs no Node (the wheel ships it as share/jupyter/labextensions/lmnb-labextension).
//   node build.mjs           tsc, then the rspack build, then install.json
//   node build.mjs --check   the same into a temp dir; fail if lmnb/labextension differs (CI)
//
// The rspack step is what `jupyter labextension build .` runs (@jupyter/builder's extensionConfig),
// called directly so that no Python JupyterLab is needed, and against the JupyterLab core metadata
// pinned in package-lock.json (@jupyterlab/core-meta) rather than the installed JupyterLab's: the
// output then depends on the lockfile only, and is byte-for-byte reproducible.
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import Module, { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, isAbsolute, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const PACKAGE_JSON = join(HERE, "package.json");
const pkg = JSON.parse(readFileSync(PACKAGE_JSON, "utf8"));
const COMMITTED = resolve(HERE, pkg.jupyterlab.outputDir);
const check = process.argv.includes("--check");
const out = check ? mkdtempSync(join(tmpdir(), "lmnb-labextension-")) : COMMITTED;
process.chdir(HERE); // rspack derives module ids from paths relative to the working directory

// 1. TypeScript: src/ -> lib/ (the builder bundles lib/index.js, package.json's "main").
execFileSync(process.execPath, [require.resolve("typescript/bin/tsc"), "-p", "tsconfig.json"], { stdio: "inherit" });

// 2. rspack. The builder takes the output folder from package.json's jupyterlab.outputDir, read with
// require(): in check mode, pre-load that module with the temp folder instead. (The package.json it
// copies into the output is read from disk, so the output is the same as a normal build's.)
if (check) {
  const patched = new Module(PACKAGE_JSON);
  patched.filename = PACKAGE_JSON;
  patched.loaded = true;
  patched.exports = { ...pkg, jupyterlab: { ...pkg.jupyterlab, outputDir: relative(HERE, out) } };
  require.cache[PACKAGE_JSON] = patched;
}
const builderRequire = createRequire(require.resolve("@jupyter/builder/package.json"));
const generateConfig = builderRequire("./lib/extensionConfig").default;
const { rspack } = builderRequire("@rspack/core");
const config = generateConfig({
  packagePath: HERE,
  corePackageFile: require.resolve("@jupyterlab/core-meta/core.package.json"),
  mode: "production",
});
// The builder hands Module Federation absolute paths (the exposed modules, and this package as a
// shared module); rspack hashes those into module ids, so the bundle would depend on where the
// repository is checked out. Relative to the context (this folder) they resolve the same.
const federation = config[0].plugins.find((plugin) => plugin?._options?.exposes)?._options;
if (!federation?.shared?.[pkg.name]) {
  throw new Error("build.mjs: @jupyter/builder's config changed shape; update the path fix-up.");
}
const relativeToHere = (path) => (isAbsolute(path) ? `./${relative(HERE, path).split(sep).join("/")}` : path);
for (const name of Object.keys(federation.exposes)) {
  federation.exposes[name] = relativeToHere(federation.exposes[name]);
}
federation.shared[pkg.name].import = relativeToHere(federation.shared[pkg.name].import);
const stats = await new Promise((done, fail) => {
  const compiler = rspack(config);
  compiler.run((error, result) => compiler.close((closeError) => (error || closeError ? fail(error || closeError) : done(result))));
});
if (stats.hasErrors()) {
  console.error(stats.toString({ preset: "errors-warnings", colors: false }));
  process.exit(1);
}

// 3. install.json: tells `jupyter labextension list` that pip manages this extension.
copyFileSync(join(HERE, "install.json"), join(out, "install.json"));

/** Relative path -> bytes, for every file under root. */
function snapshot(root) {
  const files = new Map();
  const walk = (dir) => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else files.set(relative(root, path), readFileSync(path));
    }
  };
  walk(root);
  return files;
}

const built = snapshot(out);
if (!check) {
  let total = 0;
  for (const [path, bytes] of built) {
    total += bytes.length;
    console.log(`  ${path.padEnd(48)} ${bytes.length.toString().padStart(8)} B`);
  }
  console.log(`lmnb/labextension: ${built.size} files, ${total} B.`);
} else {
  const committed = snapshot(COMMITTED);
  const differ = [...new Set([...built.keys(), ...committed.keys()])]
    .filter((path) => !(built.has(path) && committed.has(path) && built.get(path).equals(committed.get(path))))
    .sort();
  rmSync(out, { recursive: true, force: true });
  if (differ.length) {
    console.error(`Out of date in lmnb/labextension: ${differ.join(", ")}. Run \`npm run build\` in labextension/ and commit.`);
    process.exit(1);
  }
  console.log("lmnb/labextension is up to date.");
}
