// A TUF client made of tuf-js (the npm TUF client), for the interoperability
// test in tufrepo/interop_test.go: it reads a repository made by tufrepo the
// way a third-party client would.
//
//   node client.mjs METADATA_URL TARGETS_URL METADATA_DIR TARGET_DIR NAME...
//
// METADATA_DIR holds the trusted root as root.json; tuf-js also caches the
// metadata it accepts there (root.json is replaced by the newest trusted
// root), so give it a fresh copy for every run. The script refreshes the
// metadata, downloads each target NAME into TARGET_DIR, prints one JSON line
// per target ({"name", "path", "sha256" of the file written, "custom": the
// target's custom metadata as tuf-js read it, or null}) and exits 0. On
// any error it prints the error to stderr and exits 1.
//
// Where tuf-js comes from: RINGFENCE_TUFJS names the directory holding
// node_modules/tuf-js (`make deps` installs it into bin/tufjs with `npm install
// --prefix bin/tufjs tuf-js@5`). The module is loaded with a require rooted
// there, so neither the working directory nor NODE_PATH matters. Without
// RINGFENCE_TUFJS it is resolved from this file's directory and NODE_PATH.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

function usage() {
  process.stderr.write('usage: node client.mjs METADATA_URL TARGETS_URL METADATA_DIR TARGET_DIR NAME...\n');
  process.exit(2);
}

async function main(argv) {
  if (argv.length < 5) usage();
  const [metadataBaseUrl, targetBaseUrl, metadataDir, targetDir, ...names] = argv;
  const base = process.env.RINGFENCE_TUFJS
    ? path.join(path.resolve(process.env.RINGFENCE_TUFJS), 'noop.js') // resolution starts at its directory
    : import.meta.url;
  const { Updater } = createRequire(base)('tuf-js');
  const updater = new Updater({
    metadataBaseUrl,
    targetBaseUrl,
    metadataDir,
    targetDir,
    // Fail at once: the test serves from loopback, and a retry would only
    // hide the first error behind a back-off.
    config: { fetchRetry: false, fetchTimeout: 30000 },
  });
  await updater.refresh();
  for (const name of names) {
    const info = await updater.getTargetInfo(name);
    if (!info) throw new Error(`no target ${name} in the repository`);
    const file = (await updater.findCachedTarget(info)) ?? (await updater.downloadTarget(info));
    const sha256 = createHash('sha256').update(readFileSync(file)).digest('hex');
    process.stdout.write(JSON.stringify({ name, path: file, sha256, custom: info.custom ?? null }) + '\n');
  }
}

main(process.argv.slice(2)).then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`tuf-js: ${err && err.stack ? err.stack : err}\n`);
    process.exit(1);
  },
);
