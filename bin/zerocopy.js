#!/usr/bin/env node
// The `zerocopy` command: lib/cli (compiled from TypeScript by `npm run build:ts`).
require('../lib/cli/index.js')
  .main(process.argv.slice(2))
  .then((code) => {
    process.exitCode = code
  })
