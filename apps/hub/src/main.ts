import { ConfigError, createLogger, describeFlags, parseFlags, startupFailure, VigilError } from '@vigil/kit'
import { type HubConfig, hubFlags, loadHubConfig } from './config.js'
import { hubEnv } from './env.js'
import { startHub } from './hub.js'

export const HUB_USAGE = `Usage: vigil hub [options]\n\nStarts the hub (embedded MQTT broker unless --mqtt-url is given).\n\n${describeFlags(hubFlags)}`

/** `vigil hub`: runs until SIGINT/SIGTERM. Exit codes: 0 clean stop, 2 bad config, 1 other failure. */
export async function runHubCli(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(HUB_USAGE)
    return 0
  }
  let config: HubConfig
  try {
    const flags = parseFlags(argv, hubFlags)
    config = loadHubConfig(flags.configFile ?? hubEnv.configFile, flags.overrides)
  } catch (err) {
    if (err instanceof ConfigError || (err instanceof VigilError && err.code === 'config_unreadable')) {
      console.error(`vigil hub: invalid configuration\n${err.message}`)
      return 2
    }
    throw err
  }
  const log = createLogger('hub', config.log.level)
  let hub: Awaited<ReturnType<typeof startHub>>
  try {
    hub = await startHub(config, { log, mqttPassword: hubEnv.mqttPassword, version: hubEnv.version })
  } catch (err) {
    return startupFailure('hub', err)
  }
  log.info(
    {
      httpUrl: hub.httpUrl,
      mqttUrl: hub.mqttUrl,
      liveUrl: hub.liveUrl,
      metricsUrl: hub.metricsUrl,
      epoch: hub.epoch,
    },
    'hub ready',
  )
  await new Promise<void>((resolve) => {
    const stop = () => resolve()
    process.once('SIGINT', stop)
    process.once('SIGTERM', stop)
  })
  log.info('hub stopping')
  await hub.close()
  return 0
}
