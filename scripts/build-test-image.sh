#!/bin/sh
# Builds the tiny bootable test guest (docs: test-image.md) from Debian packages, offline from
# the mirrors: a cloud kernel, a busybox initramfs that prints READY on ttyS0 and on the
# virtio-serial port org.example.ready, and a small ext4 data disk as qcow2 (the golden image).
# Output is cached in .cache/test-image (git-ignored); delete it to rebuild.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/.cache/test-image}
[ -f "$OUT/vmlinuz" ] && [ -f "$OUT/initrd.img" ] && [ -f "$OUT/data.qcow2" ] && exit 0
B=$(mktemp -d)
trap 'rm -rf "$B"' EXIT
mkdir -p "$B/debs" "$B/x" "$OUT"
cd "$B/debs"
KPKG=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
apt-get download "$KPKG" busybox-static >/dev/null 2>&1
dpkg-deb -x linux-image-*.deb "$B/x/kernel"
dpkg-deb -x busybox-static_*.deb "$B/x/bb"
KVER=$(ls "$B/x/kernel/lib/modules")
cp "$B/x/kernel/boot/vmlinuz-$KVER" "$OUT/vmlinuz"

R=$B/root
mkdir -p "$R/bin" "$R/proc" "$R/sys" "$R/dev" "$R/etc/acpi/PWRF" "$R/tmp" "$R/mnt/data" "$R/lib/modules/$KVER"
cp "$B/x/bb/bin/busybox" "$R/bin/busybox"
for a in $("$R/bin/busybox" --list); do [ -e "$R/bin/$a" ] || ln -s busybox "$R/bin/$a"; done
ln -s bin "$R/sbin"
for m in virtio virtio_ring virtio_pci virtio_pci_modern_dev virtio_pci_legacy_dev virtio_blk \
         virtio_console button evdev; do
  f=$(cd "$B/x/kernel/lib/modules/$KVER" && find kernel -name "$m.ko")
  mkdir -p "$R/lib/modules/$KVER/$(dirname "$f")"
  cp "$B/x/kernel/lib/modules/$KVER/$f" "$R/lib/modules/$KVER/$f"
done
cp "$B/x/kernel/lib/modules/$KVER/modules.builtin" "$R/lib/modules/$KVER/"
"$R/bin/busybox" depmod -b "$R" "$KVER"
printf '#!/bin/sh\nsync\npoweroff -f\n' > "$R/etc/acpi/PWRF/00000080"
chmod +x "$R/etc/acpi/PWRF/00000080"
cat > "$R/init" <<'INIT'
#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
modprobe -a virtio_pci virtio_blk virtio_console button evdev 2>/dev/null
acpid -c /etc/acpi 2>/dev/null
[ -b /dev/vda ] && mount /dev/vda /mnt/data 2>/dev/null
uuid=$(cat /sys/class/dmi/id/product_uuid 2>/dev/null)
msg="READY uptime=$(cut -d' ' -f1 /proc/uptime) uuid=$uuid"
echo "$msg" > /dev/ttyS0
for p in /sys/class/virtio-ports/vport*; do
  if [ "$(cat "$p/name" 2>/dev/null)" = org.example.ready ]; then
    exec 3>"/dev/${p##*/}"; echo "$msg" >&3     # keep the port open: the channel stays connected
  fi
done
while :; do sleep 3600; done
INIT
chmod +x "$R/init"
(cd "$R" && find . | cpio -o -H newc --quiet | gzip -9) > "$OUT/initrd.img"
mkdir -p "$B/data"
date +%s > "$B/data/built"
mkfs.ext4 -q -F -L golden-data -d "$B/data" "$B/data.raw" 16M
qemu-img convert -f raw -O qcow2 "$B/data.raw" "$OUT/data.qcow2"
chmod 0644 "$OUT"/*
