import type { Action, ActionContext, Driver, MonitorResult } from './contract.js'
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
  const controller = new AbortController()
  const onOuterAbort = () => controller.abort(ctx.signal?.reason)
  ctx.signal?.addEventListener('abort', onOuterAbort, { once: true })
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      controller.abort(new Error('timeout'))
      reject(new DriverError('transient', `${action} did not finish within ${timeoutMs} ms`))
    }, timeoutMs)
  })
  const actionCtx: ActionContext = { ...ctx, signal: controller.signal }
  const work = (async (): Promise<MonitorResult | undefined> => {
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
      case 'reset':
      case 'reboot': {
        const act = driver[action]?.bind(driver)
        if (!act) throw new DriverError('config', `this driver cannot ${action}`)
        await act(actionCtx)
        return undefined
      }
    }
  })()
  try {
    return await Promise.race([work, timeout])
  } catch (err) {
    if (err instanceof DriverError) throw err
    throw new DriverError('transient', `${action} failed: ${(err as Error).message}`, { cause: err })
  } finally {
    clearTimeout(timer)
    ctx.signal?.removeEventListener('abort', onOuterAbort)
    work.catch(() => {}) // a driver that ignored the signal must not surface as unhandled later
  }
}
