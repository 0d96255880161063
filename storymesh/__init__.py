"""storymesh: AI story agents as long-lived daemons on a ZeroMQ Majordomo broker."""

__version__ = "0.1.0"
