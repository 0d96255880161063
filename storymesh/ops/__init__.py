"""Operator commands among the front ends: `storymesh up` (the supervisor), the live
monitor, health, one request, the echo demo, and the registry of daemons by name."""
