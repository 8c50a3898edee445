import { runWithDeadline } from '@vigil/kit'
import type { FenceContext, FenceDevice, FenceOp, Outlet, PowerState } from './contract.js'
import { FenceError } from './contract.js'

type Result<O extends FenceOp> = O extends 'status' ? PowerState : O extends 'list' ? Outlet[] : undefined

/**
 * Runs one operation with its timeout. When time runs out the operation's signal is aborted and the
 * caller gets an `unreachable` FenceError at once, without waiting for a device that ignores the
 * signal (a hung BMC is indistinguishable from an absent one). Anything thrown that is not a
 * FenceError also counts as unreachable: it can never be mistaken for a confirmed off.
 */
export async function runFenceOp<O extends FenceOp>(
  device: FenceDevice,
  op: O,
  plug: string | null,
  ctx: Omit<FenceContext, 'signal'> & { signal?: AbortSignal },
  timeoutMs = device.timeouts[op],
): Promise<Result<O>> {
  const run = (signal: AbortSignal): Promise<unknown> => {
    const opCtx: FenceContext = { log: ctx.log, signal }
    switch (op) {
      case 'status':
        return device.status(plug, opCtx)
      case 'off':
        return device.off(plug, opCtx)
      case 'on':
        return device.on(plug, opCtx)
      case 'reboot':
        return device.reboot(plug, opCtx)
      case 'list':
        return device.list(opCtx)
      default:
        return device.monitor(opCtx)
    }
  }
  try {
    return (await runWithDeadline(run, {
      timeoutMs,
      signal: ctx.signal,
      onTimeout: () => new FenceError('unreachable', `${op} got no answer within ${timeoutMs} ms`),
    })) as Result<O>
  } catch (err) {
    if (err instanceof FenceError) throw err
    throw new FenceError('unreachable', `${op} failed: ${(err as Error).message}`, { cause: err })
  }
}
