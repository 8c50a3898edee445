import { rejectedKeys } from '@vigil/kit'
import { describe, expect, test } from 'vitest'
import { domainTypeOf, libvirtConfigSchema, libvirtHypervisor, libvirtUriProblem } from './index.js'

// The URI forms of libvirt.org/uri.html, drvqemu.html and drvxen.html (the libxl driver), and the
// ones packages/testbed builds (qemu:///system for the machine's libvirtd, qemu+tcp://<address>:<port>/system
// for a peer). Config checks only: no libvirtd needed.
describe('libvirt URIs', () => {
  test.each([
    'qemu:///system',
    'qemu:///session',
    'qemu+unix:///system',
    'qemu+unix:///system?socket=/run/vigil/libvirt-sock',
    'qemu+tcp://127.0.0.1:16509/system',
    'qemu+ssh://root@node-b/system',
    'qemu+tls://node-b.migration/system',
    'qemu+libssh2://root@node-b/system?known_hosts=/root/.ssh/known_hosts',
    'qemu+ext:///system?command=/opt/bin/connect',
    'xen:///system',
    'xen+unix:///system',
    'xen://node-b/system',
    'xen+tcp://node-b/system',
    'xen+ssh://root@node-b/system',
    'test:///default',
    'qemu+ssh://{node}/system',
  ])('%s is accepted', (uri) => {
    expect(libvirtUriProblem(uri)).toBeNull()
    expect(rejectedKeys(libvirtConfigSchema, { domain: 'vm', uri, migrateUri: uri })).toBeNull()
  })

  test.each([
    ['nope', /must be a libvirt URI/],
    ['qemu:/system', /must be a libvirt URI/],
    ['qemu:///system with space', /must be a libvirt URI/],
    ['QEMU:///system', /must be a libvirt URI/],
    ['libxl:///system', /"libxl" is not a libvirt driver .*"xen"/],
    ['kvm:///system', /"kvm" is not a libvirt driver/],
    ['lxc:///system', /"lxc" is not a libvirt driver/],
    ['qemu+sh://node-b/system', /"sh" is not a libvirt transport/],
    ['xen+ssl://node-b/system', /"ssl" is not a libvirt transport/],
    ['qemu+ssh+tls://node-b/system', /"ssh\+tls" is not a libvirt transport/],
    ['https://node-b/', /"https" is not a libvirt driver/],
  ])('%s is refused: %s', (uri, message) => {
    expect(libvirtUriProblem(uri)).toMatch(message)
  })

  test.each([
    [{ domain: 'vm', uri: 'libxl:///system' }, 'uri'],
    [{ domain: 'vm', uri: 'qemu+sh:///system' }, 'uri'],
    [{ domain: 'vm', migrateUri: 'kvm+ssh://{node}/system' }, 'migrateUri'],
    [{ domain: 'vm', migrateUri: '{node}' }, 'migrateUri'],
  ])('the config error names the key: %j', (config, key) => {
    expect(rejectedKeys(libvirtConfigSchema, config)).toEqual([key])
  })

  test('a migrateUri that is no URI says {node} stands for the target node', () => {
    const r = libvirtConfigSchema.safeParse({ domain: 'vm', migrateUri: 'node-b' })
    expect(r.success).toBe(false)
    expect(r.error?.issues[0]?.message).toMatch(/\{node\} standing for the target node/)
  })
})

// What the driver reports as the guest's hypervisor (observations, vigil_vm_info): the URI's
// scheme, and for qemu the domain's own <domain type> once read (KVM, or QEMU emulating the CPU).
describe('the hypervisor of a libvirt guest', () => {
  test.each([
    ['qemu:///system', undefined, 'kvm'],
    ['qemu:///system', 'kvm', 'kvm'],
    ['qemu:///system', 'qemu', 'qemu'],
    ['qemu+ssh://root@node-b/system', 'qemu', 'qemu'],
    ['qemu+tcp://127.0.0.1:16509/system', undefined, 'kvm'],
    ['xen:///system', undefined, 'xen'],
    ['xen+ssh://root@node-b/system', 'xen', 'xen'],
    ['test:///default', 'test', undefined],
  ])('%s, domain type %s: %s', (uri, domainType, hypervisor) => {
    expect(libvirtHypervisor(uri, domainType)).toBe(hypervisor)
  })

  test.each([
    ["<domain type='kvm' id='3'>\n  <name>vm1</name>", 'kvm'],
    ["<domain type='qemu'>\n  <name>vm1</name>", 'qemu'],
    ['<domain id="7" type="xen">', 'xen'],
    ["<domain xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0' type='kvm'>", 'kvm'],
    ['<network><name>default</name></network>', undefined],
    ['', undefined],
  ])('the type of %j is %s', (xml, type) => {
    expect(domainTypeOf(xml)).toBe(type)
  })
})
