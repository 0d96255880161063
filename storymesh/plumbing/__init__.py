"""Process plumbing every daemon shares: logging set-up, signal flags, rate-limited log lines
and systemd notifications. The bottom of the package: it imports nothing of storymesh."""
