export { phiParams } from './context.js'
export { initialState, RESOURCE_ACTIONS, step } from './engine.js'
export { resourceHealthScore } from './health.js'
export { emptyPhi, type PhiParams, type PhiState, phi, phiOf, recordArrival, silenceToReach } from './phi.js'
export { type WhatIf, whatIfPlan } from './plan.js'
export { type PlanView, planView, planViewTransfer, stateFromPlanView } from './plan-view.js'
export {
  type ClusterSpec,
  checkClusterSpec,
  clusterSpecSchema,
  type NodeSpec,
  policyOf,
  type ResourcePolicy,
  type ResourceSpec,
} from './spec.js'
export { actionTimeoutNotes, earliestFence, type IsolationTiming, isolationTimingProblem } from './timing.js'
export { type AgentAction, AgentTranslation, actionResultInput, commandFor } from './translation.js'
export type * from './types.js'
