"""`python -m chatload.campaign`: see chatload.campaign."""

import sys

from .cli import main

sys.exit(main())
