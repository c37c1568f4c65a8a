/**
 * Zero-copy HTTP file responses for `node:http`, `node:https` and the `node:http2`
 * compatibility API: {@link serveFile} answers one request with one file,
 * {@link createStaticHandler} serves a directory as a request handler or connect/Express
 * middleware. The headers go through the response object as usual. Over HTTP/1 the body goes
 * from the file to the socket with `sendfile(2)` through sendFile, queued behind the headers in
 * the socket's own write queue, so keep-alive and pipelining keep working (HTTPS falls back to
 * streams inside sendFile); when something between the response and the socket frames or
 * transforms the body (a compression middleware), the body goes through `res.write` instead.
 * Over HTTP/2 the stream sends the file itself (`respondWithFD`).
 *
 * The modules: `options` (validated once), `target` (URL to a path under the root), `files`
 * (opening, and the statuses fs errors answer), `ranges`, `conditionals`, `encoding`
 * (Accept-Encoding), `disposition` (downloads) and `multipart` (the shape of a body) as pure
 * RFC logic, `response` (head and refusals), `file-response`, `body` and `http2` (the answer with
 * a file and its body), `serve-file` and `static` (the public entry points). The Fastify plugin
 * (`lib/fastify.ts`) is a subpath of its own, `@zerocopy/sendfile/fastify`.
 */
export { serveFile } from './serve-file.js'
export { createStaticHandler } from './static.js'
export type { ServeFileOptions, StaticOptions, StaticHandler, SetHeaders } from './options.js'
