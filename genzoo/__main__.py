"""``python -m genzoo``: the same command line as the ``genzoo`` script."""

from genzoo.cli import main

main()
