/** SIGINT and SIGTERM for the commands: an AbortSignal for a transfer, a callback for the server. */
import { Interrupted } from './errors.js'

export type StopSignal = 'SIGINT' | 'SIGTERM'

const STOP_SIGNALS: StopSignal[] = ['SIGINT', 'SIGTERM']

/**
 * Calls `listener` on each SIGINT or SIGTERM until the returned function is called. While a
 * listener is installed Node does not die of the signal: the command decides how to stop.
 */
export function onStopSignal(listener: (signal: StopSignal) => void): () => void {
  for (const name of STOP_SIGNALS) process.on(name, listener)
  return () => {
    for (const name of STOP_SIGNALS) process.off(name, listener)
  }
}

/**
 * An AbortSignal aborted by the first SIGINT or SIGTERM, its reason an {@link Interrupted}:
 * the transfer stops where it is, the command cleans up (the bar, the sockets) and exits 130
 * or 143. Call `dispose` when the command ends.
 */
export function interruptSignal(): { signal: AbortSignal; dispose: () => void } {
  const controller = new AbortController()
  const dispose = onStopSignal((name) => controller.abort(new Interrupted(name)))
  return { signal: controller.signal, dispose }
}

/** The {@link Interrupted} behind an error: itself, or the reason of the AbortError it caused. */
export function interruptionOf(error: unknown): Interrupted | undefined {
  if (error instanceof Interrupted) return error
  const cause = (error as { cause?: unknown } | null)?.cause
  return cause instanceof Interrupted ? cause : undefined
}
