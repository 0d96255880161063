"""The runtimes that own the sockets on the agents' and clients' side: the agent interface
and the worker runtime that drives it (READY, heartbeats, reconnects, slots), and the client
runtime (pipelining, retries with the same request id)."""
