export {
  type Action,
  type ActionContext,
  type Driver,
  DriverError,
  type DriverErrorKind,
  type DriverFactory,
  type Hypervisor,
  type MonitorResult,
  type MonitorState,
  type OptionalAction,
} from './contract.js'
export { runAction } from './run.js'
