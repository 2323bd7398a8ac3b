"""installer/install.sh in a temporary HOME: the wheel into its own environment, the menu entry
with its icon, the app started from the entry's Exec line on a virtual screen, then --uninstall.

Slow (a fresh environment with torch and napari): marked `installer`; deselect with
`-m "not installer"`.
"""

import configparser
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "installer" / "install.sh"

pytestmark = [pytest.mark.installer, pytest.mark.slow, pytest.mark.timeout(1200)]


def clean_env(home: Path) -> dict[str, str]:
    """The environment of a user who never used Python: no PYTHONPATH, no virtualenv, our HOME."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "XDG_DATA_HOME", "PYTHONHOME") and not k.startswith("PYTEST")}
    env["HOME"] = str(home)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p)
    return env


def desktop_entry(path: Path) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read(path)
    return parser["Desktop Entry"]


def exec_argv(line: str) -> list[str]:
    """The Exec line as a menu starts it without a file: field codes (%f, %U, ...) dropped."""
    return [arg for arg in shlex.split(line) if not (len(arg) == 2 and arg.startswith("%"))]


def window_titles() -> str:
    return subprocess.run(["xwininfo", "-root", "-tree"], capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    python = shutil.which("python3.11") or shutil.which("python3") or sys.executable
    started = time.perf_counter()
    run = subprocess.run(["bash", str(INSTALL), "--python", python], env=clean_env(home), capture_output=True,
                         text=True, timeout=1100)
    seconds = time.perf_counter() - started
    assert run.returncode == 0, run.stdout + run.stderr
    print(f"install.sh took {seconds:.0f} s")
    return home, run


def test_install_puts_the_app_in_the_desktop_menu_and_it_starts_from_there(installed, tmp_path):
    home, run = installed
    data = home / ".local" / "share"
    entry = desktop_entry(data / "applications" / "medlabeler.desktop")
    assert entry["Type"] == "Application" and entry["Name"] == "medlabeler" and entry["Terminal"] == "false"
    assert Path(entry["Icon"]).is_file() and Path(entry["Icon"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    argv = exec_argv(entry["Exec"])
    assert argv[0] == str(data / "medlabeler" / "venv" / "bin" / "medlabeler") and argv[1:] == ["app"]
    link = home / ".local" / "bin" / "medlabeler"
    assert link.is_symlink() and link.resolve() == Path(argv[0]).resolve()
    version = subprocess.run([argv[0], "--version"], env=clean_env(home), capture_output=True, text=True)
    assert version.stdout.startswith("medlabeler ")
    # the installed package, not this checkout
    where = subprocess.run([str(Path(argv[0]).parent / "python"), "-c", "import medlabeler; print(medlabeler.__file__)"],
                           env=clean_env(home), capture_output=True, text=True, cwd=tmp_path)
    assert str(data / "medlabeler" / "venv") in where.stdout, where.stdout + where.stderr
    if shutil.which("xvfb-run") is None or shutil.which("xwininfo") is None:
        pytest.skip("needs xvfb-run and xwininfo (x11-utils) to see the window")
    # start it as the menu would, on a virtual screen; the window titled "medlabeler" must map
    probe = (f"{shlex.join(argv)} > {tmp_path}/app.log 2>&1 & app=$!; "
             "for i in $(seq 180); do "
             "  if xwininfo -root -tree | grep -q '\"medlabeler\"'; then "
             "    sleep 3; kill -0 $app 2>/dev/null && echo WINDOW_UP; kill $app; exit 0; fi; "
             "  kill -0 $app 2>/dev/null || { echo APP_EXITED; exit 1; }; sleep 1; "
             "done; kill $app; echo NO_WINDOW; exit 1")
    shown = subprocess.run(["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", "bash", "-c", probe],
                           env=clean_env(home), capture_output=True, text=True, timeout=300)
    log = (tmp_path / "app.log").read_text() if (tmp_path / "app.log").exists() else ""
    assert "WINDOW_UP" in shown.stdout, shown.stdout + shown.stderr + log  # up, and still running
    assert "Traceback" not in log, log


def test_uninstall_removes_the_environment_and_the_launchers(installed):
    home, _run = installed
    data = home / ".local" / "share"
    projects = home / "my-projects"
    projects.mkdir()
    run = subprocess.run(["bash", str(INSTALL), "--uninstall"], env=clean_env(home), capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert not (data / "medlabeler").exists() and not (data / "applications" / "medlabeler.desktop").exists()
    assert not (data / "icons" / "hicolor" / "256x256" / "apps" / "medlabeler.png").exists()
    assert not os.path.lexists(home / ".local" / "bin" / "medlabeler")
    assert projects.is_dir()  # the user's files stay
