"""The command line: ``retrieval build|add|delete|search|classify|explain|info|serve|eval|demo``.
A thin layer over the facade (:mod:`retrieval.api`): it parses, calls, prints."""

from retrieval.cli.main import main

__all__ = ["main"]
