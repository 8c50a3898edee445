#!/usr/bin/env bash
# A tiny bootable guest for the libvirt tests and the lab: Debian's cloud kernel (extracted from its
# package, never installed) and a busybox initramfs whose init prints "vigil guest heartbeat N" on
# the serial console twice a second (the counter the libvirt driver's stall detector watches; the
# recommended cadence, packages/drivers/libvirt/README.md).
# An NMI panics it (kernel.unknown_nmi_panic) and panic=0 on its command line keeps it there:
# "running" to libvirt, silent inside, as a hung guest is. `virsh reset` brings it back.
#   scripts/guest-image.sh [dir]   (default /var/cache/vigil/guest; idempotent)
set -euo pipefail
OUT=${1:-/var/cache/vigil/guest}
SELF="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
if [ -s "$OUT/vmlinuz" ] && [ -s "$OUT/initrd.gz" ] && [ "$OUT/initrd.gz" -nt "$SELF" ]; then exit 0; fi
mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
if [ ! -s "$OUT/vmlinuz" ]; then
  KERNEL=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image/{print $2}' | head -1)
  if [ -z "$KERNEL" ]; then
    apt-get update -qq
    KERNEL=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image/{print $2}' | head -1)
  fi
  (cd "$WORK" && apt-get download -qq -o APT::Sandbox::User=root "$KERNEL" >/dev/null)
  dpkg-deb --fsys-tarfile "$WORK"/linux-image-*.deb | tar x -C "$WORK" --wildcards './boot/vmlinuz-*'
  mv "$WORK"/boot/vmlinuz-* "$OUT/vmlinuz.tmp" && mv "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"
fi
ROOT="$WORK/root"
mkdir -p "$ROOT"/{bin,proc,sys,dev}
cp /bin/busybox "$ROOT/bin/busybox"
cat > "$ROOT/init" <<'EOI'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev 2>/dev/null
echo 1 > /proc/sys/kernel/unknown_nmi_panic
echo "vigil guest booted kernel=$(uname -r)"
# vigil.fill=N on the command line: N MiB of random data kept in memory, pages a live migration
# must copy (an idle guest's are zero and cost nothing), so a bandwidth limit makes it long.
fill=$(sed -n 's/.*vigil\.fill=\([0-9]*\).*/\1/p' /proc/cmdline)
[ -n "$fill" ] && dd if=/dev/urandom of=/fill bs=1M count="$fill" 2>/dev/null
n=0
while true; do n=$((n+1)); echo "vigil guest heartbeat $n"; sleep 0.5; done
EOI
chmod +x "$ROOT/init"
(cd "$ROOT" && find . | cpio -o -H newc 2>/dev/null | gzip -9 > "$OUT/initrd.tmp")
mv "$OUT/initrd.tmp" "$OUT/initrd.gz"
chmod a+r "$OUT/vmlinuz" "$OUT/initrd.gz"
echo "guest-image: $OUT/vmlinuz, $OUT/initrd.gz"
