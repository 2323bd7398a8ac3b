"""The user's medlabeler folder: the demo project, recent projects, labels kept from failed saves.

``$MEDLABELER_HOME`` when set (tests, a second user, a shared machine), else ``~/.medlabeler``.
"""

from __future__ import annotations

import os
from pathlib import Path


def medlabeler_home() -> Path:
    return Path(os.environ.get("MEDLABELER_HOME", Path.home() / ".medlabeler"))
