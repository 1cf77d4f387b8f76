"""Metrics, health endpoints and the readiness checks behind them."""
