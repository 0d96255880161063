"""The storymesh broker: a pure MDP core (`core`) and the ZeroMQ server driving it (`server`)."""
