"""`python -m imagedock`, the same as the `imagedock` command."""

import sys

from imagedock.cli import main

sys.exit(main())
