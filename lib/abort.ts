/**
 * Listening for an abort: one real listener per signal, however many transfers wait on it.
 *
 * Node's `AbortSignal` keeps its listeners in a list that every `addEventListener` and
 * `removeEventListener` walks (to find duplicates), so one signal shared by N queued transfers
 * costs O(N²): 100,000 `sendFile` calls with one signal spent over a minute there. Here each
 * signal gets one listener, and the waiting callbacks live in a Set.
 */

interface Waiters {
  callbacks: Set<() => void>
  fire: () => void
}

const waitersOf = new WeakMap<AbortSignal, Waiters>()

/**
 * Calls `callback` once when `signal` aborts; the returned function stops listening (call it
 * when the work settles, so a long-lived signal does not keep the callback alive).
 * The signal must not be aborted yet: callers check `signal.aborted` first.
 */
export function onAbort(signal: AbortSignal, callback: () => void): () => void {
  let waiters = waitersOf.get(signal)
  if (waiters === undefined) {
    const callbacks = new Set<() => void>()
    const fire = () => {
      waitersOf.delete(signal)
      const waiting = [...callbacks]
      callbacks.clear()
      for (const callback of waiting) callback()
    }
    waiters = { callbacks, fire }
    waitersOf.set(signal, waiters)
    signal.addEventListener('abort', fire, { once: true })
  }
  const { callbacks, fire } = waiters
  callbacks.add(callback)
  return () => {
    if (!callbacks.delete(callback) || callbacks.size > 0 || waitersOf.get(signal)?.fire !== fire) return
    waitersOf.delete(signal)
    signal.removeEventListener('abort', fire)
  }
}
