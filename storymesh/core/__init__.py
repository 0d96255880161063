"""The pure core: the MDP codec, the body envelope, the schema, the broker's state machine
and the security policy. Bytes and a clock in, decisions out; nothing here imports zmq,
opens a socket or starts a thread (an import-linter contract in pyproject.toml holds it)."""
