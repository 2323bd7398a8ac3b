"""GUI tests: pytest-qt + napari's make_napari_viewer, under a real X display (xvfb-run -a).

Every function marked ``main_thread_only`` checks its thread here (debug mode on), so a worker
thread touching a widget or layer fails the test.
"""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config, items):
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return
    reason = "needs a display: run the GUI tests under xvfb-run -a (napari cannot render offscreen)"
    if os.environ.get("CI"):
        raise pytest.UsageError(f"GUI tests {reason}; CI must not skip them")
    for item in items:
        if "tests/ui/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session", autouse=True)
def _torch_without_triton():
    """What the app does once OpenGL has loaded LLVM (workers.keep_torch_clear_of_gl_llvm), from
    the first GUI test on: a test that trained before any session of its own had seen the canvas
    loaded triton after Mesa's LLVM and crashed the process (seen running a few GUI tests alone;
    the whole suite imports triton in the engine tests first, which is safe)."""
    import sys

    if "triton" not in sys.modules:
        sys.modules["triton"] = None


@pytest.fixture(autouse=True)
def _debug_threads(monkeypatch, tmp_path):
    from medlabeler.ui import workers

    monkeypatch.setattr(workers, "DEBUG_THREADS", True)
    workers.THREAD_CHECKS["calls"] = 0
    workers.THREAD_CHECKS["violations"].clear()
    monkeypatch.setenv("MEDLABELER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MEDLABELER_AUTHOR", "tester")
    # The learning loop starts when a project opens; tests of other parts switch it on themselves.
    monkeypatch.setenv("MEDLABELER_LEARN", "0")
    yield
    assert workers.THREAD_CHECKS["violations"] == [], "widgets/layers touched off the main thread"


@pytest.fixture(scope="session")
def brain_files(tmp_path_factory):
    from tests.ui.projects import write_brain_slabs

    return write_brain_slabs(tmp_path_factory.mktemp("brain"))


@pytest.fixture
def brain_project(tmp_path, brain_files):
    """A fresh slice-segmentation project over the brain slabs (closed: the app opens it)."""
    from medlabeler.engine.project.project_import import create_project
    from tests.ui.projects import COLORS, NAMES

    images, _ = brain_files
    project, _ = create_project(tmp_path / "project", images, task="segmentation", names=NAMES,
                                colors=COLORS, unit="slice")
    project.close()
    return tmp_path / "project"


@pytest.fixture(scope="session")
def brain_pngs(tmp_path_factory):
    from tests.ui.projects import write_brain_pngs

    return write_brain_pngs(tmp_path_factory.mktemp("pngs") / "images")


@pytest.fixture
def class_project(tmp_path, brain_pngs):
    """A fresh 2D classification project over the brain PNGs (closed: the app opens it)."""
    from medlabeler.engine.project.project_import import create_project
    from tests.ui.projects import CLASSES

    images, _ = brain_pngs
    project, _ = create_project(tmp_path / "classes", images, task="classification", names=CLASSES)
    project.close()
    return tmp_path / "classes"
