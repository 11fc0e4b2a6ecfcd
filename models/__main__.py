"""`python -m durosim`: the same as the `durosim` command."""

from durosim.cli import main

main()
