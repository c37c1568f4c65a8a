/** Options of the helpers. */

/** Options of the low-level {@link sendfile}. */
export interface SendfileOptions {
  /**
   * Stops the transfer: the promise rejects with an `AbortError` whose `bytesSent` says how far
   * it got, and the transfer's private duplicates of `outFd` and `inFd` are closed.
   */
  signal?: AbortSignal
}

/** Options of {@link sendFile}. */
export interface SendFileOptions {
  /** First byte of the source to send. Default 0. */
  offset?: number
  /** Bytes to send. Default: to end of file; past the end, what remains is sent. */
  length?: number
  /** Aborts the transfer: the promise rejects with an `AbortError`. */
  signal?: AbortSignal
  /**
   * Called with the cumulative bytes sent at least once per 2 MiB chunk and once at the end.
   * `total` is the bytes this call will send, or -1 when the source's size is unknown (pipes,
   * /proc files). A throw from it aborts the transfer with that error.
   */
  onProgress?: (bytesSent: number, total: number) => void
  /** When zero-copy is impossible, send the same bytes through streams. Default true. */
  fallback?: boolean
}

/** Options of {@link copyFile}. */
export interface CopyFileOptions {
  /** First byte of the source to copy. Default 0. */
  offset?: number
  /** Bytes to copy. Default: to end of file. */
  length?: number
  /** Where the bytes land in the destination. Default 0. */
  destinationOffset?: number
  /** `fs.constants.COPYFILE_EXCL` fails with `EEXIST` when a destination path exists. */
  mode?: number
  /** Aborts the copy: the promise rejects with an `AbortError`. */
  signal?: AbortSignal
  /** Cumulative bytes copied, at least once per 2 MiB chunk and once at the end; `total` as in {@link SendFileOptions.onProgress}. */
  onProgress?: (bytesCopied: number, total: number) => void
}

/** Options of {@link copyFileSync}. */
export type CopyFileSyncOptions = Pick<CopyFileOptions, 'offset' | 'length' | 'destinationOffset' | 'mode'>
