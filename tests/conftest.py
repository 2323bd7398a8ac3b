"""Shared test setup: keep torch to the cores CI has, make runs reproducible, and end the process
without Qt's teardown once pytest has reported."""

import os
import sys

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OMP_NUM_THREADS", "2")

# nibabel gives its logger a stderr handler when first imported: imported inside a test that
# captures stderr (capsys), the handler kept that test's stream, closed after it, and every later
# nibabel message printed "--- Logging error --- Traceback" into another test's stderr (a CLI test
# that asserts no traceback failed whenever an export test had run before it). Imported here, the
# handler holds the real stderr.
import nibabel  # noqa: E402,F401

_session = None


def pytest_sessionstart(session):
    global _session
    _session = session


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """Exit with pytest's own status, skipping the interpreter's teardown, once Qt was loaded.

    After every test has run and the summary is printed, Python's finalisation destroys PySide's
    and napari's remaining objects in no fixed order, and now and then that segfaults ("shared
    QObject was deleted directly", rc 139, about one full run in six here; napari's own suite
    meets it too: napari/napari#2682, #2716). The crash says nothing about the code under test
    but fails CI; the status pytest decided (failures included) is what the process returns.
    MEDLABELER_TEST_FULL_TEARDOWN=1 keeps the normal exit, to look for such crashes."""
    if _session is None or "PySide6.QtCore" not in sys.modules:
        return
    if os.environ.get("MEDLABELER_TEST_FULL_TEARDOWN") == "1":
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(_session.exitstatus))
