"""The worker process: the job registry and the runtime that runs it."""
