"""``python -m glp.cli``: the ``glp`` console script."""

from glp.cli import main

main()
