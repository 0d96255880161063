"""The broker daemon: the ROUTER loop (`server`) driving the pure `storymesh.core.broker`,
and its Prometheus endpoint (`metrics`)."""
