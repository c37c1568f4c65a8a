/**
 * The sendfile "song server and client" demo: the client sings "Mary Had a Little Lamb" to the
 * server, the server answers with "Twinkle, Twinkle, Little Star", both sent with sendfile(2).
 *
 *   node --import tsx examples/song.ts     (or: npm run demo)
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { singToServer } from './song-client'
import { startSongServer } from './song-server'

const serverSong = path.join(__dirname, 'songs', 'twinkle.txt')
const clientSong = path.join(__dirname, 'songs', 'mary.txt')

function indent(text: string): string {
  return text.trimEnd().replace(/^(?=.)/gm, '    ')
}

async function main(): Promise<void> {
  const server = await startSongServer(serverSong)
  try {
    const sung = await fs.promises.readFile(clientSong, 'utf8')
    console.log(`\nclient sings ${path.basename(clientSong)}:\n\n${indent(sung)}\n`)

    const answer = await singToServer(server.port, clientSong)
    const received = Buffer.from(answer, 'utf8')
    console.log(`\nserver answered with (${received.length} bytes):\n\n${indent(answer)}\n`)

    // The point of the demo: bytes that never passed through JavaScript arrive intact.
    const expected = await fs.promises.readFile(serverSong)
    if (!received.equals(expected)) {
      throw new Error(`the client received ${received.length} bytes, which differ from the ${expected.length} bytes of ${serverSong}`)
    }
    console.log(`ok: the answer matches ${path.basename(serverSong)} byte for byte`)
  } finally {
    await server.close()
  }
}

// unref: a healthy run ends on its own; the timer only matters if something hangs.
setTimeout(() => {
  console.error('demo failed: no answer within 10 s')
  process.exit(1)
}, 10_000).unref()

main().catch((error: unknown) => {
  console.error(`demo failed: ${error instanceof Error ? error.message : String(error)}`)
  process.exit(1)
})
