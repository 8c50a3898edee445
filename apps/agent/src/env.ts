// The only place the agent reads process.env.
export const agentEnv = {
  configFile: process.env.VIGIL_AGENT_CONFIG,
  mqttPassword: process.env.VIGIL_MQTT_PASSWORD,
  version: process.env.npm_package_version ?? '0.1.0',
} as const
