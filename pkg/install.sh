#!/usr/bin/env bash
# `make install`: the program in its own virtualenv, built at its final path under $DESTDIR, plus
# the unit, sysusers and tmpfiles snippets, the settings file and example policies, man pages and
# shell completion. Paths come from the Makefile (prefix, bindir, ...); see its install section.
#
# The virtualenv is relocated from $DESTDIR/$venvdir to $venvdir by rewriting the only places
# that hold its absolute path: the console scripts' #! lines, the activate scripts and
# pyvenv.cfg; byte code records the final path too (compileall -s/-p). Its python is a symlink to
# the host's /usr/bin/python3.X, and it never sees the system's site-packages.
set -euo pipefail

: "${DESTDIR=}" "${prefix:?}" "${bindir:?}" "${libdir:?}" "${datadir:?}" "${mandir:?}" "${docdir:?}"
: "${sysconfdir:?}" "${unitdir:?}" "${sysusersdir:?}" "${tmpfilesdir:?}" "${bashcompletiondir:?}"
: "${zshcompletiondir:?}" "${venvdir:?}" "${PYTHON:?}" "${PIP:?}" "${DOCS_PYTHON:?}" "${WHEELHOUSE:?}"
: "${BUILD:?}"

stage() { printf '%s%s' "$DESTDIR" "$1"; }
venv=$(stage "$venvdir")

# Substitutes the installed paths into the files that name them (written for prefix=/usr).
substitute() {
    sed -e "s|/usr/bin/autoscaler|$bindir/autoscaler|g" -e "s|/etc/autoscaler|$sysconfdir/autoscaler|g" \
        -e "s|/usr/share/doc/autoscaler|$docdir|g" "$1"
}

build_wheels() {
    # Our own wheel every time; third-party wheels once (the wheelhouse is the cache).
    rm -f "$WHEELHOUSE"/autoscaler-*.whl
    # setuptools copies sources into build/lib and never removes one deleted since: start clean
    rm -rf build/lib build/bdist.*
    "$PIP" wheel --quiet --no-deps --no-build-isolation --wheel-dir "$WHEELHOUSE" .
    local ours=("$WHEELHOUSE"/autoscaler-*.whl)
    if ! "$PIP" wheel --quiet --no-index --find-links "$WHEELHOUSE" --wheel-dir "$WHEELHOUSE" "${ours[@]}" \
        2>/dev/null; then
        "$PIP" wheel --quiet --find-links "$WHEELHOUSE" --wheel-dir "$WHEELHOUSE" "${ours[@]}"
    fi
}

install_venv() {
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    "$PYTHON" -m venv --without-pip "$venv"
    "$PIP" --python "$venv/bin/python" install --quiet --no-index --no-compile --no-warn-script-location \
        --find-links "$WHEELHOUSE" "$WHEELHOUSE"/autoscaler-*.whl
    if [ -n "$DESTDIR" ]; then
        grep -rlIF --null "$venv" "$venv" | xargs -0 --no-run-if-empty sed -i "s|$venv|$venvdir|g"
    fi
    # Where pip found each wheel is a fact of this build machine, not of the installed program.
    find "$venv" -name direct_url.json -delete
    # The test suites the dependencies ship (numpy's alone are 800 files) never run in production.
    find "$venv/lib" -mindepth 4 -type d -name tests -prune -exec rm -rf {} +
    local strip=()
    [ -z "$DESTDIR" ] || strip=(-s "$DESTDIR" -p /)
    "$venv/bin/python" -m compileall -q -j 0 "${strip[@]}" "$venv/lib" >/dev/null
}

install_program() {
    install -d "$(stage "$bindir")"
    ln -sfr "$venv/bin/autoscaler" "$(stage "$bindir")/autoscaler"
}

install_systemd() {
    install -d "$(stage "$unitdir")" "$(stage "$sysusersdir")" "$(stage "$tmpfilesdir")"
    substitute systemd/autoscaler.service > "$(stage "$unitdir")/autoscaler.service"
    install -m 0644 systemd/autoscaler.sysusers.conf "$(stage "$sysusersdir")/autoscaler.conf"
    substitute systemd/autoscaler.tmpfiles.conf > "$(stage "$tmpfilesdir")/autoscaler.conf"
    chmod 0644 "$(stage "$unitdir")/autoscaler.service" "$(stage "$tmpfilesdir")/autoscaler.conf"
}

install_config() {
    local etc
    etc=$(stage "$sysconfdir/autoscaler")
    install -d "$etc/policies" "$etc/examples" "$etc/examples/cloud-init"
    # An operator's edited settings survive a re-install (the Debian package has conffiles for that).
    if [ ! -e "$etc/autoscaler.yaml" ]; then
        substitute deploy/autoscaler.yaml > "$etc/autoscaler.yaml"
        chmod 0644 "$etc/autoscaler.yaml"
    fi
    install -m 0644 policies/*.yaml "$etc/examples/"
    # the user-data files the examples' `instance:` sections name, beside them as they expect
    install -m 0644 policies/cloud-init/*.yaml "$etc/examples/cloud-init/"
}

install_docs() {
    local generated="$BUILD/docs"
    rm -rf "$generated"
    "$DOCS_PYTHON" pkg/docs.py "$generated"
    install -d "$(stage "$mandir/man1")" "$(stage "$bashcompletiondir")" "$(stage "$zshcompletiondir")"
    for page in "$generated"/*.1; do
        gzip -9n < "$page" > "$(stage "$mandir/man1")/$(basename "$page").gz"
    done
    install -m 0644 "$generated/autoscaler.bash" "$(stage "$bashcompletiondir")/autoscaler"
    install -m 0644 "$generated/_autoscaler" "$(stage "$zshcompletiondir")/_autoscaler"
    install -d "$(stage "$docdir")/deploy" "$(stage "$datadir")/autoscaler"
    install -m 0644 README.md "$(stage "$docdir")/"
    install -m 0644 deploy/README.md deploy/*.yml deploy/grafana-dashboard.json deploy/libvirtd.conf \
        "$(stage "$docdir")/deploy/"
    install -m 0644 policies/schema.json "$(stage "$datadir")/autoscaler/policy.schema.json"
}

# On a live system (no DESTDIR) do what the Debian package's postinst does; never start anything.
activate() {
    [ -z "$DESTDIR" ] && [ "$(id -u)" -eq 0 ] || return 0
    systemd-sysusers autoscaler.conf
    systemd-tmpfiles --create autoscaler.conf
    local token="$sysconfdir/autoscaler/api-token"
    if [ ! -e "$token" ]; then
        (umask 027 && head -c 32 /dev/urandom | base64 > "$token") && chgrp autoscaler "$token"
    fi
    if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
    echo "installed; start it with: systemctl enable --now autoscaler"
}

mkdir -p "$WHEELHOUSE" "$BUILD"
build_wheels
install_venv
install_program
install_systemd
install_config
install_docs
activate
