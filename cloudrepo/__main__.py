"""`python -m cloudrepo`: the same command as `cloudrepo`."""

import sys

from cloudrepo.cli import main

sys.exit(main())
