// The only place the CLI reads process.env.
export const cliEnv = {
  hubUrl: process.env.VIGIL_HUB_URL ?? 'http://127.0.0.1:7470',
  noColor: process.env.NO_COLOR !== undefined,
  /** Who an operator action is recorded as, unless --by says. */
  user: process.env.USER ?? process.env.LOGNAME ?? 'operator',
  /** Bearer token for the hub's API (or --token-file). */
  token: process.env.VIGIL_TOKEN || undefined,
} as const
