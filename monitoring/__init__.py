"""Watching releases in production: the Prometheus rules (alerts.yml) and the canary analysis
(`python -m monitoring.canary`). Runs where the Pulumi program runs; stdlib only against Prometheus."""
