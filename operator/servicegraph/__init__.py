"""servicegraph-operator: the service dependency graph an SLO engine needs."""

__version__ = "0.1.0"
