import { request as httpRequest } from 'node:http'
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https'
import { XMLParser } from 'fast-xml-parser'

/**
 * A managed object reference: vSphere's name for one object (`VirtualMachine` `vm-42`). Valid for
 * the object's life in this vCenter; a VM registered again gets a new one.
 */
export interface MoRef {
  type: string
  value: string
}

/**
 * unreachable: vCenter or the ESX host did not answer (down, cut off, too slow): try again or
 *   elsewhere;
 * auth: it answered and refused the credentials or the permission: never retry blindly;
 * config: the request cannot work as configured (a certificate not trusted, a URL that is not an
 *   SDK endpoint);
 * not-found: the named object does not exist (any more);
 * fault: vSphere refused the operation; `fault` names its type (InvalidPowerState, ToolsUnavailable).
 */
export type VsphereErrorKind = 'unreachable' | 'auth' | 'config' | 'not-found' | 'fault'

export class VsphereError extends Error {
  override readonly name = 'VsphereError'
  constructor(
    readonly kind: VsphereErrorKind,
    message: string,
    /** The vSphere fault type, for `fault` (and `auth`, `not-found`): InvalidLogin, InvalidPowerState. */
    readonly fault: string | null = null,
    options?: { cause?: unknown },
  ) {
    super(message, options)
  }
}

export interface VsphereConnection {
  /** The SDK endpoint, https://vcenter.example.com/sdk (or an ESX host's). */
  url: string
  username: string
  password: string
  /** Accept any certificate (a lab's self-signed one). Off by default: a fence path must know whom it talks to. */
  insecure: boolean
  /** PEM of the CA (or the self-signed certificate) to trust, for https. */
  ca?: string | undefined
  /** Per SOAP call. */
  timeoutMs: number
  /** The vim25 version sent as SOAPAction (vCenter answers older clients in their own version). */
  apiVersion: string
}

/** A parsed XML value: text, or elements by tag name (attributes as `@_name`). */
// biome-ignore lint/suspicious/noExplicitAny: the shape is the SOAP response's; callers read it through the helpers below
export type XmlValue = any

/** Elements that may repeat, kept as arrays even when one is present. */
const REPEATED = new Set(['objects', 'propSet', 'ManagedObjectReference', 'DatastoreHostMount', 'returnval'])

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  // Tag prefixes go (soapenv:Body -> Body); attribute prefixes stay, since a moref carries both
  // `type` (the object's type) and `xsi:type` (the value's).
  transformTagName: (tag) => tag.replace(/^[^:]+:/, ''),
  parseTagValue: false,
  parseAttributeValue: false,
  isArray: (tag) => REPEATED.has(tag),
})

export function escapeXml(s: string): string {
  return s.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`)
}

/** `<tag type="T">value</tag>`: a moref as an argument. */
export function refXml(tag: string, ref: MoRef): string {
  return `<${tag} type="${escapeXml(ref.type)}">${escapeXml(ref.value)}</${tag}>`
}

export function textXml(tag: string, value: string | number | boolean): string {
  return `<${tag}>${escapeXml(String(value))}</${tag}>`
}

/** The text of a parsed value (a simple value, or an element with attributes). */
export function textOf(v: XmlValue): string | undefined {
  if (v === undefined || v === null) return undefined
  if (typeof v === 'string') return v
  if (typeof v === 'object' && '#text' in v) return String(v['#text'])
  return undefined
}

/** A moref from a parsed value (`<val type="HostSystem">host-21</val>`). */
export function refOf(v: XmlValue): MoRef | undefined {
  if (!v || typeof v !== 'object') return undefined
  const type = v['@_type']
  const value = textOf(v)
  return typeof type === 'string' && value !== undefined ? { type, value } : undefined
}

export function refsOf(v: XmlValue): MoRef[] {
  const list: XmlValue[] = v?.ManagedObjectReference ?? []
  return list.map(refOf).filter((r): r is MoRef => r !== undefined)
}

interface ServiceContent {
  rootFolder: MoRef
  propertyCollector: MoRef
  viewManager: MoRef
  sessionManager: MoRef
}

const NETWORK_ERRORS =
  /ECONNREFUSED|ECONNRESET|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|EPIPE|socket hang up/
const TLS_ERRORS = /CERT|certificate|self[- ]signed|SSL|TLS/i

/**
 * A small vim25 SOAP client: one session (its cookie), property reads through the property
 * collector, tasks waited on, faults mapped to kinds. It speaks only the few methods Vigil uses,
 * written by hand over fast-xml-parser rather than generated from vSphere's WSDL: the WSDL is not
 * redistributable here, and a generic SOAP library would parse all of it (several MB) at start.
 */
export class Vim25Client {
  private cookie: string | null = null
  private content: ServiceContent | null = null
  private view: MoRef | null = null
  private login: Promise<void> | null = null
  private readonly endpoint: URL
  private readonly agent: HttpsAgent | undefined

  constructor(private readonly conn: VsphereConnection) {
    this.endpoint = new URL(conn.url)
    this.agent =
      this.endpoint.protocol === 'https:'
        ? new HttpsAgent({
            keepAlive: true,
            rejectUnauthorized: !conn.insecure,
            ...(conn.ca ? { ca: conn.ca } : {}),
          })
        : undefined
  }

  /** Calls `method` on `thisRef` with the given argument elements; returns its `returnval`s. */
  async call(method: string, thisRef: MoRef, args: string, signal: AbortSignal): Promise<XmlValue[]> {
    await this.session(signal)
    try {
      return await this.post(method, thisRef, args, signal)
    } catch (err) {
      // Sessions expire (vCenter's idle timeout, a restart): log in again, once.
      if (!(err instanceof VsphereError) || err.fault !== 'NotAuthenticated') throw err
      this.cookie = null
      this.view = null
      await this.session(signal)
      return this.post(method, thisRef, args, signal)
    }
  }

  /** Logs in unless a session is open. Concurrent callers share one login. */
  async session(signal: AbortSignal): Promise<ServiceContent> {
    if (this.cookie && this.content) return this.content
    this.login ??= this.open(signal).finally(() => {
      this.login = null
    })
    await this.login
    if (!this.content) throw new VsphereError('unreachable', `${this.where()}: no session`)
    return this.content
  }

  private async open(signal: AbortSignal): Promise<void> {
    const [sc] = await this.post(
      'RetrieveServiceContent',
      { type: 'ServiceInstance', value: 'ServiceInstance' },
      '',
      signal,
    )
    const ref = (k: string) => {
      const r = refOf(sc?.[k])
      if (!r) throw new VsphereError('config', `${this.where()}: not a vSphere SDK endpoint (no ${k})`)
      return r
    }
    const content = {
      rootFolder: ref('rootFolder'),
      propertyCollector: ref('propertyCollector'),
      viewManager: ref('viewManager'),
      sessionManager: ref('sessionManager'),
    }
    await this.post(
      'Login',
      content.sessionManager,
      textXml('userName', this.conn.username) + textXml('password', this.conn.password),
      signal,
    )
    if (!this.cookie) throw new VsphereError('config', `${this.where()}: Login set no session cookie`)
    this.content = content
  }

  async logout(signal: AbortSignal = AbortSignal.timeout(this.conn.timeoutMs)): Promise<void> {
    const content = this.content
    if (this.cookie && content)
      await this.post('Logout', content.sessionManager, '', signal).catch(() => undefined)
    this.cookie = null
    this.content = null
    this.view = null
    this.agent?.destroy()
  }

  /** Properties of one object, by path; a path vSphere leaves unset is absent. */
  async props(ref: MoRef, paths: string[], signal: AbortSignal): Promise<Record<string, XmlValue>> {
    const content = await this.session(signal)
    const [result] = await this.call(
      'RetrievePropertiesEx',
      content.propertyCollector,
      `<specSet><propSet><type>${escapeXml(ref.type)}</type>${paths.map((p) => textXml('pathSet', p)).join('')}</propSet>` +
        `<objectSet>${refXml('obj', ref)}<skip>false</skip></objectSet></specSet><options/>`,
      signal,
    )
    const object = result?.objects?.[0]
    if (!object)
      throw new VsphereError('not-found', `${ref.type} ${ref.value} is gone`, 'ManagedObjectNotFound')
    return propsOf(object)
  }

  /** Every object of a type in the inventory, with the given properties. */
  async all(
    type: string,
    paths: string[],
    signal: AbortSignal,
  ): Promise<{ ref: MoRef; props: Record<string, XmlValue> }[]> {
    const content = await this.session(signal)
    const view = await this.inventoryView(signal)
    const out: { ref: MoRef; props: Record<string, XmlValue> }[] = []
    let [result] = await this.call(
      'RetrievePropertiesEx',
      content.propertyCollector,
      `<specSet><propSet><type>${escapeXml(type)}</type>${paths.map((p) => textXml('pathSet', p)).join('')}</propSet>` +
        `<objectSet>${refXml('obj', view)}<skip>true</skip><selectSet xsi:type="TraversalSpec" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">` +
        '<type>ContainerView</type><path>view</path><skip>false</skip></selectSet></objectSet></specSet><options/>',
      signal,
    )
    for (;;) {
      for (const o of result?.objects ?? []) {
        const ref = refOf(o.obj)
        if (ref) out.push({ ref, props: propsOf(o) })
      }
      const token = textOf(result?.token)
      if (!token) return out
      ;[result] = await this.call(
        'ContinueRetrievePropertiesEx',
        content.propertyCollector,
        textXml('token', token),
        signal,
      )
    }
  }

  /** The object of `type` named `name`, or null. Names are unique per type in a datacenter's folder. */
  async find(type: string, name: string, signal: AbortSignal): Promise<MoRef | null> {
    const found = (await this.all(type, ['name'], signal)).filter((o) => textOf(o.props.name) === name)
    return found[0]?.ref ?? null
  }

  /** Runs a `..._Task` method and waits for its outcome; a failed task throws its fault. */
  async task(method: string, thisRef: MoRef, args: string, signal: AbortSignal): Promise<XmlValue> {
    const [task] = await this.call(method, thisRef, args, signal)
    const ref = refOf(task)
    if (!ref) throw new VsphereError('fault', `${method}: no task returned`)
    for (let delay = 50; ; delay = Math.min(delay * 2, 1000)) {
      const info = await this.props(ref, ['info.state', 'info.error', 'info.result'], signal)
      const state = textOf(info['info.state'])
      if (state === 'success') return info['info.result']
      if (state === 'error') throw taskFault(method, info['info.error'])
      await new Promise((r) => setTimeout(r, delay))
      if (signal.aborted) throw new VsphereError('unreachable', `${method}: task not done in time`)
    }
  }

  /** A view of the whole inventory, made once per session (vSphere's way to list by type). */
  private async inventoryView(signal: AbortSignal): Promise<MoRef> {
    if (this.view) return this.view
    const content = await this.session(signal)
    const [view] = await this.call(
      'CreateContainerView',
      content.viewManager,
      `${refXml('container', content.rootFolder)}<recursive>true</recursive>`,
      signal,
    )
    this.view = refOf(view) ?? null
    if (!this.view) throw new VsphereError('fault', 'CreateContainerView returned no view')
    return this.view
  }

  private where(): string {
    return this.endpoint.host
  }

  private post(method: string, thisRef: MoRef, args: string, signal: AbortSignal): Promise<XmlValue[]> {
    const body =
      '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" ' +
      'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns="urn:vim25"><soapenv:Body>' +
      `<${method}>${refXml('_this', thisRef)}${args}</${method}></soapenv:Body></soapenv:Envelope>`
    const https = this.endpoint.protocol === 'https:'
    const timeout = AbortSignal.timeout(this.conn.timeoutMs)
    return new Promise((resolve, reject) => {
      const req = (https ? httpsRequest : httpRequest)(
        this.endpoint,
        {
          method: 'POST',
          signal: AbortSignal.any([signal, timeout]),
          ...(this.agent ? { agent: this.agent } : {}),
          headers: {
            'Content-Type': 'text/xml; charset=utf-8',
            SOAPAction: `urn:vim25/${this.conn.apiVersion}`,
            ...(this.cookie ? { Cookie: this.cookie } : {}),
          },
        },
        (res) => {
          const chunks: Buffer[] = []
          res.on('data', (c: Buffer) => chunks.push(c))
          res.on('error', (err) => reject(this.transportError(method, err, timeout)))
          res.on('end', () => {
            const setCookie = res.headers['set-cookie']?.find((c) => c.startsWith('vmware_soap_session='))
            if (setCookie) this.cookie = setCookie.split(';')[0] ?? null
            const text = Buffer.concat(chunks).toString('utf8')
            let doc: XmlValue
            try {
              doc = parser.parse(text)
            } catch (err) {
              return reject(
                new VsphereError('config', `${this.where()}: ${method}: not XML`, null, { cause: err }),
              )
            }
            const envelopeBody = doc?.Envelope?.Body
            if (!envelopeBody)
              return reject(
                new VsphereError(
                  res.statusCode === 404 ? 'config' : 'unreachable',
                  `${this.where()}: ${method}: HTTP ${res.statusCode}, not a SOAP answer`,
                ),
              )
            if (envelopeBody.Fault) return reject(soapFault(method, envelopeBody.Fault))
            const response = envelopeBody[`${method}Response`]
            resolve(response?.returnval ?? [])
          })
        },
      )
      req.on('error', (err) => reject(this.transportError(method, err, timeout)))
      req.end(body)
    })
  }

  private transportError(method: string, err: Error, timeout: AbortSignal): VsphereError {
    const text = `${(err as { code?: string }).code ?? ''} ${err.message}`
    if (timeout.aborted || err.name === 'AbortError')
      return new VsphereError('unreachable', `${this.where()}: ${method}: no answer in time`, null, {
        cause: err,
      })
    if (TLS_ERRORS.test(text) && !NETWORK_ERRORS.test(text))
      return new VsphereError(
        'config',
        `${this.where()}: certificate not trusted (${err.message}); give its CA as caFile, or set insecure in a lab`,
        null,
        { cause: err },
      )
    return new VsphereError('unreachable', `${this.where()}: ${method}: ${err.message}`, null, { cause: err })
  }
}

/**
 * The xsi:type of a value: its XML Schema type (InvalidPowerState). The prefix is the sender's
 * choice (vCenter writes xsi:, vcsim XMLSchema-instance:), so any prefixed `type` counts; a moref's
 * own `type` attribute has none.
 */
export function xsiType(v: XmlValue): string | null {
  if (!v || typeof v !== 'object') return null
  for (const [k, t] of Object.entries(v))
    if (/^@_[^:]+:type$/.test(k) && typeof t === 'string') return t.replace(/^[^:]+:/, '')
  return null
}

function propsOf(object: XmlValue): Record<string, XmlValue> {
  const props: Record<string, XmlValue> = {}
  for (const p of object?.propSet ?? []) {
    const name = textOf(p.name)
    if (name) props[name] = p.val
  }
  return props
}

/** The fault's type: the xsi:type of its detail (InvalidLogin), else the detail element's name. */
function faultType(detail: XmlValue): string | null {
  if (!detail || typeof detail !== 'object') return null
  for (const [tag, v] of Object.entries(detail)) {
    if (tag.startsWith('@_')) continue
    return xsiType(v) ?? tag.replace(/Fault$/, '')
  }
  return null
}

const AUTH_FAULTS = new Set(['InvalidLogin', 'NoPermission', 'NotAuthenticated', 'InvalidLocale'])

function kindOfFault(type: string | null): VsphereErrorKind {
  if (type && AUTH_FAULTS.has(type)) return type === 'NotAuthenticated' ? 'fault' : 'auth'
  if (type === 'ManagedObjectNotFound') return 'not-found'
  return 'fault'
}

function soapFault(method: string, fault: XmlValue): VsphereError {
  const type = faultType(fault.detail)
  const text = textOf(fault.faultstring) || type || 'fault'
  return new VsphereError(kindOfFault(type), `${method}: ${text}`, type)
}

function taskFault(method: string, error: XmlValue): VsphereError {
  const type = xsiType(error?.fault)
  const text = textOf(error?.localizedMessage) || type || 'task failed'
  return new VsphereError(kindOfFault(type), `${method}: ${text}`, type)
}
