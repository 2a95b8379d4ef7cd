"""Test helpers shared by the project's test suites."""
