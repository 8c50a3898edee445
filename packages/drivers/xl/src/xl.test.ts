import { rejectedKeys } from '@vigil/kit'
import { describe, expect, test } from 'vitest'
import { xlConfigSchema } from './index.js'
import {
  classifyXlFailure,
  configFileDomainName,
  FAILURE_KIND,
  observe,
  parseXlList,
  parseXlListLong,
  parseXlState,
  rowMetrics,
  type XlFailure,
  xlArgs,
  xlCommandError,
  xlCondition,
} from './xl.js'

// `xl list` as Xen's tools/xl/xl_info.c prints it: a header with tabs before State and Time(s),
// then "%-40s %5d %5lu %5d     %c%c%c%c%c%c  %8.1f" per domain (rows made with that format).
const XL_LIST = `Name                                        ID   Mem VCPUs\tState\tTime(s)
Domain-0                                     0  2048     4     r-----   11794.3
db1                                          7  2048     2     -b----    5624.2
web 2                                        9  1019     1     ------       0.3
crashy                                      12   512     1     ---sc-      17.0
halted                                      13   512     1     ---s--       2.5
going                                       14   256     1     -----d       1.0
paused                                      15   512     1     --p---       8.0
rebooting                                   16   512     1     ---sr-       3.0
dog                                         17   512     1     ---sw-       4.0
db1--migratedaway                           18  2048     2     ---ss-    5600.0
`

// The example of xl(1) ("xl list"), whose header has spaces where xl prints tabs.
const XL_MAN_EXAMPLE = `    Name                                        ID   Mem VCPUs      State   Time(s)
    Domain-0                                     0   750     4     r-----   11794.3
    win                                          1  1019     1     r-----       0.3
    linux                                        2  2048     2     r-----    5624.2
`

// `xl list -v`: UUID, reason code and security label after Time(s) (xl_info.c).
const XL_LIST_VERBOSE = `Name                                        ID   Mem VCPUs\tState\tTime(s)   UUID                            Reason-Code\tSecurity Label
Domain-0                                     0  2048     4     r-----   11794.3 00000000-0000-0000-0000-000000000000        -                -
crashy                                      12   512     1     ---sc-      17.0 4ab1c0de-5e7d-4f1b-9a38-6c2f0e1d9b77        3                -
`

// `xl list -l`: libxl's domain configuration per domain, as xl_info.c's list_domains_details
// prints it (yajl, four-space indent, empty maps over two lines); fields from libxl_types.idl.
const XL_LIST_LONG = `[
    {
        "domid": 7,
        "config": {
            "c_info": {
                "type": "hvm",
                "name": "db1",
                "uuid": "4ab1c0de-5e7d-4f1b-9a38-6c2f0e1d9b77",
                "run_hotplug_scripts": "True"
            },
            "b_info": {
                "max_vcpus": 2,
                "avail_vcpus": [
                    0,
                    1
                ],
                "numa_placement": "True",
                "max_memkb": 2097152,
                "target_memkb": 2097152,
                "video_memkb": 8192,
                "shadow_memkb": 18432,
                "device_model_version": "qemu_xen",
                "sched_params": {

                },
                "claim_mode": "True",
                "type.hvm": {
                    "pae": "True",
                    "apic": "True",
                    "acpi": "True",
                    "nx": "True",
                    "vga": {
                        "kind": "cirrus"
                    },
                    "boot": "c"
                },
                "arch_arm": {

                }
            },
            "disks": [
                {
                    "pdev_path": "/dev/vg0/db1",
                    "vdev": "xvda",
                    "backend": "phy",
                    "format": "raw",
                    "readwrite": 1
                }
            ],
            "nics": [
                {
                    "devid": 0,
                    "mac": "00:16:3e:5a:01:07",
                    "bridge": "xenbr0",
                    "script": "vif-bridge",
                    "nictype": "vif_ioemu"
                }
            ],
            "on_reboot": "restart",
            "on_crash": "preserve"
        }
    },
    {
        "domid": 9,
        "config": {
            "c_info": {
                "type": "pv",
                "name": "web 2",
                "uuid": "9d3e7f10-2b1a-4c55-8e2d-0f4b6a7c8d91"
            },
            "b_info": {
                "max_vcpus": 1,
                "max_memkb": 1048576,
                "target_memkb": 1043456,
                "type.pv": {
                    "kernel": "/boot/vmlinuz-6.1.0-18-amd64",
                    "cmdline": "root=/dev/xvda1 ro console=hvc0",
                    "ramdisk": "/boot/initrd.img-6.1.0-18-amd64"
                }
            },
            "on_reboot": "restart"
        }
    }
]
`

describe('xl list', () => {
  const rows = parseXlList(XL_LIST)

  test('every row is read, the header is not, a name may hold spaces', () => {
    expect(rows.map((r) => r.name)).toEqual([
      'Domain-0',
      'db1',
      'web 2',
      'crashy',
      'halted',
      'going',
      'paused',
      'rebooting',
      'dog',
      'db1--migratedaway',
    ])
    expect(rows[1]).toEqual({
      name: 'db1',
      domid: 7,
      memMiB: 2048,
      vcpus: 2,
      state: '-b----',
      cpuSeconds: 5624.2,
    })
  })

  test.each([
    ['the xl(1) example', XL_MAN_EXAMPLE, ['Domain-0', 'win', 'linux']],
    ['xl list -v (columns after Time)', XL_LIST_VERBOSE, ['Domain-0', 'crashy']],
    ['no domains but Domain-0', XL_LIST.split('\n').slice(0, 2).join('\n'), ['Domain-0']],
    ['empty output', '', []],
  ])('%s', (_, text, names) => {
    expect(parseXlList(text).map((r) => r.name)).toEqual(names)
  })

  test('a row gives its counters in base units', () => {
    expect(rowMetrics(rows[1] as (typeof rows)[number])).toEqual({
      domid: 7,
      vcpus: 2,
      memoryCurrentBytes: 2048 * 1024 * 1024,
      cpuSeconds: 5624.2,
    })
  })
})

describe('xl list states (xl(1): r b p s c d, the fifth letter the shutdown reason of "-rscwS")', () => {
  test.each([
    ['r-----', 'running'],
    ['-b----', 'running'],
    ['------', 'running'], // runnable, waiting for a CPU
    ['--p---', 'paused'],
    ['-bp---', 'paused'],
    ['---sc-', 'crashed'],
    ['---sw-', 'watchdog'],
    ['---sr-', 'rebooting'],
    ['---sS-', 'rebooting'], // soft reset
    ['---s--', 'shutdown'], // powered off, kept by on_poweroff="preserve" or about to be destroyed
    ['---ss-', 'shutdown'], // suspended (xl save)
    ['---s?-', 'unknown'],
    ['-----d', 'dying'],
    ['---scd', 'dying'],
  ])('%s is %s', (letters, condition) => {
    expect(xlCondition(parseXlState(letters))).toBe(condition)
  })

  test('the letters are positional: a reboot reason "r" is not the running flag', () => {
    expect(parseXlState('---sr-')).toEqual({
      running: false,
      blocked: false,
      paused: false,
      shutdown: true,
      shutdownReason: 'reboot',
      dying: false,
    })
  })
})

describe('the monitor state from xl list', () => {
  const rows = parseXlList(XL_LIST)
  test.each([
    ['db1', false, 'running', false],
    ['web 2', false, 'running', false],
    ['paused', false, 'paused', false],
    ['rebooting', false, 'running', false],
    ['crashy', false, 'failed', false],
    ['dog', false, 'failed', false],
    // Gone, or going: stopped unless the driver expects it running.
    ['absent', false, 'stopped', true],
    ['absent', true, 'failed', true],
    ['halted', false, 'stopped', true],
    ['halted', true, 'failed', true],
    ['going', false, 'stopped', true],
  ] as const)('%s (expected running: %s) is %s', (domain, expectRunning, state, gone) => {
    const seen = observe(rows, domain, expectRunning)
    expect({ state: seen.state, gone: seen.gone }).toEqual({ state, gone })
    expect(seen.detail).toContain(domain)
  })

  test("a failed migration's leftover makes a domain that is gone failed, whatever was expected", () => {
    const withoutDb1 = rows.filter((r) => r.name !== 'db1')
    const seen = observe(withoutDb1, 'db1', false)
    expect(seen).toMatchObject({ state: 'failed', gone: true, leftover: { name: 'db1--migratedaway' } })
    expect(seen.detail).toMatch(/undefined/)
  })
})

describe('xl list -l', () => {
  test('domain id, name, guest type, sizes and on_crash from the JSON', () => {
    expect(parseXlListLong(XL_LIST_LONG)).toEqual([
      {
        domid: 7,
        name: 'db1',
        type: 'hvm',
        uuid: '4ab1c0de-5e7d-4f1b-9a38-6c2f0e1d9b77',
        maxVcpus: 2,
        maxMemKb: 2097152,
        targetMemKb: 2097152,
        onCrash: 'preserve',
      },
      {
        domid: 9,
        name: 'web 2',
        type: 'pv',
        uuid: '9d3e7f10-2b1a-4c55-8e2d-0f4b6a7c8d91',
        maxVcpus: 1,
        maxMemKb: 1048576,
        targetMemKb: 1043456,
      },
    ])
  })

  test.each([
    ['no domains', '[\n]\n', []],
    ['an entry without a name is skipped', '[{"domid": 3, "config": {}}]', []],
    [
      'a config xl could not build (domid null)',
      '[{"domid": null, "config": {"c_info": {"name": "x"}}}]',
      [{ domid: null, name: 'x' }],
    ],
  ])('%s', (_, text, expected) => {
    expect(parseXlListLong(text)).toEqual(expected)
  })

  test.each([
    // xl.conf output_format="sxp" prints S-expressions (xl_sxp.c).
    ['SXP output', '(domain\n\t(domid 7)\n\t(create_info)\n\t\t(hvm 1)\n', /not JSON/],
    ['a JSON object, not an array', '{"domid": 7}', /array/],
  ])('%s is refused', (_, text, message) => {
    expect(() => parseXlListLong(text)).toThrow(message)
  })
})

describe('xl.cfg name', () => {
  test.each([
    ['name = "db1"\nmemory = 512\n', 'db1'],
    ["name='db1'", 'db1'],
    ['# name = "old"\nname = "db1" # the database\n', 'db1'],
    ['type = "hvm"\nmemory = 512\n', undefined],
    ['hostname = "db1"\n', undefined],
  ])('%j names %s', (text, name) => {
    expect(configFileDomainName(text)).toBe(name)
  })
})

describe('xl arguments', () => {
  test.each([
    ['list', xlArgs.list(), ['list']],
    ['list -l', xlArgs.listLong('db1'), ['list', '-l', 'db1']],
    ['create', xlArgs.create('/etc/xen/db1.cfg'), ['create', '/etc/xen/db1.cfg']],
    [
      'shutdown, waiting, with the ACPI fallback',
      xlArgs.shutdown('db1', { wait: true, acpiFallback: true }),
      ['shutdown', '-w', '-F', 'db1'],
    ],
    ['shutdown, plain', xlArgs.shutdown('db1', { wait: false, acpiFallback: false }), ['shutdown', 'db1']],
    ['destroy', xlArgs.destroy('db1'), ['destroy', 'db1']],
    ['reboot with the ACPI fallback', xlArgs.reboot('db1', { acpiFallback: true }), ['reboot', '-F', 'db1']],
    ['the hard reset', xlArgs.triggerReset('db1'), ['trigger', 'db1', 'reset']],
    ['pause', xlArgs.pause('db1'), ['pause', 'db1']],
    ['unpause', xlArgs.unpause('db1'), ['unpause', 'db1']],
    ['migrate', xlArgs.migrate('db1', 'node-b'), ['migrate', 'db1', 'node-b']],
    [
      'migrate a paused domain with a transport',
      xlArgs.migrate('db1', 'root@node-b', { sshCommand: 'ssh -i /k', paused: true }),
      ['migrate', '-s', 'ssh -i /k', '-p', 'db1', 'root@node-b'],
    ],
  ])('%s', (_, args, expected) => {
    expect(args).toEqual(expected)
  })
})

describe('xl failures', () => {
  // Messages from Xen's tools/xl (xl_utils.c, xl_info.c, xl_vmcontrol.c, xl_migrate.c) and libxl.
  test.each<[string, XlFailure, string]>([
    ['db1 is an invalid domain identifier (rc=-6)\n', 'no-such-domain', 'local'],
    ["Error: Domain 'db1' does not exist.\n", 'no-such-domain', 'local'],
    [
      'xencall: error: Could not obtain handle on privileged command interface: No such file or directory\n' +
        'libxl: error: libxl.c:102:libxl_ctx_alloc: cannot open libxc handle: No such file or directory\n' +
        'cannot init xl context\n',
      'no-xen',
      'local',
    ],
    ['Failed to read config file: /etc/xen/db1.cfg: No such file or directory\n', 'config-file', 'local'],
    [
      'Parsing config from /etc/xen/db1.cfg\n' +
        'libxl: error: libxl_domain.c:421:libxl__domain_rename: Domain 9:Domain with name "db1" already exists.\n',
      'name-taken',
      'transient',
    ],
    ['failed to free memory for the domain\n', 'no-memory', 'local'],
    [
      '** Migration failed during final handshake **\nDomain state is now undefined !\n',
      'migration-undefined',
      'local',
    ],
    [
      'migration sender: libxl_domain_suspend failed (rc=-3)\nMigration failed, resuming at sender.\n',
      'other',
      'transient',
    ],
    ['destroy failed (rc=-3)\n', 'other', 'transient'],
  ])('%j is %s (%s)', (stderr, failure, kind) => {
    expect(classifyXlFailure(stderr)).toBe(failure)
    expect(FAILURE_KIND[failure]).toBe(kind)
  })

  test('the error names the command and the last line xl printed', () => {
    const err = xlCommandError(['destroy', 'db1'], {
      code: 1,
      stderr:
        'libxl: error: libxl_domain.c:1183:libxl__destroy_domid: Domain 7:Non-existent domain\ndestroy failed (rc=-3)\n',
    })
    expect(err).toMatchObject({
      kind: 'transient',
      failure: 'other',
      message: 'xl destroy db1: destroy failed (rc=-3)',
    })
  })

  test('an undefined migration says to check both hosts', () => {
    const err = xlCommandError(['migrate', 'db1', 'node-b'], {
      code: 1,
      stderr: '** Migration failed during final handshake **\nDomain state is now undefined !\n',
    })
    expect(err).toMatchObject({ kind: 'local', failure: 'migration-undefined' })
    expect(err.message).toMatch(/both/)
  })
})

describe('config', () => {
  const base = { domain: 'db1', configFile: '/etc/xen/db1.cfg' }

  test('defaults', () => {
    expect(xlConfigSchema.parse(base)).toEqual({
      ...base,
      xl: 'xl',
      callTimeoutMs: 15_000,
      createTimeoutMs: 60_000,
      shutdownTimeoutMs: 60_000,
      acpiFallback: true,
      restartGraceMs: 5000,
      migrateHost: '{node}',
      migrateTimeoutMs: 120_000,
    })
  })

  test.each([
    [{ ...base, domain: 'web.prod-1' }],
    [{ ...base, migrateHost: 'root@{node}.migration.example.org' }],
    [{ ...base, migrateSshCommand: 'ssh -i /etc/vigil/migrate_key' }],
    [{ ...base, shutdownTimeoutMs: 0, restartGraceMs: 0 }],
  ])('accepted: %j', (config) => {
    expect(rejectedKeys(xlConfigSchema, config)).toBeNull()
  })

  test.each([
    [{ configFile: '/etc/xen/db1.cfg' }, 'domain'],
    [{ ...base, domain: 'bad name!' }, 'domain'],
    [{ ...base, domain: '-db1' }, 'domain'], // would read as an option
    [{ ...base, domain: '42' }, 'domain'], // would read as a domain id
    [{ ...base, domain: 'Domain-0' }, 'domain'],
    [{ domain: 'db1' }, 'configFile'],
    [{ ...base, configFile: 'db1.cfg' }, 'configFile'],
    [{ ...base, configFile: '/etc/xen/db1.cfg\nname="x"' }, 'configFile'],
    [{ ...base, migrateHost: 'node b' }, 'migrateHost'],
    [{ ...base, migrateHost: '{node};reboot' }, 'migrateHost'],
    [{ ...base, callTimeoutMs: 10 }, 'callTimeoutMs'],
    [{ ...base, shutdownTimeoutMs: -1 }, 'shutdownTimeoutMs'],
    [{ ...base, cfg: '/etc/xen/db1.cfg' }, 'cfg'],
  ])('rejected: %j names %s', (config, key) => {
    expect(rejectedKeys(xlConfigSchema, config)).toContain(key)
  })
})
