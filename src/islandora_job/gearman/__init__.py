"""The Gearman protocol: a sans-I/O codec with thin blocking I/O on top.

This package knows nothing of jobs, payloads or pytest; it moves bytes.
"""
