#!/bin/sh
# Builds the tiny bootable test guest (docs: test-image.md) from Debian packages, offline from
# the mirrors: a cloud kernel, a busybox initramfs, and a small ext4 data disk as qcow2 (the
# golden image). Output is cached in .cache/test-image (git-ignored) and rebuilt whenever this
# script changes (the cache is keyed on the script's sha256); delete it to force a rebuild.
#
# What the guest does at boot:
#   * loads the virtio, virtio_net and isofs (with cdrom) modules; answers the ACPI power button (poweroff);
#   * mounts the first ext4 virtio disk at /mnt/data (the clone's overlay of the golden image);
#   * mounts a cloud-init NoCloud seed (an iso9660 virtio disk holding meta-data) at /mnt/seed and
#     reads instance-id and local-hostname from its meta-data, then the SMBIOS serial
#     (ds=nocloud;i=<id>;h=<name>), whose values win, as they do in cloud-init;
#   * sets its hostname, takes an address by DHCP on eth0 (busybox udhcpc, sending its hostname);
#   * serves HTTP on port 80 (busybox nc, one shell handler per connection), counting every
#     request it serves:
#       /            "hostname=<h> instance-id=<id>"
#       /health      "ok"
#       /metrics     Prometheus text: guest_http_requests_total, guest_info, node_cpu_seconds_total
#       /slow?ms=N   answers after N milliseconds (for draining tests)
#       /requests    its access log: "<uptime> <method> <uri>" per request, oldest first
#       /user-data   the seed's user-data, as the guest received it
#   * prints "READY uptime=.. ip=.. uuid=.. instance-id=.. hostname=.." on ttyS0 and on the
#     virtio-serial port org.example.ready (kept open, so the channel stays connected).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/.cache/test-image}
KEY=$(sha256sum "$0" | cut -d' ' -f1)
if [ -f "$OUT/vmlinuz" ] && [ -f "$OUT/initrd.img" ] && [ -f "$OUT/data.qcow2" ] \
   && [ "$(cat "$OUT/.script-sha256" 2>/dev/null)" = "$KEY" ]; then
  exit 0
fi
B=$(mktemp -d)
trap 'rm -rf "$B"' EXIT
rm -rf "$OUT"
mkdir -p "$B/debs" "$B/x" "$OUT"
cd "$B/debs"
KPKG=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
apt-get download "$KPKG" busybox-static >/dev/null 2>&1
dpkg-deb -x linux-image-*.deb "$B/x/kernel"
dpkg-deb -x busybox-static_*.deb "$B/x/bb"
KVER=$(ls "$B/x/kernel/lib/modules")
cp "$B/x/kernel/boot/vmlinuz-$KVER" "$OUT/vmlinuz"

R=$B/root
mkdir -p "$R/bin" "$R/proc" "$R/sys" "$R/dev" "$R/etc/acpi/PWRF" "$R/tmp" "$R/mnt/data" "$R/mnt/seed" \
         "$R/www" "$R/lib/modules/$KVER"
cp "$B/x/bb/bin/busybox" "$R/bin/busybox"
for a in $("$R/bin/busybox" --list); do [ -e "$R/bin/$a" ] || ln -s busybox "$R/bin/$a"; done
ln -s bin "$R/sbin"
for m in virtio virtio_ring virtio_pci virtio_pci_modern_dev virtio_pci_legacy_dev virtio_blk \
         virtio_net net_failover failover virtio_console cdrom isofs button evdev; do
  f=$(cd "$B/x/kernel/lib/modules/$KVER" && find kernel -name "$m.ko")
  mkdir -p "$R/lib/modules/$KVER/$(dirname "$f")"
  cp "$B/x/kernel/lib/modules/$KVER/$f" "$R/lib/modules/$KVER/$f"
done
cp "$B/x/kernel/lib/modules/$KVER/modules.builtin" "$R/lib/modules/$KVER/"
"$R/bin/busybox" depmod -b "$R" "$KVER"
printf '#!/bin/sh\nsync\npoweroff -f\n' > "$R/etc/acpi/PWRF/00000080"
chmod +x "$R/etc/acpi/PWRF/00000080"

cat > "$R/etc/udhcpc.script" <<'DHCP'
#!/bin/sh
case "$1" in
  deconfig) ip -4 addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    for r in $router; do ip route add default via "$r" dev "$interface"; break; done
    echo "$ip" > /tmp/ip ;;
esac
exit 0
DHCP
chmod +x "$R/etc/udhcpc.script"

cat > "$R/bin/serve-http" <<'HTTP'
#!/bin/sh
# One HTTP request on stdin/stdout (started by `nc -ll -e` per connection); answers, then closes.
. /etc/identity                    # HOST, IID and CR, written once at boot (no fork per request)
read -r method uri _version || exit 0
while read -r line; do line=${line%"$CR"}; [ -z "$line" ] && break; done
read -r up _idle < /proc/uptime
echo "$up $method $uri" >> /tmp/access.log
status="200 OK"; type="text/plain; charset=utf-8"
case "$uri" in
  /|/index.html) body="hostname=$HOST instance-id=$IID" ;;
  /health) body="ok" ;;
  /metrics)
    type="text/plain; version=0.0.4; charset=utf-8"
    body="# HELP guest_http_requests_total HTTP requests this guest served, this one included.
# TYPE guest_http_requests_total counter
guest_http_requests_total $(wc -l < /tmp/access.log)
# HELP guest_info Identity of the guest, from its seed and SMBIOS serial.
# TYPE guest_info gauge
guest_info{hostname=\"$HOST\",instance_id=\"$IID\"} 1
# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.
# TYPE node_cpu_seconds_total counter
$(awk '/^cpu[0-9]/ {c=substr($1,4); split("user nice system idle iowait irq softirq steal",m," ");
   for (i=1;i<=8;i++) printf "node_cpu_seconds_total{cpu=\"%s\",mode=\"%s\"} %.2f\n", c, m[i], $(i+1)/100}' /proc/stat)" ;;
  /slow*)
    ms=$(echo "$uri" | sed -n 's/.*[?&]ms=\([0-9]*\).*/\1/p'); ms=${ms:-1000}
    usleep $((ms * 1000)); body="slept ${ms}ms on $(hostname)" ;;
  /requests) body=$(cat /tmp/access.log) ;;
  /user-data) body=$(cat /mnt/seed/user-data 2>/dev/null) ;;
  *) status="404 Not Found"; body="not found" ;;
esac
body="$body
"
printf 'HTTP/1.0 %s\r\nContent-Type: %s\r\nContent-Length: %s\r\nConnection: close\r\n\r\n%s' \
  "$status" "$type" "${#body}" "$body"                     # bodies are ASCII: length in bytes
HTTP
chmod +x "$R/bin/serve-http"

cat > "$R/init" <<'INIT'
#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
modprobe -a virtio_pci virtio_blk virtio_net virtio_console isofs button evdev 2>/dev/null
acpid -c /etc/acpi 2>/dev/null
ip link set lo up
for d in /dev/vd?; do                       # the data disk: the first ext4 one
  [ -b "$d" ] && mount -t ext4 "$d" /mnt/data 2>/dev/null && break
done
for d in /dev/vd?; do                       # the NoCloud seed: an iso9660 disk with meta-data
  [ -b "$d" ] && mount -t iso9660 -o ro "$d" /mnt/seed 2>/dev/null || continue
  [ -f /mnt/seed/meta-data ] && break
  umount /mnt/seed
done
meta() { sed -n "s/^$1: *//p" /mnt/seed/meta-data 2>/dev/null | head -n1 | tr -d "\"'"; }
iid=$(meta instance-id); host=$(meta local-hostname)
for kv in $(tr ';' ' ' < /sys/class/dmi/id/product_serial 2>/dev/null); do
  case "$kv" in i=*) iid=${kv#i=} ;; h=*) host=${kv#h=} ;; esac
done
hostname "${host:-golden}"
printf 'HOST=%s\nIID=%s\nCR="\r"\n' "$(hostname)" "${iid:-none}" > /etc/identity
: > /tmp/access.log
nc -ll -p 80 -e /bin/serve-http &
if [ -e /sys/class/net/eth0 ]; then
  udhcpc -i eth0 -s /etc/udhcpc.script -x "hostname:$(hostname)" -t 20 -T 1 -b >/dev/null 2>&1
fi
uuid=$(cat /sys/class/dmi/id/product_uuid 2>/dev/null)
msg="READY uptime=$(cut -d' ' -f1 /proc/uptime) ip=$(cat /tmp/ip 2>/dev/null) uuid=$uuid"
msg="$msg instance-id=${iid:-none} hostname=$(hostname)"
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
echo "$KEY" > "$OUT/.script-sha256"
