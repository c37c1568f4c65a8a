/** Listening for `serve` and `receive`, with the failures people meet said in one line. */
import type * as net from 'node:net'

import { CommandFailure } from './errors.js'

/** An address as it goes in a URL or before `:port`: IPv6 in brackets. */
export function urlHost(address: string): string {
  return address.includes(':') ? `[${address}]` : address
}

/** Listens on host:port; rejects with a {@link CommandFailure} for a port in use, a privileged port, a foreign address. */
export function listen(server: net.Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) => reject(listenFailure(error, `${urlHost(host)}:${port}`))
    server.once('error', onError)
    server.listen(port, host, () => {
      server.off('error', onError)
      resolve()
    })
  })
}

const LISTEN_FAILURES: Record<string, string> = {
  EADDRINUSE: 'the port is already in use',
  EACCES: 'permission denied (ports below 1024 need privileges)',
  EADDRNOTAVAIL: 'the address is not one of this machine',
  ENOTFOUND: 'the host name does not resolve',
}

function listenFailure(error: NodeJS.ErrnoException, where: string): Error {
  const reason = error.code === undefined ? undefined : LISTEN_FAILURES[error.code]
  return reason === undefined ? error : new CommandFailure(`cannot listen on ${where}: ${reason} (${error.code})`)
}
