import { defineConfig } from 'vitest/config'

// Real processes and brokers: one file at a time keeps them from competing for two cores.
export default defineConfig({
  test: {
    include: ['e2e/**/*.test.ts', 'observability/**/*.test.ts'],
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
})
