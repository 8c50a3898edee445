// The only place the hub reads process.env.
export const hubEnv = {
  configFile: process.env.VIGIL_HUB_CONFIG,
  mqttPassword: process.env.VIGIL_MQTT_PASSWORD,
  version: process.env.npm_package_version ?? '0.1.0',
} as const
