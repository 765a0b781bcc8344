"""The operators' web page (static files) and Grafana dashboards; no Python logic."""
