import { describeFlags, runService } from '@vigil/kit'
import { hubFlags, loadHubConfig } from './config.js'
import { hubEnv } from './env.js'
import { startHub } from './hub.js'

export const HUB_USAGE = `Usage: vigil hub [options]\n\nStarts the hub (embedded MQTT broker unless --mqtt-url is given).\n\n${describeFlags(hubFlags)}`

/**
 * `vigil hub`: runs until SIGINT/SIGTERM. Exit codes: 0 clean stop, 2 bad configuration, 1 the
 * environment (an address in use, a database it cannot open) or a part dead at run time
 * (docs/operations.md "When the hub fails").
 */
export function runHubCli(argv: string[]): Promise<number> {
  return runService(argv, {
    name: 'hub',
    usage: HUB_USAGE,
    flags: hubFlags,
    envConfigFile: hubEnv.configFile,
    load: loadHubConfig,
    start: (config, log) =>
      startHub(config, { log, mqttPassword: hubEnv.mqttPassword, version: hubEnv.version }),
    ready: (hub, _config, log) =>
      log.info(
        {
          httpUrl: hub.httpUrl,
          mqttUrl: hub.mqttUrl,
          liveUrl: hub.liveUrl,
          metricsUrl: hub.metricsUrl,
          epoch: hub.epoch,
          commandPublicKeyFile: hub.commandPublicKeyFile,
        },
        'hub ready',
      ),
    fatal: (hub) => hub.fatal,
    stop: (hub) => hub.close(),
  })
}
