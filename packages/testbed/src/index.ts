export { type Bmc, startBmc } from './bmc.js'
export { Daemon, freePort, udpPortTaken, waitFor } from './daemon.js'
export { type Pdu, startPdu } from './pdu.js'
