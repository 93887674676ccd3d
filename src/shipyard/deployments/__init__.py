"""Deployments: named rollouts of a registered model's versions, their strategies and state.

Public API: :class:`DeploymentService` (``create``, ``get``, ``list``, ``update``, ``step``,
``promote``, ``rollback``, ``stop``, ``decisions``, the shared arm state ``record_pulls``,
``record_reward`` / ``record_rewards``, ``arm_stats``, the shared guard evidence
``record_evidence`` / ``evidence``, and ``record_assignments`` / ``assignment_of``); the spec
objects :class:`Arm`, :class:`Guard` (absolute, or relative to the stable arm:
``GuardCompare``), the strategies (:class:`SingleStrategy`, :class:`ShadowStrategy`,
:class:`CanaryStrategy`, :class:`ABStrategy`, :class:`BanditStrategy`, the union
:data:`Strategy`; :func:`describe_strategy` says one in words), the records
:class:`Deployment`, :class:`ArmStats`, :class:`Decision`; the pure logic
:func:`evaluate_guards` (→ :class:`GuardResult`) and :func:`compare_arms`
(→ :class:`Comparison`); spec text: :func:`parse_guard` (``error_rate<=0.01``,
``accuracy>=stable-0.02``) and :func:`load_spec_file` (YAML).

The live router that applies a deployment to traffic is :mod:`shipyard.rollout`.
"""

from ._guards import GuardResult, evaluate_guards, samples_of
from ._service import DeploymentService
from ._spec import (
    ARM_NAME_RE,
    GUARD_COMPARES,
    GUARD_METRICS,
    ABStrategy,
    Arm,
    ArmStats,
    BanditStrategy,
    CanaryStrategy,
    Decision,
    DecisionAction,
    Deployment,
    DeploymentStatus,
    Guard,
    GuardCompare,
    ShadowStrategy,
    SingleStrategy,
    Strategy,
    describe_strategy,
    parse_strategy,
    strategy_arms,
)
from ._spec_file import load_spec_file, parse_guard
from ._stats import Comparison, compare_arms

__all__ = [
    "ARM_NAME_RE",
    "GUARD_COMPARES",
    "GUARD_METRICS",
    "ABStrategy",
    "Arm",
    "ArmStats",
    "BanditStrategy",
    "CanaryStrategy",
    "Comparison",
    "Decision",
    "DecisionAction",
    "Deployment",
    "DeploymentService",
    "DeploymentStatus",
    "Guard",
    "GuardCompare",
    "GuardResult",
    "ShadowStrategy",
    "SingleStrategy",
    "Strategy",
    "compare_arms",
    "describe_strategy",
    "evaluate_guards",
    "load_spec_file",
    "parse_guard",
    "parse_strategy",
    "samples_of",
    "strategy_arms",
]
