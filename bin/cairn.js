#!/usr/bin/env node
// The cairn CLI launcher. Loading tsx costs ~0.4 s of CPU per start, more than a command itself, so the
// CLI's own modules (a dozen small files whose types erase) are transpiled once with esbuild into
// node_modules/.cache/cairn-cli and then loaded as plain JS. A manifest of source sizes and mtimes
// decides when to rebuild; each file is written to a temporary name and renamed, so concurrent CLIs
// never load a half-written file. If the cache can't be built, the CLI runs through tsx instead.
import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, posix } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const ENTRY = 'src/cli/main.ts';
const CACHE_DIR = join(ROOT, 'node_modules', '.cache', 'cairn-cli');
const MANIFEST = join(CACHE_DIR, 'manifest.json');
const RELATIVE_IMPORT = /(?:\bfrom\s*|\bimport\s*\(?\s*)['"](\.{1,2}\/[^'"]+)['"]/g;

process.env.CAIRN_DAEMON_BIN ??= fileURLToPath(new URL('./cairnd.js', import.meta.url));

function signature(relativePath) {
  const info = statSync(join(ROOT, relativePath));
  return `${info.size}:${info.mtimeMs}`;
}

function cacheIsFresh() {
  try {
    const manifest = JSON.parse(readFileSync(MANIFEST, 'utf8'));
    if (manifest.files?.[ENTRY] === undefined) return false;
    return Object.entries(manifest.files).every(([path, sig]) => signature(path) === sig);
  } catch {
    return false;
  }
}

function writeAtomically(path, text) {
  mkdirSync(dirname(path), { recursive: true });
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, text);
  renameSync(temporary, path);
}

async function buildCache() {
  const { transform } = await import('esbuild');
  const files = {};
  const queue = [ENTRY];
  while (queue.length > 0) {
    const path = queue.pop();
    if (path in files) continue;
    files[path] = signature(path);
    const source = readFileSync(join(ROOT, path), 'utf8');
    const { code } = await transform(source, { loader: 'ts', format: 'esm', target: 'node20', sourcefile: path });
    for (const match of code.matchAll(RELATIVE_IMPORT)) {
      queue.push(posix.join(posix.dirname(path), match[1]).replace(/\.js$/, '.ts'));
    }
    writeAtomically(join(CACHE_DIR, path.replace(/\.ts$/, '.js')), code);
  }
  writeAtomically(MANIFEST, JSON.stringify({ files }));
}

let cli;
try {
  if (!cacheIsFresh()) await buildCache();
  cli = await import(pathToFileURL(join(CACHE_DIR, ENTRY.replace(/\.ts$/, '.js'))).href);
} catch {
  const { register } = await import('tsx/esm/api');
  register();
  cli = await import('../src/cli/main.ts');
}
await cli.cliMain(process.argv.slice(2));
