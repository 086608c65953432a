"""`python -m training <command>` (also what `torchrun -m training train ...` runs on every rank)."""

import sys

from training.cli import main

sys.exit(main())
