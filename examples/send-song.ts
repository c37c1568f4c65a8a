/**
 * What both sides of the song demo do to sing: the whole song file goes to the socket with
 * sendfile(2), straight from the page cache, never through JavaScript.
 */
import * as fs from 'node:fs'
import type * as net from 'node:net'
import { sendfile, socketFd } from '..'

/** Sends the whole file at `songPath` to the socket; resolves with the bytes sent. */
export async function sendSong(socket: net.Socket, songPath: string): Promise<number> {
  const fd = socketFd(socket)
  // sendfile writes to the kernel socket itself, so it needs a real fd (not TLS, not closed).
  if (fd < 0) throw new Error('the socket has no file descriptor to send to')
  const song = await fs.promises.open(songPath, 'r')
  try {
    // Offset 0 and count 0: the whole file, whatever its size, without touching the file position.
    return await sendfile(fd, song.fd, 0, 0)
  } finally {
    await song.close()
  }
}
