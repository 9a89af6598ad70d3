// The script a single executable `broker` runs (Node's single executable applications, see
// scripts/sea/build.ts). Node 24 runs one CommonJS file from the executable and cannot import
// the broker's ES modules from it, so the executable carries them as an asset: the compiled
// dist/ and its production node_modules, packed by the build. The first run unpacks them into a
// cache folder named after their hash; every run then loads dist/main.js from there, with the
// executable's own Node 24. Run as a plain script (`node main.cjs`), it reads app.bin next to it.
'use strict';
const { createHash } = require('node:crypto');
const { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } = require('node:fs');
const { createRequire } = require('node:module');
const { homedir } = require('node:os');
const { dirname, join, resolve, sep } = require('node:path');
const { gunzipSync } = require('node:zlib');

function archive() {
  const sea = require('node:sea');
  return sea.isSea() ? Buffer.from(sea.getRawAsset('app')) : readFileSync(join(__dirname, 'app.bin'));
}

/** Unpacks the archive (gzip of: 4-byte length, JSON index [path, mode, size][], contents) into DIR. */
function unpack(packed, dir) {
  const raw = gunzipSync(packed);
  const headerLength = raw.readUInt32LE(0);
  const index = JSON.parse(raw.subarray(4, 4 + headerLength).toString('utf8'));
  let at = 4 + headerLength;
  for (const [path, mode, size] of index) {
    const file = resolve(dir, path);
    if (!file.startsWith(dir + sep)) throw new Error(`bad path in the embedded archive: ${path}`);
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    writeFileSync(file, raw.subarray(at, at + size), { mode });
    at += size;
  }
}

function unpacked() {
  const packed = archive();
  const base = process.env.BROKER_SEA_CACHE || join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'broker-sea');
  const dir = join(base, createHash('sha256').update(packed).digest('hex').slice(0, 24));
  if (existsSync(join(dir, 'dist', 'main.js'))) return dir;
  // unpack beside it, then rename: a run that is interrupted, or two first runs at once, never
  // leave a half-written folder under the final name
  mkdirSync(base, { recursive: true, mode: 0o700 });
  const tmp = `${dir}.${process.pid}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  try {
    unpack(packed, tmp);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  try {
    renameSync(tmp, dir);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    if (!existsSync(join(dir, 'dist', 'main.js'))) throw e;
  }
  return dir;
}

// A CommonJS file loaded from disk may import() ES modules (the injected script itself may not).
createRequire(join(unpacked(), 'launch.cjs'))('./launch.cjs');
