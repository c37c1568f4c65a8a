/** How the command line fails: exit codes, usage errors, and one-line messages for everything else. */

/** Exit codes, as shells and `sysexits`-minded tools use them. */
export const EXIT_OK = 0
/** A transfer or a server that failed at run time (a missing file, a refused connection, a port in use). */
export const EXIT_FAILURE = 1
/** Bad arguments: an unknown flag, a missing operand, a value out of range. */
export const EXIT_USAGE = 2
/** Killed by a signal: 128 + the signal's number, as a shell reports it (130 for SIGINT). */
export const exitForSignal = (signal: 'SIGINT' | 'SIGTERM'): number => 128 + (signal === 'SIGINT' ? 2 : 15)

/** A mistake in the command line: reported with the command's usage line, exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError'
}

/** A failure with a message meant for the user as it is (no code to add): exit code 1. */
export class CommandFailure extends Error {
  override name = 'CommandFailure'
}

/** Stopped by SIGINT or SIGTERM: exit code 128 + the signal. */
export class Interrupted extends Error {
  override name = 'Interrupted'
  constructor(readonly signal: 'SIGINT' | 'SIGTERM') {
    super(`interrupted by ${signal}`)
  }
}

/**
 * One line for any error: a system error's message already starts with its code
 * (`ENOENT: no such file or directory, open 'x'`); others get the code in front when they have
 * one (`ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:9`). Never a stack trace.
 */
export function describeError(error: unknown): string {
  if (!(error instanceof Error)) return String(error)
  const code = (error as NodeJS.ErrnoException).code
  const message = error.message.split('\n')[0]
  if (typeof code !== 'string' || message.startsWith(code)) return message
  return `${code}: ${message}`
}
