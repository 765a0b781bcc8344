"""`python -m lantaarn`."""

import sys

from lantaarn.cli import main

sys.exit(main())
