"""``python -m terminals.cli``: the same as the ``skyport`` command."""

import sys

from terminals.cli.main import main

sys.exit(main())
