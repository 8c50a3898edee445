export { main, EXIT } from './main.js'
export { renderStatus } from './status.js'
