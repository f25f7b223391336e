"""The master process: sockets, worker processes, signals. Knows nothing of HTTP."""
