"""Releasing models to a fleet: telemetry, assignment, sequential tests, canary with automatic
rollback, A/B tests, drift detection, the data-to-release pipeline and a fleet simulator."""
