#!/usr/bin/env node
// Builds grafana/dashboards/*.json from the definitions below: one place for the queries, one
// layout rule, consistent variables. `node grafana/build.mjs` rewrites the files; `--check` exits 1
// if a committed file differs (the test suite runs it). test/e2e/observability.test.ts runs every
// query below against a Prometheus scraping a real failover.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
// biome-ignore lint/suspicious/noTemplateCurlyInString: a Grafana variable, not a JS template
const DS = { type: 'prometheus', uid: '${datasource}' }
const C = 'cluster=~"$cluster"'

/** Dashboard variables. Every query selects on cluster, a target label set in the scrape config. */
const datasourceVar = {
  name: 'datasource',
  label: 'Data source',
  type: 'datasource',
  query: 'prometheus',
  current: {},
  hide: 0,
}
const queryVar = (name, label, query, { multi = false, includeAll = false } = {}) => ({
  name,
  label,
  type: 'query',
  datasource: DS,
  query: { query, refId: `${name}-var` },
  definition: query,
  refresh: 2,
  sort: 1,
  multi,
  includeAll,
  ...(includeAll ? { allValue: '.+' } : {}),
  current: {},
  hide: 0,
})
const clusterVar = queryVar('cluster', 'Cluster', 'label_values(vigil_hub_epoch, cluster)')
const nodeVar = queryVar('node', 'Node', `label_values(vigil_node_health_score{${C}}, node)`, {
  multi: true,
  includeAll: true,
})
const resourceVar = queryVar(
  'resource',
  'Resource',
  `label_values(vigil_resource_health_score{${C}}, resource)`,
  {
    multi: true,
    includeAll: true,
  },
)

/** Decisions drawn on time series: what Vigil did, when. */
const decisionAnnotations = [
  {
    name: 'Fence and failover decisions',
    datasource: DS,
    enable: true,
    iconColor: 'red',
    expr: `sum by (kind, rule) (changes(vigil_decisions_total{${C}, kind=~"fence|fence-result|place|blocked|freeze|recover-vm"}[$__rate_interval])) > 0`,
    step: '15s',
    titleFormat: '{{kind}}',
    textFormat: 'rule {{rule}}',
    useValueForTime: false,
  },
]

const target = (expr, legend = '', extra = {}) => ({ expr, legendFormat: legend, range: true, ...extra })

function panel(type, title, targets, opts = {}) {
  const {
    w = 12,
    h = 8,
    unit,
    description,
    min,
    max,
    thresholds,
    mappings,
    options = {},
    custom = {},
    transformations,
  } = opts
  return {
    type,
    title,
    description,
    datasource: DS,
    gridPos: { w, h },
    targets: targets.map((t, i) => ({ refId: String.fromCharCode(65 + i), datasource: DS, ...t })),
    fieldConfig: {
      defaults: {
        ...(unit ? { unit } : {}),
        ...(min !== undefined ? { min } : {}),
        ...(max !== undefined ? { max } : {}),
        ...(thresholds ? { thresholds: { mode: 'absolute', steps: thresholds } } : {}),
        ...(mappings ? { mappings } : {}),
        custom,
      },
      overrides: [],
    },
    options,
    ...(transformations ? { transformations } : {}),
  }
}
const stat = (title, expr, opts = {}) =>
  panel('stat', title, [target(expr, opts.legend ?? '', { instant: true, range: false })], {
    w: 4,
    h: 4,
    options: { reduceOptions: { calcs: ['lastNotNull'] }, colorMode: 'background', graphMode: 'none' },
    ...opts,
  })
const series = (title, targets, opts = {}) => panel('timeseries', title, targets, opts)
const table = (title, targets, opts = {}) =>
  panel(
    'table',
    title,
    targets.map((t) => ({ ...t, instant: true, range: false, format: 'table' })),
    { w: 12, h: 8, ...opts },
  )
const green = (red) => [
  { color: 'green', value: null },
  { color: 'red', value: red },
]
const red = (greenAt) => [
  { color: 'red', value: null },
  { color: 'green', value: greenAt },
]

/** Lays panels out left to right, wrapping at 24 columns. */
function layout(panels) {
  let x = 0
  let y = 0
  let rowH = 0
  return panels.map((p, i) => {
    if (x + p.gridPos.w > 24) {
      y += rowH
      x = 0
      rowH = 0
    }
    const placed = { ...p, id: i + 1, gridPos: { ...p.gridPos, x, y } }
    x += p.gridPos.w
    rowH = Math.max(rowH, p.gridPos.h)
    return placed
  })
}
function dashboard(uid, title, description, vars, panels, links = true) {
  return {
    uid,
    title,
    description,
    tags: ['vigil'],
    timezone: 'browser',
    editable: true,
    graphTooltip: 1,
    refresh: '10s',
    schemaVersion: 39,
    version: 1,
    time: { from: 'now-1h', to: 'now' },
    templating: { list: [datasourceVar, ...vars] },
    annotations: {
      list: [
        {
          builtIn: 1,
          datasource: { type: 'grafana', uid: '-- Grafana --' },
          enable: true,
          hide: true,
          iconColor: 'rgba(0, 211, 255, 1)',
          name: 'Annotations & Alerts',
          type: 'dashboard',
        },
        ...decisionAnnotations,
      ],
    },
    links: links
      ? [
          {
            type: 'dashboards',
            tags: ['vigil'],
            asDropdown: true,
            title: 'Vigil',
            includeVars: true,
            keepTime: true,
          },
        ]
      : [],
    panels: layout(panels),
  }
}

const N = `${C}, node=~"$node"`
const R = `${C}, resource=~"$resource"`

export const dashboards = {
  'vigil-overview': dashboard(
    'vigil-overview',
    'Vigil / Cluster overview',
    'Is everything up, what is Vigil doing about what is not, and could it cope with one more failure?',
    [clusterVar],
    [
      stat('Nodes healthy', `sum(vigil_node_condition{${C}, condition="healthy"})`, { thresholds: red(1) }),
      stat(
        'Nodes dead or cut off',
        `sum(vigil_node_condition{${C}, condition=~"dead|isolated|partitioned|frozen"})`,
        {
          thresholds: green(1),
        },
      ),
      stat('Resources running', `sum(vigil_resources{${C}, phase="running"})`, { thresholds: red(1) }),
      stat('Resources blocked or waiting', `sum(vigil_resources{${C}, phase=~"blocked|waiting"})`, {
        thresholds: green(1),
      }),
      stat('Failovers (range)', `sum(increase(vigil_failovers_total{${C}}[$__range])) or vector(0)`, {
        thresholds: green(1),
      }),
      stat('Unplaceable if a node died', `max(vigil_plan_unplaceable_resources{${C}}) or vector(0)`, {
        thresholds: green(1),
        description: 'The what-if plan: the worst node to lose, and how many resources could not be placed.',
      }),
      table(
        'Nodes',
        [
          target(`vigil_node_condition{${C}} == 1`),
          target(`vigil_node_health_score{${C}}`),
          target(`vigil_node_fenceable{${C}}`),
          target(`vigil_node_maintenance{${C}}`),
        ],
        {
          w: 12,
          description:
            'Condition (engine classification), health score, whether it can be fenced now, maintenance.',
          options: { showHeader: true },
        },
      ),
      table(
        'Resources',
        [target(`vigil_resource_phase{${C}} == 1`), target(`vigil_resource_health_score{${C}}`)],
        {
          w: 12,
          description:
            'Phase and node per resource; health 100 running, 50 recovering, 0 blocked or stopped.',
        },
      ),
      table('Waiting on', [target(`vigil_resource_waiting_seconds{${C}}`)], {
        w: 24,
        h: 6,
        description:
          'Every resource not settled (waiting, blocked, starting, stopping, recovering, migrating): for how long (s) and the rule it waits on: order.depends-on, placement.none, wait.node-dead, wait.fence-held, ... `vigil why <resource>` tells the rest. Empty is good.',
        options: { showHeader: true, sortBy: [{ displayName: 'Value', desc: true }] },
      }),
      table('VMs by hypervisor', [target(`vigil_vm_info{${C}}`)], {
        w: 24,
        h: 6,
        description:
          'Where each vm runs (or is paused, or failed) and what runs it there: kvm, qemu (no hardware virtualization), xen, vsphere. A cluster may mix them.',
        options: { showHeader: true, sortBy: [{ displayName: 'hypervisor' }] },
        // One row per vm and node: its labels, without the constant value and the scrape's labels.
        transformations: [
          {
            id: 'organize',
            options: {
              excludeByName: {
                Time: true,
                Value: true,
                __name__: true,
                cluster: true,
                instance: true,
                job: true,
              },
              indexByName: { resource: 0, node: 1, hypervisor: 2 },
            },
          },
        ],
      }),
      series(
        'Node conditions',
        [target(`sum by (condition) (vigil_nodes_by_condition{${C}})`, '{{condition}}')],
        {
          custom: { stacking: { mode: 'normal' }, fillOpacity: 40 },
        },
      ),
      series('Resource phases', [target(`sum by (phase) (vigil_resources{${C}})`, '{{phase}}')], {
        custom: { stacking: { mode: 'normal' }, fillOpacity: 40 },
      }),
      series(
        'Decisions by kind',
        [target(`sum by (kind) (rate(vigil_decisions_total{${C}}[$__rate_interval]))`, '{{kind}}')],
        { unit: 'ops', w: 24 },
      ),
    ],
  ),

  'vigil-node': dashboard(
    'vigil-node',
    'Vigil / Node',
    'One node as Vigil sees it: every heartbeat channel, its classification, its checks and whether it can be fenced.',
    [clusterVar, nodeVar],
    [
      series('Health score', [target(`vigil_node_health_score{${N}}`, '{{node}}')], { min: 0, max: 100 }),
      panel(
        'state-timeline',
        'Condition',
        [target(`vigil_node_condition{${N}} == 1`, '{{node}}: {{condition}}')],
        {
          description: 'The engine classification over time: one row per node and condition it was in.',
        },
      ),
      series('Suspicion (phi) per channel', [target(`vigil_heartbeat_phi{${N}}`, '{{node}} {{channel}}')], {
        description:
          'phi accrual per heartbeat channel; the engine suspects a channel past its threshold (8 by default).',
      }),
      series('Checks failing', [
        target(
          `sum by (node, driver, target) (vigil_check_state{${N}, state=~"failed|stopped|unknown"})`,
          '{{node}} {{driver}} {{target}}',
        ),
      ]),
      table('Checks', [target(`vigil_check_state{${N}} == 1`)], { w: 12 }),
      table('Check values', [target(`vigil_check_value{${N}}`)], { w: 12 }),
      series('Load (1 min)', [target(`vigil_node_load1{${N}}`, '{{node}}')], { w: 8 }),
      series('Memory available', [target(`vigil_node_memory_available_bytes{${N}}`, '{{node}}')], {
        unit: 'bytes',
        w: 8,
      }),
      series(
        'Fenceable now / maintenance',
        [
          target(`vigil_node_fenceable{${N}}`, 'fenceable {{node}}'),
          target(`vigil_node_maintenance{${N}}`, 'maintenance {{node}}'),
        ],
        { w: 8, min: 0, max: 1 },
      ),
      series(
        'Condition changes',
        [
          target(
            `sum by (condition) (increase(vigil_node_condition_changes_total{${C}}[$__rate_interval]))`,
            '{{condition}}',
          ),
        ],
        { w: 12 },
      ),
      series('Agent versions', [target(`vigil_agent_info{${N}}`, '{{node}} {{version}}')], { w: 12 }),
    ],
  ),

  'vigil-resource': dashboard(
    'vigil-resource',
    'Vigil / Resource',
    'Where a resource runs, its phase over time, its failures and moves.',
    [clusterVar, resourceVar],
    [
      series('Health score', [target(`vigil_resource_health_score{${R}}`, '{{resource}}')], {
        min: 0,
        max: 100,
      }),
      table('Where it runs', [target(`vigil_resource_phase{${R}} == 1`)], {
        description: 'Phase and node of each selected resource.',
      }),
      series(
        'Running on',
        [
          target(
            `sum by (resource, node) (vigil_resource_phase{${R}, phase="running"})`,
            '{{resource}} on {{node}}',
          ),
        ],
        {
          description:
            'A line per node a resource ran on: a failover shows as one line ending and another starting.',
        },
      ),
      series('Failures counted by the restart ladder', [
        target(`vigil_resource_failures{${R}}`, '{{resource}}'),
      ]),
      series('Failovers', [
        target(`sum by (resource) (increase(vigil_failovers_total{${R}}[$__rate_interval]))`, '{{resource}}'),
      ]),
      series('Maintenance', [target(`vigil_resource_maintenance{${R}}`, '{{resource}}')], { min: 0, max: 1 }),
      series(
        'In-guest heartbeat suspicion (phi)',
        [target(`vigil_guest_heartbeat_phi{${R}}`, '{{resource}}')],
        {
          w: 24,
          description:
            "How late each vm's in-guest heartbeat is, as phi accrual: the engine calls the guest hung (and resets it) past its threshold. Only vms with a guest heartbeat have a line.",
        },
      ),
      series(
        'Engine actions',
        [target(`sum by (type) (increase(vigil_engine_actions_total{${C}}[$__rate_interval]))`, '{{type}}')],
        { w: 24 },
      ),
    ],
  ),

  'vigil-fencing': dashboard(
    'vigil-fencing',
    'Vigil / Fencing and failover',
    'Fence devices, fence runs and their outcomes, and the decisions around them.',
    [clusterVar],
    [
      stat(
        'Fence runs that powered off (range)',
        `sum(increase(vigil_fence_operations_total{${C}, outcome="off"}[$__range])) or vector(0)`,
        {
          w: 6,
        },
      ),
      stat(
        'Fence runs that failed (range)',
        `sum(increase(vigil_fence_operations_total{${C}, outcome!="off"}[$__range])) or vector(0)`,
        {
          w: 6,
          thresholds: green(1),
        },
      ),
      stat('Nodes that cannot be fenced now', `count(vigil_node_fenceable{${C}} == 0) or vector(0)`, {
        w: 6,
        thresholds: green(1),
      }),
      stat('Fence devices down', `count(vigil_fence_device_up{${C}} == 0) or vector(0)`, {
        w: 6,
        thresholds: green(1),
      }),
      series('Fence runs by device and outcome', [
        target(
          `sum by (device, outcome) (increase(vigil_fence_operations_total{${C}}[$__rate_interval]))`,
          '{{device}} {{outcome}}',
        ),
      ]),
      series(
        'Fence duration (p50, p99)',
        [
          target(
            `histogram_quantile(0.5, sum by (le, driver) (rate(vigil_fence_duration_seconds_bucket{${C}}[$__rate_interval])))`,
            'p50 {{driver}}',
          ),
          target(
            `histogram_quantile(0.99, sum by (le, driver) (rate(vigil_fence_duration_seconds_bucket{${C}}[$__rate_interval])))`,
            'p99 {{driver}}',
          ),
        ],
        { unit: 's' },
      ),
      series('Fence device health', [target(`vigil_fence_device_up{${C}}`, '{{device}} ({{driver}})')], {
        description: '1 answers and accepts the credentials, 0 not, -1 not checked yet.',
      }),
      series('Fenceable now', [target(`vigil_node_fenceable{${C}}`, '{{node}}')], { min: 0, max: 1 }),
      series('Fence and placement decisions', [
        target(
          `sum by (rule) (increase(vigil_decisions_total{${C}, kind=~"fence|fence-result|place|refuse"}[$__rate_interval]))`,
          '{{rule}}',
        ),
      ]),
      series('Governor window', [target(`vigil_governor_window_actions{${C}}`, '{{action}}')], {
        description:
          "Fences and restarts in the blast-radius governor's window; at its limit Vigil holds back.",
      }),
      series(
        'Failovers',
        [
          target(
            `sum by (resource) (increase(vigil_failovers_total{${C}}[$__rate_interval]))`,
            '{{resource}}',
          ),
        ],
        {
          w: 24,
        },
      ),
    ],
  ),

  'vigil-hub': dashboard(
    'vigil-hub',
    'Vigil / Hub internals',
    'Is the hub keeping up: ingest, engine latency, commands, broker, process.',
    [clusterVar],
    [
      series(
        'Messages received by channel',
        [
          target(
            `sum by (channel) (rate(vigil_messages_received_total{${C}}[$__rate_interval]))`,
            '{{channel}}',
          ),
        ],
        { unit: 'ops' },
      ),
      series(
        'Messages rejected by reason',
        [
          target(
            `sum by (reason) (rate(vigil_messages_rejected_total{${C}}[$__rate_interval]))`,
            '{{reason}}',
          ),
        ],
        { unit: 'ops' },
      ),
      series(
        'Heartbeats received and missed',
        [
          target(`sum(rate(vigil_heartbeats_received_total{${C}}[$__rate_interval]))`, 'received'),
          target(`sum(rate(vigil_heartbeats_missed_total{${C}}[$__rate_interval]))`, 'missed'),
        ],
        { unit: 'ops' },
      ),
      series(
        'Heartbeat delay (p50, p99)',
        [
          target(
            `histogram_quantile(0.5, sum by (le) (rate(vigil_heartbeat_delay_seconds_bucket{${C}}[$__rate_interval])))`,
            'p50',
          ),
          target(
            `histogram_quantile(0.99, sum by (le) (rate(vigil_heartbeat_delay_seconds_bucket{${C}}[$__rate_interval])))`,
            'p99',
          ),
        ],
        { unit: 's' },
      ),
      series(
        'Engine step and input delay (p99)',
        [
          target(
            `histogram_quantile(0.99, sum by (le) (rate(vigil_engine_step_duration_seconds_bucket{${C}}[$__rate_interval])))`,
            'step p99',
          ),
          target(
            `histogram_quantile(0.99, sum by (le) (rate(vigil_engine_input_delay_seconds_bucket{${C}}[$__rate_interval])))`,
            'input to decision p99',
          ),
        ],
        { unit: 's' },
      ),
      series(
        'Ingest duration (p99)',
        [
          target(
            `histogram_quantile(0.99, sum by (le) (rate(vigil_ingest_duration_seconds_bucket{${C}}[$__rate_interval])))`,
            'p99',
          ),
        ],
        { unit: 's' },
      ),
      series(
        'Hub group: who leads, under which epoch',
        [
          target(`vigil_hub_leader{${C}}`, 'leader {{instance}}'),
          target(`sum(increase(vigil_hub_takeovers_total{${C}}[$__rate_interval]))`, 'takeovers'),
        ],
        {
          description:
            'A hub group (docs/ha.md): exactly one hub at 1. None means no hub acts (etcd without quorum, or every hub down); a takeover is a step.',
          min: 0,
        },
      ),
      series('Hub epoch', [target(`vigil_hub_epoch{${C}}`, '{{instance}}')], {
        description:
          "The epoch the hub's commands carry: alone, each start; in a group, each takeover (an etcd revision).",
      }),
      series('Commands by action and status', [
        target(
          `sum by (action, status) (increase(vigil_commands_total{${C}}[$__rate_interval]))`,
          '{{action}} {{status}}',
        ),
      ]),
      series(
        'Command round trip (p99)',
        [
          target(
            `histogram_quantile(0.99, sum by (le, action) (rate(vigil_command_round_trip_seconds_bucket{${C}}[$__rate_interval])))`,
            '{{action}}',
          ),
        ],
        { unit: 's' },
      ),
      series(
        'Broker',
        [
          target(`vigil_broker_connected{${C}}`, 'hub connected'),
          target(`vigil_broker_clients{${C}}`, 'clients'),
          target(`vigil_live_feed_clients{${C}}`, 'live feed clients'),
        ],
        { w: 8 },
      ),
      series(
        'Hub CPU',
        [target(`rate(vigil_hub_process_cpu_seconds_total{${C}}[$__rate_interval])`, 'cpu')],
        {
          unit: 'percentunit',
          w: 8,
        },
      ),
      series(
        'Hub memory and event loop lag',
        [
          target(`vigil_hub_process_resident_memory_bytes{${C}}`, 'rss'),
          target(`vigil_hub_nodejs_eventloop_lag_p99_seconds{${C}}`, 'event loop lag p99'),
        ],
        { w: 8 },
      ),
      series('Hub epoch (restarts)', [target(`vigil_hub_epoch{${C}}`, 'epoch')], { w: 24, h: 5 }),
    ],
  ),
}

/** Every query of a dashboard, with where it comes from: panels, variables, annotations. */
export function queriesOf(d) {
  const out = []
  for (const p of d.panels)
    for (const t of p.targets ?? []) out.push({ where: `panel "${p.title}" ${t.refId}`, expr: t.expr })
  for (const v of d.templating.list)
    if (v.type === 'query') out.push({ where: `variable ${v.name}`, expr: v.definition })
  for (const a of d.annotations.list) if (a.expr) out.push({ where: `annotation "${a.name}"`, expr: a.expr })
  return out
}

function main() {
  const check = process.argv.includes('--check')
  const dir = join(here, 'dashboards')
  mkdirSync(dir, { recursive: true })
  let stale = 0
  for (const [name, d] of Object.entries(dashboards)) {
    const file = join(dir, `${name}.json`)
    const text = `${JSON.stringify(d, null, 2)}\n`
    let current = ''
    try {
      current = readFileSync(file, 'utf8')
    } catch {}
    if (current === text) continue
    if (check) {
      console.error(`${file} differs from grafana/build.mjs: run node grafana/build.mjs`)
      stale++
    } else {
      writeFileSync(file, text)
      console.log(`wrote ${file}`)
    }
  }
  process.exitCode = stale > 0 ? 1 : 0
}

if (process.argv[1] === fileURLToPath(import.meta.url)) main()
