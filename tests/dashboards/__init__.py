"""Tests of the Grafana dashboards shipped under dashboards/grafana."""
