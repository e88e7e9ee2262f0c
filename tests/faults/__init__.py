"""Fault tests: real worker subprocesses against a real server, executions counted outside it."""
