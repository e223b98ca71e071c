"""``python -m autocompress``: the command line."""

import sys

from autocompress.cli import main

sys.exit(main())
