#!/usr/bin/env node
'use strict'
/*
 * Starts kinesalite bound to 127.0.0.1. Its own CLI always listens on every
 * interface; the test suite must only ever be reachable on loopback.
 *
 * Usage: node kinesalite-loopback.js --port N [--shardLimit N] [--path DIR]
 *        [--createStreamMs N] [--deleteStreamMs N] [--updateStreamMs N]
 * Options are passed to kinesalite as its CLI would pass them (numbers as
 * numbers). Prints "Listening at http://127.0.0.1:PORT" once it accepts
 * connections; exits 1 if it cannot listen (for example the port is taken).
 */
const kinesalite = require('kinesalite')

const opts = {}
const args = process.argv.slice(2)
for (let i = 0; i < args.length; i++) {
  const m = /^--([A-Za-z][A-Za-z0-9]*)(?:=(.*))?$/.exec(args[i])
  if (!m) {
    console.error('kinesalite-loopback: unexpected argument: ' + args[i])
    process.exit(2)
  }
  let value = m[2]
  if (value === undefined) {
    if (i + 1 >= args.length) {
      console.error('kinesalite-loopback: --' + m[1] + ' needs a value')
      process.exit(2)
    }
    value = args[++i]
  }
  opts[m[1]] = /^[0-9]+$/.test(value) ? Number(value) : value
}

const host = opts.host || '127.0.0.1'
delete opts.host
const port = opts.port === undefined ? 4567 : opts.port
delete opts.port

const server = kinesalite(opts)
server.on('error', (err) => {
  console.error('kinesalite-loopback: ' + err.message)
  process.exit(1)
})
server.listen(port, host, () => {
  const a = server.address()
  console.log('Listening at http://%s:%d', a.address, a.port)
})
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0))
