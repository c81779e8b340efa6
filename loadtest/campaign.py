"""The benchmark campaign, by path: the same as `python -m chatload.campaign` (see there).

.venv/bin/python loadtest/campaign.py --list
.venv/bin/python loadtest/campaign.py --only size-100,size-500 [--out DIR]
"""

import sys

from chatload.campaign.cli import main

if __name__ == "__main__":
    sys.exit(main())
