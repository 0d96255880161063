"""Operations: the live monitor, Prometheus metrics and systemd readiness/watchdog notices."""
