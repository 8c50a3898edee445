export { EXIT, main } from './main.js'
export { renderStatus } from './status.js'
