"""`python -m torchship.cli`: the same command as the `torchship` entry point."""

from torchship.cli import main

if __name__ == "__main__":
    main()
