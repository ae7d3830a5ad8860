"""Realistic values for every metric, shared by the metrics and deploy-asset tests."""

from __future__ import annotations

from autoscaler import model
from autoscaler.telemetry import coordination, groups, metrics


def web_inventory() -> model.GroupInventory:
    def vm(name: str, state: model.InstanceState) -> model.Instance:
        return model.Instance(name=name, uuid=name, state=state, created_at=0.0)

    states = [model.InstanceState.READY] * 3 + [model.InstanceState.BOOTING, model.InstanceState.DRAINING]
    return model.GroupInventory("web", tuple(vm(f"web-{i}", s) for i, s in enumerate(states)))


def populate(m: metrics.Metrics) -> None:
    """Touch every metric the daemon defines, with realistic label values."""
    m.publish(
        "web",
        groups.GroupSnapshot.of(
            web_inventory(),
            desired=6,
            low=2,
            high=12,
            state="cooldown",
            cooldown_remaining=42.0,
            last_evaluation=1e9,
        ),
    )
    m.evaluated("web", "ok", 0.004)
    trail = (model.Stage("propose", 4, 9, "rps"), model.Stage("rate_limit", 9, 6, "max_step"))
    m.decided(model.Decision("web", 1e9, 4, 6, (), trail, reason="scale_out"))
    m.scaled("web", "up", model.ScaleResult(done=("a", "b"), failed=1, errors=("boom",)))
    m.cloned("web", 3.2)
    m.destroyed("web", 0.4)
    m.replaced("web", "unhealthy")
    m.handler_restarted("web")
    m.forecast("web", predicted=120.0, observed=100.0)
    m.queried("web", "rps_per_vm", "prometheus", 0.02, error_class="unavailable")
    m.check_input("web", "rps_per_vm", model.Missing())
    m.policy_reloaded("ok", at=1e9)
    m.policy_load_errors({"bad.yaml": 2})
    m.libvirt_call("define", 0.05, "temporary")
    m.provisioned("web", "overlay", 0.3)
    m.reconnected("qemu:///system")
    m.capacity_refused("web")
    m.balancer_failed("web", "drain", "lb_unreachable")
    m.hook_ran("web", "launching", "abandon", "default_timeout")
    m.drain_ended("web", "idle", 4.2)
    m.loop_lagged(0.003)
    leading = coordination.Snapshot(
        "kvm1",
        True,
        True,
        "kvm1",
        ("web",),
        3.2,
        1,
        {"define": 1},
        watch_reconnects={"leader_key": 2},
        watch_compactions={"pauses": 1},
        etcd_requests={"/v3/kv/txn": 40},
    )
    coordination.register(m.registry, lambda: leading)
