// aedes (npm) on 127.0.0.1: node aedes_server.mjs PORT NODE_MODULES_DIR. Started by
// tests/support/brokers.py; scripts/setup.sh installs aedes into .cache/node.
// In-memory persistence only: sessions do not survive a restart of this process.
import { createServer } from 'node:net'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'

const port = Number(process.argv[2])
const { Aedes } = await import(pathToFileURL(join(process.argv[3], 'aedes', 'aedes.js')).href)
const broker = await Aedes.createBroker()
const server = createServer(broker.handle)
server.listen(port, '127.0.0.1', () => console.log(`aedes listening on 127.0.0.1:${port}`))
const stop = () => broker.close(() => server.close(() => process.exit(0)))
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
