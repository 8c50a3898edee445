import { z } from 'zod'
import type { FlagSpec } from './cli.js'

/** The `log` section every Vigil process has. */
export const logSectionSchema = z
  .strictObject({
    level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  })
  .prefault({})

/** Broker credentials of an `mqtt` section; secrets come from files or the environment, never the YAML. */
export const brokerAuthFields = {
  username: z.string().optional(),
  /** File holding the password (or set VIGIL_MQTT_PASSWORD); never put it in the config file. */
  passwordFile: z.string().optional(),
  caFile: z.string().optional(),
  /** Client certificate and key for mutual TLS (mqtts://); the certificate's CN is the node name. */
  certFile: z.string().optional(),
  keyFile: z.string().optional(),
}

/** The flags for `brokerAuthFields` and the log level, shared by every process. */
export const brokerAndLogFlags: Record<string, FlagSpec> = {
  'mqtt-username': { path: ['mqtt', 'username'], type: 'string', description: 'broker user name' },
  'mqtt-password-file': {
    path: ['mqtt', 'passwordFile'],
    type: 'string',
    description: 'file holding the broker password',
  },
  'mqtt-ca': { path: ['mqtt', 'caFile'], type: 'string', description: 'CA certificate for mqtts://' },
  'mqtt-cert': { path: ['mqtt', 'certFile'], type: 'string', description: 'client certificate (mutual TLS)' },
  'mqtt-key': { path: ['mqtt', 'keyFile'], type: 'string', description: 'client key (mutual TLS)' },
  'log-level': { path: ['log', 'level'], type: 'string', description: 'log level' },
}
