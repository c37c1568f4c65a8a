/**
 * A client that sings its song to the server, straight from disk with sendfile(2), and listens
 * to the song the server sings back.
 */
import * as net from 'node:net'
import * as path from 'node:path'
import { sendSong } from './send-song'

function log(message: string): void {
  console.log(`[client] ${message}`)
}

export function singToServer(port: number, songPath: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    const socket = net.connect({ host: '127.0.0.1', port })

    // Listen before singing: the server may answer before our sendfile promise settles.
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    // Decode once at the end, so a multi-byte character split across chunks stays whole.
    socket.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')))
    socket.on('error', reject)
    // A server that fails hangs up without finishing its song; without this we would wait forever.
    socket.on('close', () => reject(new Error('the server hung up before finishing its song')))

    socket.once('connect', () => {
      sing(socket, songPath).catch((error: unknown) => {
        socket.destroy()
        reject(error)
      })
    })
  })
}

async function sing(socket: net.Socket, songPath: string): Promise<void> {
  const sent = await sendSong(socket, songPath)
  log(`sent ${path.basename(songPath)} (${sent} bytes)`)
  // Half-close: tells the server the song is over while leaving our side open for its answer.
  socket.end()
}
