"""`python -m safekit.vip`: acquire, release or check a virtual IP by hand."""

import sys

from safekit.vip.cli import main

sys.exit(main())
