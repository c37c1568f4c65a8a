/**
 * A server that listens to a client's song and sings its own back, straight from disk: the
 * reply goes from the song file to the socket inside the kernel with sendfile(2), without
 * passing through JavaScript.
 */
import * as net from 'node:net'
import * as path from 'node:path'
import { sendSong } from './send-song'

export interface SongServer {
  port: number
  close(): Promise<void>
}

function log(message: string): void {
  console.log(`[server] ${message}`)
}

async function singBack(socket: net.Socket, songPath: string): Promise<void> {
  const sent = await sendSong(socket, songPath)
  log(`sent ${path.basename(songPath)} (${sent} bytes)`)
  // Only now, after every byte left through the fd, may Node send the FIN.
  socket.end()
}

export function startSongServer(songPath: string): Promise<SongServer> {
  // allowHalfOpen: the client ends its half of the connection to say "my song is over", and we
  // still need our half open to answer.
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    const peer = `${socket.remoteAddress}:${socket.remotePort}`
    let received = 0

    socket.on('data', (chunk: Buffer) => {
      // TCP may split the song anywhere, so a chunk is never the whole message: only 'end' is.
      if (received === 0) log(`${peer} started singing`)
      received += chunk.length
    })

    socket.on('end', () => {
      log(`${peer} finished singing: received ${received} bytes`)
      singBack(socket, songPath).catch((error: unknown) => {
        log(`could not answer ${peer}: ${String(error)}`)
        socket.destroy()
      })
    })

    // A misbehaving client must cost only its own connection, never the server.
    socket.on('error', (error) => {
      log(`${peer}: ${error.message}`)
      socket.destroy()
    })
  })

  server.on('error', (error) => log(`server error: ${error.message}`))

  return new Promise((resolve, reject) => {
    server.once('error', reject)
    // Port 0: let the kernel pick a free one, so the demo never collides with anything.
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject)
      const { port } = server.address() as net.AddressInfo
      log(`listening on 127.0.0.1:${port}`)
      resolve({
        port,
        close: () => new Promise<void>((done, fail) => server.close((error) => (error ? fail(error) : done()))),
      })
    })
  })
}
