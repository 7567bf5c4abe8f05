"""A one-at-a-time rolling update written in Python.

It does the same thing as the Rust policy in `policies/rolling`, to show that
a policy can be written in any language that targets the `policy` world
(see `wit/rollout-policy.wit`). For each replica it starts one instance of
the new revision, waits for it to become ready, optionally waits
`min-ready-ms` and probes it again, checks its logs for `log-pattern`, and
only then stops one old instance. On any failure (or an operator abort) it
starts back as many old instances as it replaced and stops every new one it
started.

Parameters: `ready-timeout-ms` (default 60s), `min-ready-ms` (default 0),
`log-pattern` (default `[ERROR]`); durations as in the Rust SDK: `500`,
`500ms`, `30s`, `5m`, `1h`.

Build with `build.sh`; the `wit_world` bindings are generated at build time.
"""

import wit_world
from componentize_py_types import Err
from wit_world.imports import clock, control, fleet, health
from wit_world.imports.types import (
    Command_Abort, Command_Promote, InstanceState, Level, Outcome_Completed,
    Outcome_Failed, Outcome_RolledBack, Progress, Verdict_Healthy,
)

UNITS = {"": 1, "ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000}


class Rollback(Exception):
    """Abandon the rollout and put the old revision back."""


def millis(params: dict, key: str, default: int) -> int:
    """A duration param in milliseconds: `500`, `500ms`, `30s`, `5m`, `1h`."""
    text = params.get(key, str(default)).strip()
    digits = text.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = text[len(digits):]
    if not digits.isdigit() or unit not in UNITS:
        raise ValueError(f"param {key}: expected a duration like 500ms, 30s or 5m, got {text!r}")
    return int(digits) * UNITS[unit]


def log(message: str) -> None:
    control.log(Level.INFO, message)


def error_text(err: Err) -> str:
    """`EffectError_Guardrail("max surge")` -> `"guardrail: max surge"`."""
    kind = type(err.value).__name__.removeprefix("EffectError_").lower()
    return f"{kind}: {err.value.value}"


def verdict_text(verdict) -> str:
    """`Verdict_Unhealthy("503")` -> `"unhealthy: 503"`."""
    kind = type(verdict).__name__.removeprefix("Verdict_").lower()
    return f"{kind}: {verdict.value}"


def ensure_healthy(verdict, instance: str) -> None:
    if not isinstance(verdict, Verdict_Healthy):
        raise Rollback(f"instance {instance} is {verdict_text(verdict)}")



class WitWorld(wit_world.WitWorld):
    def run(self, info):
        params = dict(info.params)
        try:
            timeout = millis(params, "ready-timeout-ms", 60_000)
            min_ready = millis(params, "min-ready-ms", 0)
        except ValueError as err:
            return Outcome_Failed(str(err))
        pattern = params.get("log-pattern", "[ERROR]")

        if info.from_revision is None:
            return first_deploy(info, timeout)

        old = [i.id for i in fleet.list() if i.revision == info.from_revision]
        started, replaced, promoted = [], 0, False
        try:
            for step in range(1, info.replicas + 1):
                if not promoted:
                    command = control.checkpoint(f"batch {step}")
                    if isinstance(command, Command_Abort):
                        raise Rollback(f"aborted: {command.value}")
                    promoted = isinstance(command, Command_Promote)
                message = f"batch {step}: 1 instance of revision {info.to_revision}"
                control.report(Progress(step=step, steps=info.replicas, message=message))
                log(message)

                try:
                    [new] = fleet.start(info.to_revision, 1)
                except Err as err:
                    raise Rollback(f"starting revision {info.to_revision}: {error_text(err)}")
                started.append(new.id)
                [result] = health.wait_ready([new.id], timeout)
                ensure_healthy(result.verdict, new.id)
                if min_ready > 0:
                    clock.sleep(min_ready)
                    ensure_healthy(health.probe(new.id).verdict, new.id)

                try:
                    lines = fleet.logs(new.id, 200)
                except Err as err:
                    raise Rollback(f"reading logs of {new.id}: {error_text(err)}")
                for line in lines:
                    if pattern in line:
                        raise Rollback(f"instance {new.id} logged '{line.strip()}'")
                log(f"instance {new.id} is healthy")

                if old:
                    stop([old.pop(0)])
                    replaced += 1
        except Rollback as reason:
            return roll_back(info, replaced, started, str(reason), timeout)
        log(f"all {info.replicas} instances run revision {info.to_revision}")
        return Outcome_Completed()


def roll_back(info, replaced: int, started: list, reason: str, timeout: int):
    """Restore `replaced` old instances, then stop the new ones we started.

    New instances that are not ready serve nothing, so they go first; then
    each restored old instance retires one ready new one, which keeps the
    fleet within the host's max-surge and min-available guardrails.
    """
    control.log(Level.WARN, f"rolling back: {reason}")
    ready = {i.id for i in fleet.list() if i.state == InstanceState.READY}
    live = [i for i in started if i in ready]
    try:
        stop([i for i in started if i not in ready])
        for n in range(1, replaced + 1):
            try:
                [instance] = fleet.start(info.from_revision, 1)
            except Err as err:
                raise Rollback(f"starting revision {info.from_revision}: {error_text(err)}")
            [result] = health.wait_ready([instance.id], timeout)
            ensure_healthy(result.verdict, instance.id)
            log(f"rollback: restored {n}/{replaced} ({instance.id})")
            if live:
                stop([live.pop()])
        stop(live)
    except Rollback as failure:
        return Outcome_Failed(f"rollback failed ({failure}) after: {reason}")
    return Outcome_RolledBack(reason)


def stop(ids: list) -> None:
    """Stop instances, turning a refusal into a failed rollback."""
    if not ids:
        return
    try:
        fleet.stop(ids)
    except Err as err:
        raise Rollback(f"stopping {', '.join(ids)}: {error_text(err)}")
    log(f"stopped {', '.join(ids)}")


def first_deploy(info, timeout: int):
    """Nothing is serving yet: start every replica at once."""
    log(f"first deploy: starting {info.replicas} instances of {info.to_revision}")
    try:
        ids = [i.id for i in fleet.start(info.to_revision, info.replicas)]
    except Err as err:
        return Outcome_Failed(f"starting revision {info.to_revision}: {error_text(err)}")
    bad = [r for r in health.wait_ready(ids, timeout)
           if not isinstance(r.verdict, Verdict_Healthy)]
    if bad:
        try:
            fleet.stop(ids)
        except Err:
            pass  # Failed hands the fleet to an operator anyway.
        return Outcome_Failed(f"{len(bad)} of {len(ids)} instances not ready, "
                              f"e.g. {bad[0].instance} is {verdict_text(bad[0].verdict)}")
    log(f"all {len(ids)} instances ready")
    return Outcome_Completed()
