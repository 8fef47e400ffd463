"""What the processes count, shared in Redis, and how /metrics shows it (metrics.py)."""
