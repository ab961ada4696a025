"""Benchmarks that print the figures the project's issues name, measured on this machine."""
