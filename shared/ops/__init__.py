"""Operations: Prometheus metrics, readiness checks and the listener that serves them."""
