/** The `zerocopy` binary as a process, the way a user runs it: spawn, watch its output, wait for its exit. */
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import * as path from 'node:path'
import type { ExecutionContext } from 'ava'

export const BIN = path.join(__dirname, '..', 'bin', 'zerocopy.js')

/** Every wait in these tests ends by itself: a hung process fails its test instead of the run. */
export const WAIT_MS = 20_000

export interface Finished {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

/** Runs `zerocopy args…` to its end with pipes for every stream (so no terminal); kills it after WAIT_MS. */
export function runCli(args: string[], options: { cwd?: string } = {}): Promise<Finished> {
  return new Promise((resolve) => {
    // A non-zero exit is an answer here, not an error: the callback's error is not needed.
    const child = execFile(process.execPath, [BIN, ...args], { cwd: options.cwd, timeout: WAIT_MS }, (_error, stdout, stderr) =>
      resolve({ code: child.exitCode, signal: child.signalCode, stdout, stderr }),
    )
  })
}

/** A running `zerocopy`, its output as it comes. */
export class CliProcess {
  readonly child: ChildProcess
  stdout = ''
  stderr = ''
  stdoutBytes: Buffer[] = []
  readonly exited: Promise<Finished>

  constructor(t: ExecutionContext, args: string[], options: { cwd?: string } = {}) {
    this.child = spawn(process.execPath, [BIN, ...args], { cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] })
    this.child.stdout?.on('data', (chunk: Buffer) => {
      this.stdoutBytes.push(chunk)
      this.stdout += chunk.toString('utf8')
    })
    this.child.stderr?.on('data', (chunk: Buffer) => (this.stderr += chunk.toString('utf8')))
    this.exited = new Promise((resolve) => this.child.once('close', (code, signal) => resolve({ code, signal, stdout: this.stdout, stderr: this.stderr })))
    t.teardown(() => {
      if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL')
    })
  }

  /** The first match of `pattern` in stdout or stderr; rejects if the process exits first or WAIT_MS passes. */
  waitFor(stream: 'stdout' | 'stderr', pattern: RegExp): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const source = stream === 'stdout' ? this.child.stdout : this.child.stderr
      const check = () => {
        const match = this[stream].match(pattern)
        if (match === null) return false
        finish()
        resolve(match)
        return true
      }
      const onExit = () => {
        // The last chunk may come with the exit.
        setImmediate(() => {
          if (check()) return
          finish()
          reject(new Error(`exited before ${stream} matched ${pattern}:\n${this.stdout}\n${this.stderr}`))
        })
      }
      const timer = setTimeout(() => {
        finish()
        reject(new Error(`${stream} did not match ${pattern} within ${WAIT_MS} ms:\n${this.stdout}\n${this.stderr}`))
      }, WAIT_MS)
      const finish = () => {
        clearTimeout(timer)
        source?.off('data', onData)
        this.child.off('close', onExit)
      }
      const onData = () => void check()
      source?.on('data', onData)
      this.child.once('close', onExit)
      check()
    })
  }

  /** The exit, or a rejection after WAIT_MS. */
  finished(): Promise<Finished> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>(
      (_, reject) => (timer = setTimeout(() => reject(new Error(`still running after ${WAIT_MS} ms:\n${this.stdout}\n${this.stderr}`)), WAIT_MS)),
    )
    return Promise.race([this.exited, timeout]).finally(() => clearTimeout(timer))
  }
}
