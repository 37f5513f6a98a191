"""`safekit lab`: lab hosts made of network namespaces, for the demo, the tests and first steps."""

from safekit.lab.lab import Lab
from safekit.lab.topology import LabError, LabPlan, plan_lab

__all__ = ["Lab", "LabError", "LabPlan", "plan_lab"]
