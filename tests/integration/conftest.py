"""One real libvirtd and one real Prometheus server for the whole session, shared by every module.

Registering the fixtures here (not per module) matters: each module-level copy of a session
fixture is a separate instance, and a second copy would find the first one's libvirtd running,
treat it as foreign and skip what only an owned daemon allows (restarting it).
"""

from tests.integration.libvirt_env import libvirt_env
from tests.integration.prometheus_env import prometheus_server

__all__ = ["libvirt_env", "prometheus_server"]
