"""Test support for the repository's own tests: the pytest plugin that gives
tests the local platform's real PostgreSQL and Kafka (:mod:`.pytest_plugin`).

Not a dependency of any service and never in an image.
"""
