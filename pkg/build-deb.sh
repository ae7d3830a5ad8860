#!/usr/bin/env bash
# `make deb`: a Debian 12 package from a `make install` staged at prefix=/usr.
#
# The staged tree sits where dpkg-shlibdeps looks for it (debian/autoscaler), so the shared
# libraries the virtualenv's compiled modules link against (libvirt0 first of all) become real
# Depends. Every file under /etc is a conffile. The maintainer scripts (pkg/debian/) create the
# user and directories and never start, restart or enable the service.
set -euo pipefail

: "${BUILD:?}" "${OUT:?}" "${MAKE:=make}"
DEB_COMPRESSION=${DEB_COMPRESSION:-xz}
DEB_MAINTAINER=${DEB_MAINTAINER:-autoscaler maintainers <root@localhost>}
work="$BUILD/deb"
root="$work/debian/autoscaler"

version=$(python3 -c 'import re, sys; print(re.search(r"__version__ = \"(.+)\"", sys.stdin.read())[1])' \
    < autoscaler/__init__.py)
arch=$(dpkg --print-architecture)

rm -rf "$work"
mkdir -p "$root/DEBIAN" "$OUT"
"$MAKE" --no-print-directory install DESTDIR="$PWD/$root" prefix=/usr BUILD="$BUILD"
# the interpreter the virtualenv links to, by version: a newer python3 must not break it
python_version=$("$root/usr/lib/autoscaler/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')

install -d "$root/usr/share/doc/autoscaler"
install -m 0644 pkg/debian/copyright "$root/usr/share/doc/autoscaler/copyright"

shared_library_depends() {
    printf 'Source: autoscaler\n\nPackage: autoscaler\nArchitecture: any\n' > "$work/debian/control"
    local log="$work/shlibdeps.log" objects key cache
    mapfile -t objects < <(cd "$work" && find debian/autoscaler -type f -name '*.so*' | sort)
    # The same compiled modules give the same answer: reuse it (dpkg-shlibdeps takes a while).
    key=$(cd "$work" && md5sum "${objects[@]}" | sed 's|debian/autoscaler/||' | md5sum | cut -d' ' -f1)
    cache="$BUILD/shlibs.$key"
    if [ ! -s "$cache" ]; then
        # Wheels bundle some libraries of their own (numpy.libs): those have no Debian package.
        if ! (cd "$work" && dpkg-shlibdeps -O --ignore-missing-info "${objects[@]}") > "$cache.new" 2> "$log"; then
            cat "$log" >&2
            return 1
        fi
        mv "$cache.new" "$cache"
    fi
    sed -n 's/^shlibs:Depends=//p' "$cache"
}

control() {
    cat <<EOF
Package: autoscaler
Version: $version
Architecture: $arch
Maintainer: $DEB_MAINTAINER
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: python$python_version, systemd, $(shared_library_depends)
Recommends: libvirt-daemon-system, qemu-system-x86, qemu-utils
Suggests: prometheus
Section: admin
Priority: optional
Description: autoscaling daemon for KVM hosts
 Runs on each hypervisor host as autoscaler.service: for every group of
 instances cloned from one golden image it reads a YAML policy, fetches the
 metrics its checks name (Prometheus, an exporter, libvirt), decides how many
 instances the group needs and clones or destroys libvirt domains to match.
 .
 The program lives in its own virtualenv under /usr/lib/autoscaler. Installing
 the package creates the autoscaler user and its directories; it never starts,
 restarts or enables the service.
EOF
}

control > "$root/DEBIAN/control"
(cd "$root" && find etc -type f | sort | sed 's|^|/|') > "$root/DEBIAN/conffiles"
install -m 0755 pkg/debian/postinst pkg/debian/prerm pkg/debian/postrm "$root/DEBIAN/"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) \
    > "$root/DEBIAN/md5sums"
deb="$OUT/autoscaler_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Z"$DEB_COMPRESSION" --build "$root" "$deb"
