"""Emporium's policy pack: ``pulumi preview --policy-pack policy`` from ``infra/``.

The validators live in ``emporium.infra.policies`` so the unit tests exercise the
same code; this file only serves them.
"""

from pulumi_policy import EnforcementLevel, PolicyPack

from emporium.infra.policy_pack import build_policies

PolicyPack(name="emporium", enforcement_level=EnforcementLevel.MANDATORY, policies=build_policies())
