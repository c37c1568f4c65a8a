// ESM entry of @zerocopy/sendfile/fastify: the plugin is CommonJS (lib/fastify.js, compiled from
// lib/fastify.ts); its default export is the plugin, as `import sendfile from '…/fastify'` expects.
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const { fastifySendfile } = require('./lib/fastify.js')

export { fastifySendfile }
export default fastifySendfile
