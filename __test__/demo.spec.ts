import test from 'ava'
import { execFile } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'

const root = path.join(__dirname, '..')

test('the song demo runs: the client sings, the server answers with its song byte for byte, exit 0', async (t) => {
  const { code, stdout } = await new Promise<{ code: number | null; stdout: string }>((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', path.join(root, 'examples', 'song.ts')], { cwd: root, timeout: 30_000 }, (error, stdout) =>
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout }),
    )
  })
  t.is(code, 0, stdout)
  const twinkle = fs.readFileSync(path.join(root, 'examples', 'songs', 'twinkle.txt'), 'utf8')
  const firstLine = twinkle.split('\n')[0]
  t.true(stdout.includes(firstLine), 'the server song is printed')
  t.regex(stdout, new RegExp(`\\[server\\] sent twinkle\\.txt \\(${Buffer.byteLength(twinkle)} bytes\\)`))
  t.regex(stdout, /\[client\] sent mary\.txt \(\d+ bytes\)/)
  t.regex(stdout, /ok: the answer matches twinkle\.txt byte for byte/)
})
