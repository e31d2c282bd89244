"""`python -m logkit ...` is the `logkit` command."""
import sys

from logkit.cli import main

sys.exit(main())
