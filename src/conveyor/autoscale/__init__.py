"""Autoscaling: the supervisor's scaling decisions and the scaling signal for external
autoscalers (see docs/autoscaling.md)."""

# How the supervisor's decisions are written to the audit log, and found there again.
AUDIT_ACTOR = "autoscaler"
AUDIT_ACTION = "autoscale"
