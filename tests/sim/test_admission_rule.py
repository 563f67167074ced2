"""One admission-mode rule (`exfairs.policies.admission.admission_refusal`): the simulator, a
sweep grid and the live gate refuse exactly the (mode, admission spec) pairs it refuses, each with
its own error."""

from __future__ import annotations

import pytest
from sim_factories import profile, workload

from exfairs.errors import ConfigError, InputError
from exfairs.live.gate import check_live_admission
from exfairs.policies.admission import AdmissionConfig, admission_refusal
from exfairs.policies.experiments import Mode, parse_experiment
from exfairs.sim.runner import simulate
from exfairs.sim.sweep_grid import _check_admission

_SPECS = ["hopeless=keep,limit=off", "hopeless=demote", "hopeless=reject", "limit=predictive",
          "limit=feedback", "hopeless=reject,limit=predictive+feedback"]
_EXPERIMENTS = {Mode.GATE: "QUEUE_FCFS", Mode.PRIORITY: "FCFS", Mode.ENGINE: "ENGINE_FCFS"}


def _expected(mode: Mode, adm: AdmissionConfig) -> str | None:
    if not adm.active or mode is Mode.GATE:
        return None
    if mode is Mode.PRIORITY:
        return "priority_mode"
    return "engine_feedback" if adm.feedback else None


@pytest.mark.parametrize("spec", _SPECS)
@pytest.mark.parametrize("mode", list(Mode))
def test_every_caller_refuses_what_the_rule_refuses(mode: Mode, spec: str) -> None:
    adm = AdmissionConfig.parse(spec)
    refusal = admission_refusal(mode, adm)
    assert refusal == _expected(mode, adm)
    exp = parse_experiment(_EXPERIMENTS[mode])
    wl = workload([("a", 0.0, 8, 2), ("a", 0.1, 8, 2)], clients=["a"])
    if refusal is None:
        simulate(wl, exp, profile(), admission=adm)
        _check_admission(adm, exp)
        check_live_admission(adm, mode)
        return
    with pytest.raises(ConfigError, match="admission"):
        simulate(wl, exp, profile(), admission=adm)
    with pytest.raises(InputError, match=exp.name):
        _check_admission(adm, exp)
    with pytest.raises(ConfigError, match="admission"):
        check_live_admission(adm, mode)
