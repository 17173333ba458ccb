"""Autoscaling: the supervisor's scaling decisions and the scaling signal for external
autoscalers (see docs/autoscaling.md)."""
