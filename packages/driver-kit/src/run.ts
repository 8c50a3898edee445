import { runWithDeadline } from '@vigil/kit'
import type { Action, ActionContext, Driver, MonitorResult, OptionalAction } from './contract.js'
import { DriverError } from './contract.js'

/**
 * Runs one action with its timeout: the action's signal is aborted when time runs out, and the
 * caller gets a transient DriverError without waiting for a driver that ignores the signal.
 * Anything thrown that is not a DriverError is treated as transient.
 */
export async function runAction(
  driver: Driver,
  action: Action,
  ctx: Omit<ActionContext, 'signal'> & { signal?: AbortSignal },
  timeoutMs = driver.timeouts[action] ?? driver.timeouts.restart,
): Promise<MonitorResult | undefined> {
  const run = async (signal: AbortSignal): Promise<MonitorResult | undefined> => {
    const actionCtx: ActionContext = { ...ctx, signal }
    const start = driver.start?.bind(driver)
    const stop = driver.stop?.bind(driver)
    switch (action) {
      case 'monitor':
        return driver.monitor(actionCtx)
      case 'start':
        if (!start) throw new DriverError('config', 'this driver cannot start')
        await start(actionCtx)
        return undefined
      case 'stop':
        if (!stop) throw new DriverError('config', 'this driver cannot stop')
        await stop(actionCtx)
        return undefined
      case 'restart':
        if (!stop || !start) throw new DriverError('config', 'this driver cannot restart')
        await stop(actionCtx)
        await start(actionCtx)
        return undefined
      case 'migrate':
        if (!ctx.target) throw new DriverError('config', 'migrate needs a target node')
        return runOptional(driver, action, actionCtx)
      case 'reset':
      case 'reboot':
      case 'suspend':
      case 'resume':
        return runOptional(driver, action, actionCtx)
    }
  }
  try {
    return await runWithDeadline(run, {
      timeoutMs,
      signal: ctx.signal,
      onTimeout: () => new DriverError('transient', `${action} did not finish within ${timeoutMs} ms`),
    })
  } catch (err) {
    if (err instanceof DriverError) throw err
    throw new DriverError('transient', `${action} failed: ${(err as Error).message}`, { cause: err })
  }
}

async function runOptional(driver: Driver, action: OptionalAction, ctx: ActionContext): Promise<undefined> {
  const act = driver[action]?.bind(driver)
  if (!act) throw new DriverError('config', `this driver cannot ${action}`)
  await act(ctx)
  return undefined
}
