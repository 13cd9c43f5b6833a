"""Observability across systems: OpenTelemetry traces (the optional extra ``mustcheck[otel]``)."""
