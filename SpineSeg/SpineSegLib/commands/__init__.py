"""Subcommands of the ``spineseg`` command line, one module each (see ``SpineSegLib.cli``)."""
