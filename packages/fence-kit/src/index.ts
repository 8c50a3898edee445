export {
  type FenceContext,
  type FenceDevice,
  type FenceDriverFactory,
  FenceError,
  type FenceErrorKind,
  type FenceOp,
  type Outlet,
  type PowerState,
} from './contract.js'
export { type FenceRun, type FenceStep, fenceNode } from './fence-node.js'
export { runFenceOp } from './run.js'
