/**
 * The benchmark's smoke test: every scenario at tiny sizes, once, so the scripts never rot.
 * Same as `node --import tsx bench/index.ts --smoke`; exits non-zero when a scenario fails or
 * moves the wrong bytes, and within 60 s whatever happens. Measures nothing worth reading.
 *
 *   node --import tsx bench/smoke.ts
 */
import { runAll } from './index'
import { log } from './lib/common'

const DEADLINE_MS = 60_000

// Bounded even if a child or a socket hangs in a way the per-step deadlines miss.
setTimeout(() => {
  log(`smoke: not done after ${DEADLINE_MS / 1000} s`)
  process.exit(2)
}, DEADLINE_MS).unref()

const started = Date.now()
runAll(['--smoke', ...process.argv.slice(2)]).then(
  ({ failures }) => {
    for (const failure of failures) console.error(`FAILED: ${failure}`)
    log(`smoke: ${failures.length === 0 ? 'ok' : `${failures.length} failure(s)`} in ${((Date.now() - started) / 1000).toFixed(1)} s`)
    process.exit(failures.length > 0 ? 1 : 0)
  },
  (error: unknown) => {
    console.error(error)
    process.exit(1)
  },
)
