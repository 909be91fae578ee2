"""The job queue as the app and the jobs see it: sending requests and looking at the queue."""
