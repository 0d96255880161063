"""The zmq side shared by the broker server and the runtimes: CurveZMQ keys and ZAP."""
