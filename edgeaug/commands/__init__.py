"""The ``edgeaug`` command's subcommands, one module per concern; :mod:`edgeaug.cli` assembles them."""
