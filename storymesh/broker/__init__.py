"""The storymesh broker: a pure MDP core (`core`) and the ZeroMQ server that drives it (`server`)."""
