// The only place the CLI reads process.env.
export const cliEnv = {
  hubUrl: process.env.VIGIL_HUB_URL ?? 'http://127.0.0.1:7470',
  noColor: process.env.NO_COLOR !== undefined,
} as const
