// ESM entry: the implementation is CommonJS (index.js, compiled from index.ts); this file
// re-exports it by name so `import { sendFile } from '@zerocopy/sendfile'` works everywhere.
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const api = require('./index.js')

export const {
  sendfile,
  sendfileSync,
  sendFile,
  copyFile,
  copyFileSync,
  socketFd,
  transferChannel,
  TRANSFER_CHANNEL_NAME,
  isNative,
  nativeError,
  serveFile,
  createStaticHandler,
} = api
export default api
