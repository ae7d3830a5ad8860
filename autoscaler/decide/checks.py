"""Each check's input classified and turned into a proposal; missing data is never read as zero."""

from __future__ import annotations

import math

from autoscaler import model
from autoscaler.decide import strategies
from autoscaler.policy import durations, spec


def classify(check: spec.Check, raw: model.CheckInput | None, now: float) -> model.CheckInput:
    """Fresh only when a finite sample newer than max_staleness exists; otherwise Missing or Stale."""
    if raw is None:
        return model.Missing("no input")
    if not isinstance(raw, model.Fresh):
        return raw
    finite = tuple(sorted((s for s in raw.samples if math.isfinite(s.value)), key=lambda s: s.timestamp))
    if not finite:
        return model.Missing("nan" if raw.samples else "empty")
    age = now - finite[-1].timestamp
    if age > check.max_staleness:
        return model.Stale(age)
    return model.Fresh(finite)


def _describe(check_input: model.CheckInput) -> str:
    if isinstance(check_input, model.Missing):
        return f"missing ({check_input.reason})"
    if isinstance(check_input, model.Stale):
        return f"stale ({durations.format_seconds(round(check_input.age))} old)"
    if isinstance(check_input, model.Failed):
        return f"failed ({check_input.error_class})"
    return "fresh"


Anchor = tuple[float, int]
"""(when the check's data was last fresh, the group's count then)."""


def on_missing(
    check: spec.Check, check_input: model.CheckInput, current: int, anchor: Anchor, now: float
) -> tuple[int, str]:
    """The count a check proposes when its data is unusable, per its on_missing rule.

    A scale_up stops at `up_to` above the count last seen with fresh data, and holds once the data
    has been unusable for longer than `for`: a weekend-long outage must not walk a group to its max.
    """
    what = _describe(check_input)
    rule = check.on_missing
    if rule.scale_up is not None:
        return _scale_up(rule, what, current, anchor, now)
    if rule.fallback is not None:
        return rule.fallback, f"{what}: on_missing fallback {rule.fallback}"
    return current, f"{what}: on_missing hold"


def _scale_up(rule: spec.OnMissing, what: str, current: int, anchor: Anchor, now: float) -> tuple[int, str]:
    assert rule.scale_up is not None
    since, seen = anchor
    if rule.for_ is not None and now - since > rule.for_:
        span = durations.format_seconds(rule.for_)
        return current, f"{what}: on_missing scale_up held, data unusable for longer than {span}"
    wanted = current + rule.scale_up
    if rule.up_to is not None and wanted > seen + rule.up_to:
        ceiling = max(current, seen + rule.up_to)
        return ceiling, f"{what}: on_missing scale_up stops at {rule.up_to} above {seen} (last fresh)"
    return wanted, f"{what}: on_missing scale_up {rule.scale_up}"


def with_history(check: spec.Check, fresh: model.Fresh, remembered: model.Samples) -> model.Samples:
    """The newest samples the strategy reads: this evaluation's, after those remembered from before.

    A source answering an instant query gives one sample per evaluation, so a threshold's
    trigger_samples can only be met across evaluations. A sample seen again (same timestamp)
    counts once.
    """
    wanted = strategies.samples_read(check.strategy)
    if wanted <= 1:
        return fresh.samples
    by_time = {s.timestamp: s for s in (*remembered, *fresh.samples)}
    return tuple(sorted(by_time.values(), key=lambda s: s.timestamp))[-wanted:]


def report(
    check: spec.Check,
    raw: model.CheckInput | None,
    current: int,
    ready: int,
    now: float,
    remembered: model.Samples = (),
    anchor: Anchor | None = None,
) -> tuple[model.CheckReport, bool, model.Samples, Anchor]:
    """The check's report, whether its raw result was held by the tolerance band, the samples to
    remember for the next evaluation (none once the data is unusable: the run starts again), and
    the check's anchor (when its data was last fresh and the count then) for on_missing's bounds."""
    if not strategies.needs_samples(check.strategy):
        proposal = strategies.propose(check.strategy, current, ready, ())
        entry = model.CheckReport(check.name, "fresh", None, proposal.count, proposal.detail)
        return entry, False, (), (now, current)
    check_input = classify(check, raw, now)
    if not isinstance(check_input, model.Fresh):
        held = (now, current) if anchor is None else anchor
        count, detail = on_missing(check, check_input, current, held, now)
        kind = model.input_kind(check_input)
        return model.CheckReport(check.name, kind, None, count, detail), False, (), held
    samples = with_history(check, check_input, remembered)
    proposal = strategies.propose(check.strategy, current, ready, samples)
    entry = model.CheckReport(check.name, "fresh", proposal.value, proposal.count, proposal.detail)
    keep = samples if strategies.samples_read(check.strategy) > 1 else ()
    return entry, proposal.tolerated, keep, (now, current)
