"""Federated personalisation with Flower (issue 28): task, client app, server app, fleet."""
