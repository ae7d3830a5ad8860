"""Each clone's own identity: a cloud-init NoCloud seed and an SMBIOS serial, built in memory.

Golden images are cloud images: without a fresh instance-id and hostname per clone every clone
boots as the same machine, and cloud-init never re-runs its per-instance work (SSH host keys,
hostname, user setup). This package is pure (no libvirt, no I/O beyond reading the operator's
files in `documents`): `template` fills user-data with a closed set of variables, `documents`
checks the operator's user-data and network-config files the way `autoscaler check` reports
them, and `seed` renders one clone's meta-data, user-data, vendor-data and network-config and
packs them into an ISO9660 image labelled `cidata` (Joliet + Rock Ridge names).
"""
