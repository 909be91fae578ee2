"""A local, stateful stand-in for the Stripe HTTP API, for development and tests."""
