"""breaklab: a broken-experiment teaching suite for ML debugging."""

__version__ = "0.1.0"
METRICS_SCHEMA_VERSION = 1
