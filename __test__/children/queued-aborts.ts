/**
 * Child process of the reliability test: `count` sendFile calls queued behind 8 MiB on a
 * socket whose peer does not read, all aborted, then the peer drains the socket. Prints one
 * JSON line with what each call settled to and what the peer received. A crash (a stack
 * overflow in the socket's write queue) kills this process, not the test runner.
 */
import { setMaxListeners } from 'node:events'
import * as net from 'node:net'

import { sendFile } from '../..'

const QUEUED_BEHIND = 8 * 1024 * 1024

async function main(): Promise<void> {
  const [count, file] = [Number(process.argv[2]), process.argv[3]]
  const server = net.createServer({ pauseOnConnect: true })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve))
  const sender = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1')
  await new Promise((resolve) => sender.once('connect', resolve))
  const receiver = await accepted
  server.close()

  sender.write(Buffer.alloc(QUEUED_BEHIND, 0x61))
  const controller = new AbortController()
  setMaxListeners(0, controller.signal)
  const settled = Array.from({ length: count }, () =>
    sendFile(sender, file, { signal: controller.signal }).then(
      () => 'resolved',
      (error: Error) => error.name,
    ),
  )
  controller.abort()
  const names = await Promise.all(settled)

  // Now the queue drains: every abandoned marker passes through the socket's writer.
  let received = 0
  const ended = new Promise<void>((resolve) => receiver.on('end', resolve))
  receiver.on('data', (chunk: Buffer) => (received += chunk.length))
  receiver.resume()
  sender.end('after')
  await ended
  receiver.destroy()
  const aborted = names.filter((name) => name === 'AbortError').length
  process.stdout.write(`${JSON.stringify({ aborted, other: count - aborted, received })}\n`)
}

main().catch((error: unknown) => {
  process.stderr.write(`${String(error)}\n`)
  process.exit(1)
})
