"""`python -m medlabeler ...` (what torchrun launches: `torchrun --nproc_per_node N -m medlabeler train P`)."""

import sys

from medlabeler.cli import main

sys.exit(main())
