#!/usr/bin/env bash
# Installs the Debian packages the daemon and its tests need, only when some are missing,
# so that `make run` and `make test` work on a fresh Debian 12 machine.
set -euo pipefail

packages=(
    # Python: a venv and headers to build libvirt-python against the host's libvirt
    python3 python3-venv python3-dev gcc pkg-config libvirt-dev
    # the hypervisor stack the daemon drives (tests start libvirtd and virtlogd themselves)
    libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 qemu-utils
    # the real Prometheus server and promtool, for the end-to-end and metrics tests
    prometheus
    # systemd-analyze, for the unit file checks
    systemd
    # the small bootable test guest, built offline from Debian packages
    cpio mtools syslinux syslinux-common fdisk e2fsprogs gzip
    # the serving rig: network namespaces, libvirt's DHCP (dnsmasq), the load balancer, and
    # cloud-init's own NoCloud parser to check the seeds we build
    iproute2 dnsmasq-base haproxy cloud-init
    # coordination between hosts: a real etcd cluster (3.4) and etcdctl
    etcd-server etcd-client
    # the console's browser tests
    chromium chromium-driver
    # building the Debian package, and checking its man pages
    dpkg-dev fakeroot man-db
    # throwaway certificates for the etcd TLS tests
    openssl
)

missing=()
for package in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null || true)
    [ "$status" = "installed" ] || missing+=("$package")
done

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages: ${missing[*]}; run as root or install them first" >&2
    exit 1
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -q
# ovmf- keeps the UEFI firmware (and its size) out: guests here boot with SeaBIOS.
apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}" ovmf-
