import { z } from 'zod'

/**
 * The libvirt hypervisor drivers this driver is written for, by URI scheme (libvirt.org/uri.html):
 * `qemu` (KVM and QEMU), `xen` (the libxl driver for Xen: libvirt names it "xen", there is no
 * `libxl` scheme) and `test` (libvirt's in-memory mock, for trying a config). Others that libvirt
 * knows (lxc, ch, bhyve, vz, esx, hyperv, vbox, ...) are refused: this driver's states and actions
 * were not written or tested for them.
 */
export const LIBVIRT_DRIVERS = ['qemu', 'xen', 'test'] as const

/**
 * The remote transports a scheme may add (`driver+transport`): tls (also the default with a host),
 * tcp, unix, ssh, libssh, libssh2 and ext, after libvirt's remote driver (libvirt.org/uri.html).
 */
export const LIBVIRT_TRANSPORTS = ['tls', 'tcp', 'unix', 'ssh', 'libssh', 'libssh2', 'ext'] as const

const ACCEPTED = LIBVIRT_DRIVERS.flatMap((d) => [d, ...LIBVIRT_TRANSPORTS.map((t) => `${d}+${t}`)])

/**
 * Why `uri` is not a libvirt URI this driver can use, or null if it is. A URI is
 * `driver[+transport]://[user@][host][:port]/[path][?params]`, e.g. qemu:///system,
 * qemu+ssh://root@node-b/system, qemu+unix:///system?socket=/run/x.sock, xen:///system,
 * xen+ssh://root@node-b/system; `{node}` (in migrateUri) may stand in any part after the scheme.
 */
export function libvirtUriProblem(uri: string, { template = false } = {}): string | null {
  const m = /^([a-z0-9+]+):\/\/(\S*)$/.exec(uri)
  if (!m)
    return template
      ? 'must be a libvirt URI such as qemu+ssh://{node}/system, {node} standing for the target node'
      : 'must be a libvirt URI such as qemu:///system or xen:///system'
  const scheme = m[1] as string
  if (!ACCEPTED.includes(scheme)) {
    const [driver = '', ...rest] = scheme.split('+')
    const transport = rest.join('+')
    if (!(LIBVIRT_DRIVERS as readonly string[]).includes(driver))
      return `"${driver}" is not a libvirt driver this driver supports (${LIBVIRT_DRIVERS.join(', ')}; Xen's libxl driver is "xen")`
    return `"${transport}" is not a libvirt transport (${LIBVIRT_TRANSPORTS.join(', ')})`
  }
  return null
}

/**
 * A zod string that must be a supported libvirt URI (its issue is reported under the config key
 * it sits at); `template`: a URI with `{node}` for the target node, for the message.
 */
export const libvirtUri = (opts: { template?: boolean } = {}) =>
  z.string().superRefine((uri, ctx) => {
    const problem = libvirtUriProblem(uri, opts)
    if (problem) ctx.addIssue({ code: 'custom', message: problem })
  })

/** The hypervisors a libvirt guest can run on through this driver (`@vigil/driver-kit`'s Hypervisor). */
export type LibvirtHypervisor = 'kvm' | 'qemu' | 'xen'

/**
 * What runs a guest behind `uri`: libvirt's `xen` driver runs Xen (libxl); its `qemu` driver runs
 * QEMU, with KVM or without (TCG, the CPU emulated), which only the domain's own definition says:
 * `<domain type='kvm'>` or `<domain type='qemu'>` (`domainType`, once read). Until then a qemu URI
 * is taken for KVM: what a production host runs. `test` (libvirt's mock) runs nothing: undefined.
 */
export function libvirtHypervisor(uri: string, domainType?: string): LibvirtHypervisor | undefined {
  const driver = /^([a-z0-9]+)/.exec(uri)?.[1]
  if (driver === 'xen') return 'xen'
  if (driver !== 'qemu') return undefined
  return domainType === 'qemu' ? 'qemu' : 'kvm'
}

/** The `type` of a domain's XML definition (`virsh dumpxml`): kvm, qemu, xen, ... or undefined. */
export function domainTypeOf(xml: string): string | undefined {
  return /<domain\b[^>]*?\stype=['"]([A-Za-z0-9_-]+)['"]/.exec(xml)?.[1]
}
