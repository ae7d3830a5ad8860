"""A namespace rig's owner, made to be killed: it starts a rig with one running guest, says so, waits.

Run as `python -m tests.demo.rig_owner WORKDIR`; it prints one JSON line (the namespace's handle and
the rig's directory) once QEMU runs, then blocks until killed.
"""

from __future__ import annotations

import json
import pathlib
import sys
import threading

from autoscaler.demo import netns


def main() -> None:
    scratch = pathlib.Path(sys.argv[1])
    workdir = scratch / "rig"
    workdir.mkdir()
    rig = netns.Rig.start(workdir, scratch=scratch)
    template = rig.write_template("as-orphan")
    rig.virsh("create", str(template))
    print(json.dumps({"netns": rig.netns_path, "workdir": str(workdir)}), flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
