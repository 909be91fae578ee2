"""The development server, `computebill up`: embedded services, the supervisor of the app and
the worker, and the demo account."""
