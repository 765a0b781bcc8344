"""Alerting: evaluating the registry's alert rules over stored readings, and notifying.

The evaluator (`lantaarn alerts`) reads rules and open alerts from the registry, statistics
from the stored 1-minute rollups plus the few minutes not rolled up yet, and the latest state
of each device; it stores its decisions (devices.registry.alerts) and sends what they owe to
the notification channels (webhook, e-mail, Prometheus Alertmanager). Imports `devices` and
`timeseries`, as the API does.
"""

from __future__ import annotations

from alerting.evaluator import Evaluator, EvaluatorConfig
from alerting.lifecycle import Observation, decide

__all__ = ["Evaluator", "EvaluatorConfig", "Observation", "decide"]
