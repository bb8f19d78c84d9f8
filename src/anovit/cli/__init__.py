"""The command line: arguments (:mod:`.args`), one function per command (:mod:`.commands`), the demo and
the printed tables. A thin layer: it parses, builds the config and calls the library."""

from anovit.cli.commands import main

__all__ = ["main"]
