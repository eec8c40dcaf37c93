"""Integration tests: the Prometheus client against a real Prometheus and a fault-injecting fake."""
