/** The stream fallback's helpers, where a wrong step would crash a server rather than fail one call. */
import test from 'ava'

import { untilAborted } from '../lib/stream-fallback'

test('untilAborted on an aborted signal still handles the promise it gives up on: a late rejection is not unhandled', async (t) => {
  const unhandled: unknown[] = []
  const onUnhandled = (reason: unknown) => unhandled.push(reason)
  process.on('unhandledRejection', onUnhandled)
  t.teardown(() => process.off('unhandledRejection', onUnhandled))
  const controller = new AbortController()
  controller.abort()
  let rejectLater: (error: Error) => void = () => {}
  // Like a socket write whose callback fails after the transfer was cancelled (ERR_SOCKET_CLOSED).
  const write = new Promise<void>((_, reject) => {
    rejectLater = reject
  })
  await t.throwsAsync(untilAborted(write, controller.signal), { name: 'AbortError' })
  rejectLater(Object.assign(new Error('Socket is closed'), { code: 'ERR_SOCKET_CLOSED' }))
  // Unhandled rejections are reported after the microtask queue drains.
  await new Promise((resolve) => setTimeout(resolve, 20))
  t.deepEqual(unhandled, [])
})

test('untilAborted settles with the promise, or with the abort that comes first', async (t) => {
  t.is(await untilAborted(Promise.resolve(7), new AbortController().signal), 7)
  const controller = new AbortController()
  const never = new Promise<number>(() => {})
  const raced = untilAborted(never, controller.signal)
  controller.abort()
  await t.throwsAsync(raced, { name: 'AbortError' })
})
