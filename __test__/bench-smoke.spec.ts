/**
 * The benchmarks are not part of the test suite, but their smoke modes are, so the scripts never
 * rot: tiny sizes, every scenario, byte counts and hashes checked by the scripts themselves.
 */
import test from 'ava'
import { execFile } from 'node:child_process'
import * as path from 'node:path'

const root = path.join(__dirname, '..')

function runScript(args: string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', ...args], { cwd: root, timeout: 120_000, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) =>
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, output: `${stdout}\n${stderr}` }),
    )
  })
}

test('the core benchmark runs every scenario in smoke mode and verifies the bytes', async (t) => {
  const { code, output } = await runScript(['bench/index.ts', '--smoke'])
  t.is(code, 0, output)
  for (const scenario of ['bulk', 'concurrency', 'small-calls', 'copy']) t.true(output.includes(scenario), `${scenario} ran`)
})

test('the HTTP benchmark serves and checks both files from every server in smoke mode', async (t) => {
  const { code, output } = await runScript(['bench/http.ts', '--smoke', '--no-nginx'])
  t.is(code, 0, output)
  t.regex(output, /\| 1 MiB \| createStaticHandler \|/)
  t.regex(output, /\| 16 KiB \| createReadStream pipe \|/)
})
