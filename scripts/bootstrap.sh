#!/usr/bin/env bash
# Installs everything Vigil needs on a fresh Debian 12 machine that has Node.js 20 and npm:
# the Debian packages its tests use, pnpm, and the workspace's dependencies. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages used by tests (real brokers and device simulators, never mocks): the MQTT broker,
# an IPMI BMC (ipmi_sim) and ipmitool, snmpd acting as an APC PDU, an ssh server, the ClusterLabs
# fence agents, iproute2 for lab hosts made of network namespaces, libvirt with QEMU (TCG guests),
# the OCF resource agents, Prometheus with promtool and Alertmanager with amtool (the dashboards and
# alert rules are checked against a real one), Chromium (the status page's browser test), a C
# compiler with libnetfilter-queue for the lab's delay and jitter (this kernel has no netem), and
# bindfs, a FUSE view of a directory whose server a test stops to hang a filesystem for real, and
# etcd, where a hub group keeps its leadership and safety-critical facts; systemd (for
# systemd-analyze, which checks the shipped units) and util-linux (unshare, for a test's private
# mount of a read-only or full file system under the hub's database); Go with Debian's govmomi source,
# to build VMware's vSphere API simulator (vcsim) for the vSphere drivers' tests; python3-suds, the
# SOAP library fence_vmware_soap runs on (fence-agents depends on it already; named here because the
# fence-agents adapter's tests run that agent against vcsim).
APT_PACKAGES=(
  mosquitto mosquitto-clients
  openipmi ipmitool
  snmpd snmp
  openssh-server openssh-client
  fence-agents
  iproute2 iputils-ping iptables
  openssl
  libvirt-daemon-system libvirt-clients qemu-system-x86 busybox-static cpio
  resource-agents
  prometheus prometheus-alertmanager
  chromium
  gcc libc6-dev libnetfilter-queue-dev
  bindfs
  etcd-server etcd-client
  systemd util-linux
  golang-go golang-github-vmware-govmomi-dev
  python3-suds
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The libvirt tests' bootable guest (a kernel from Debian's archive and a busybox initramfs).
bash "$(dirname "$0")/guest-image.sh"

# vcsim, the vSphere API simulator, with the tests' fault endpoints (packages/testbed/vcsim).
bash "$(dirname "$0")/vcsim.sh"

# netem's delay and jitter in user space, through an NFQUEUE (packages/testbed/native/netdelay.c).
NETDELAY=packages/testbed/native/netdelay
if [ ! -x "$NETDELAY" ] || [ "$NETDELAY.c" -nt "$NETDELAY" ]; then
  gcc -O2 -Wall -Wextra -Werror -o "$NETDELAY" "$NETDELAY.c" -lnetfilter_queue
fi

PNPM_VERSION=10.34.8
if ! command -v pnpm >/dev/null || [ "$(pnpm --version)" != "$PNPM_VERSION" ]; then
  echo "bootstrap: installing pnpm $PNPM_VERSION"
  npm install -g "pnpm@$PNPM_VERSION" --silent
fi

export TURBO_TELEMETRY_DISABLED=1
pnpm install --frozen-lockfile --reporter=silent
echo "bootstrap: dependencies installed"
