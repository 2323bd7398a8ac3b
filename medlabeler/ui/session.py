"""The app's state for one napari viewer: the open project, the open sample, the workers.

Widgets are thin: they call a :class:`Session` method and redraw on its signals. Every method
here runs on the main thread; long work goes to :class:`~medlabeler.ui.workers.EngineJob`s whose
results come back through signal handlers.
"""

from __future__ import annotations

import collections
import gc
import getpass
import json
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path

import numpy as np
from qtpy.QtCore import QCoreApplication, QEvent, QObject, QTimer, Signal

from medlabeler.engine.store.project import MISSING_SLICE, restored_text
from medlabeler.engine.store.records import samples_text
from medlabeler.engine.errors import MedlabelerError, error_text
from medlabeler.engine.home import medlabeler_home
from medlabeler.ui import engine_calls as calls
from medlabeler.ui.qt_fixes import guard_singletons
from medlabeler.ui.layers import (DEFAULT_VISIBLE, PredictionView, SampleView, labels_listed, make_spare_layers,
                                  read_volume, read_volume_labels, volume_bytes, volume_key, warm_up_layers)
from medlabeler.ui.ranking import Rankings, queue_key
from medlabeler.ui.workers import EngineJob, JobSlots, main_thread_only, show_error_message

log = logging.getLogger(__name__)

_SESSIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
#: Volumes at least this large (float32 bytes) are read on a thread before their slice opens: a
#: 512x512x300 CT series takes seconds to read, the demo brain (35 MB) 300-500 ms, which had
#: stalled the window as the demo opened; a volume of a few slices reads within a frame.
READ_ON_A_THREAD_BYTES = 4 * 2**20
#: Samples tried, one after another, when the first a project opens cannot be read (damaged files):
#: then the app says so and waits, rather than fill the screen with notifications
FIRST_OPEN_TRIES = 5
#: How long the slider rests on another slice of a stack before that slice becomes the open sample.
FOLLOW_SLICE_MS = 400
#: A saved mask with less of its pixels painted than this gets a note: unpainted pixels are background.
SPARSE_SHARE = 0.01
#: ...on a validation or test sample without a prediction to compare with, this share, or
#: PARTIAL_SHARE of the share the training masks saved lately paint (once TYPICAL_AFTER are known):
#: vessels or nuclei cover less than 5% of an image, painted whole.
HELD_OUT_SPARSE_SHARE = 0.05
TYPICAL_AFTER, TYPICAL_KEPT = 3, 50
#: ...or less than this share of what the model's prediction of the sample finds as structure.
PARTIAL_SHARE = 0.5
#: Held-out masks kept to be judged when their prediction arrives (`_judge_later`), and the
#: largest kept (a whole CT volume's mask, hundreds of MB, is not held for a note).
UNJUDGED_KEPT, UNJUDGED_MAX_BYTES = 8, 16 * 2**20
#: the margin under which an accepted class is called a close call (in its status line)
CLOSE_CALL = 0.1
#: Said when a project opens with nothing left to label (its first sample is shown).
ALL_LABELED_NOTE = "every sample is labeled: review them through the queue's \"labeled\" view, or retrain"
#: Seconds within which a second `s` saves an untouched validation or test slice as all background.
CONFIRM_BACKGROUND_S = 10.0
_WARM_THREAD: threading.Thread | None = None  # imports torch and the training code, once per process
_LAYERS_WARM_THREAD: threading.Thread | None = None  # napari's first-layer costs, once per process


def _on_own_handle(name: str, root, work: Callable, deliver: Callable) -> None:
    """Run ``work(handle)`` on a thread through a read-only handle of the project of its own: the
    app closing its handle under a thread's query had crashed it in SQLite. ``deliver`` gets, on
    that thread, what ``work`` returned or the exception it raised (it emits a signal)."""
    def run() -> None:
        try:
            with calls.open_project(root, readonly=True) as own:
                result = work(own)
        except Exception as exc:  # noqa: BLE001 - the caller says it, or not, on the main thread
            result = exc
        deliver(result)

    threading.Thread(target=run, name=name, daemon=True).start()


def _reads(project, sample) -> bool:
    try:
        project.load_pixels(sample)
        return True
    except Exception:  # noqa: BLE001 - whatever stops it reading: it stays noted
        return False


def _warm_up() -> None:
    try:
        calls.warm_up()
    except Exception as exc:  # noqa: BLE001 - only a head start: training imports it again
        log.warning("importing the training code in the background failed: %s", exc)
    # Python's full collections scanned every object of napari, Qt and torch: 230-255 ms with the
    # GIL held, the UI's longest stalls while the loop trained. What exists now lives as long as
    # the app, so the collector may stop scanning it (objects made later are collected as usual).
    gc.freeze()


def _warm_up_layers() -> None:
    try:
        warm_up_layers()
    except Exception as exc:  # noqa: BLE001 - only a head start: the first image pays it instead
        log.warning("preparing napari's layers in the background failed: %s", exc)


def _start_layers_warm_up() -> None:
    global _LAYERS_WARM_THREAD
    if _LAYERS_WARM_THREAD is None:
        _LAYERS_WARM_THREAD = threading.Thread(target=_warm_up_layers, name="medlabeler-layers-warm-up", daemon=True)
        _LAYERS_WARM_THREAD.start()


def wait_for_warm_up(timeout_s: float = 60.0) -> None:
    """Let the background imports finish (an import cut short by interpreter exit fails noisily)."""
    for thread in (_LAYERS_WARM_THREAD, _WARM_THREAD):
        if thread is not None:
            thread.join(timeout_s)


def get_session(viewer) -> Session:
    """The one session of ``viewer`` (created on first use; widgets docked in it share it).

    napari hands plugin widgets a proxy of the viewer (a new one per widget): the session is
    keyed by the viewer behind it, so every widget of one window shares one session.
    """
    viewer = getattr(viewer, "__wrapped__", viewer)
    session = _SESSIONS.get(viewer)
    if session is None:
        from medlabeler.ui.keys import install_viewer_keys

        session = Session(viewer)
        _SESSIONS[viewer] = session
        install_viewer_keys(viewer, session)
    return session


def ask_about_lost_labels(sample_ids) -> str:
    """"retry", "close" (and lose them) or "stay": what to do about labels that can be neither saved
    nor kept."""
    from qtpy.QtWidgets import QMessageBox

    box = QMessageBox(QMessageBox.Icon.Warning, "Labels not saved",
                      f"The labels of {samples_text(sample_ids)} cannot be saved into the project, nor kept in your "
                      f"medlabeler folder ({medlabeler_home()}): the disk is full or cannot be written. Free space "
                      "on it, then Retry. Close anyway loses them.")
    retry = box.addButton("Retry", QMessageBox.ButtonRole.AcceptRole)
    close = box.addButton("Close anyway", QMessageBox.ButtonRole.DestructiveRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(retry)
    box.exec()
    return {retry: "retry", close: "close"}.get(box.clickedButton(), "stay")


def not_saved_text(sample_ids, error) -> str:
    """Why the labels of ``sample_ids`` were not saved, and that what was painted is kept."""
    many = len(sample_ids) > 1
    return (f"The label{'s' * many} of {samples_text(sample_ids)} {'were' if many else 'was'} not saved: {error}. "
            f"{'They are' if many else 'It is'} kept while the project is open (shown when the sample opens) and "
            "saved again with your next save; closing keeps what still fails in your medlabeler folder. If the "
            "disk is full, free space on it.")


def recent_projects() -> list[str]:
    try:
        items = json.loads((medlabeler_home() / "recent.json").read_text())
    except (OSError, ValueError):
        return []
    return [p for p in items if isinstance(p, str) and (Path(p) / "project.sqlite").exists()]


def _remember(path: Path) -> None:
    items = [str(path)] + [p for p in recent_projects() if p != str(path)]
    try:
        home = medlabeler_home()
        home.mkdir(parents=True, exist_ok=True)
        (home / "recent.json").write_text(json.dumps(items[:10], indent=1))
    except OSError:
        log.debug("could not write the recent-projects list")


def _author() -> str:
    try:
        return os.environ.get("MEDLABELER_AUTHOR") or getpass.getuser()
    except (KeyError, OSError):
        return ""


class _CloseWatcher(QObject):
    """Shuts the session down once the viewer's window really closes (saves, releases the lock).

    napari may veto a close (its "confirm close" dialog), so the Close event alone is not
    enough: the window is hidden right after an accepted close, within the same call.
    """

    def __init__(self, session: Session, window):
        super().__init__(window)
        self._session = weakref.ref(session)
        self._closing = False

    def eventFilter(self, obj, event):  # noqa: N802 - Qt name
        kind = event.type()
        if kind == QEvent.Type.Close:
            session = self._session()
            if session is not None and not session.may_close():  # labels a full disk would lose: stay
                event.ignore()
                return True
            self._closing = True
            QTimer.singleShot(0, self._forget)  # a vetoed close leaves the window shown
        elif kind == QEvent.Type.Hide and self._closing:
            self._closing = False
            session = self._session()
            if session is not None:
                session.shutdown()
        return False

    def _forget(self) -> None:
        self._closing = False


def _said(words: str, *, error: bool = False, warn: bool = False) -> str:
    """Say ``words`` in a notification (an error, a warning or news); returns them."""
    from napari.utils.notifications import show_info, show_warning

    (show_error_message if error else show_warning if warn else show_info)(words)
    return words


def label_shares_text(mask, names) -> str:
    """"grey_matter 12.3%, white_matter 8.0%": each label's share of a mask's pixels (the Review tab,
    and `a`'s status line, where a rare label's few accepted pixels had gone unseen)."""
    mask = np.asarray(mask)
    total = max(mask.size, 1)
    return ", ".join(f"{name} {100 * np.count_nonzero(mask == i + 1) / total:.1f}%" for i, name in enumerate(names))


def _moved_hint(sample) -> str:
    """What to do about an image gone from where it was imported (moved or renamed, most often)."""
    if os.path.exists(sample.path):
        return ""
    return "\nMoved or renamed? The Project tab's Find moved images… points the project at its new place."


def unsavable_note(sample_id: int, value: int, names) -> str:
    """Why strokes of a label number the project does not have are not saved, and what to do."""
    return (f"The label of sample {sample_id} is not saved: it holds label {value}, and the project's labels are "
            f"{labels_listed(names)}. Paint over those strokes with one of them (keys 1-9), or undo them (Ctrl+Z); "
            "the sample stays open until then.")


def missing_slice_note(sample_id: int) -> str:
    return f"sample {sample_id} {MISSING_SLICE}, and strokes on it are not saved"


#: What the label of a held-out sample is for, by split: (its name, what its label does).
HELD_OUT_ROLES = {"val": ("validation", "chooses the model"), "test": ("test", "measures the model")}


READING_NOTE = "reading the images of sample "


def reading_note(sample) -> str:
    return f"{READING_NOTE}{sample.id} ({sample.n_slices} slices)…"


def held_out_refusal(sample) -> str:
    """Why the model's prediction of `sample` cannot be accepted as its label in one click ("" if
    it can): a validation label chooses the model and a test label measures it, so the model would
    grade itself. Correcting the prediction (reviewed, then saved) stays open."""
    role = HELD_OUT_ROLES.get(getattr(sample, "split", None))
    if role is None:
        return ""
    return (f"sample {sample.id} is a {role[0]} sample: its label {role[1]}, so it must be checked by you, "
            "not the model's prediction taken unchecked. 'Correct it…' copies the prediction into your labels "
            "to check and edit; then save with s.")


class Session(QObject):
    """One viewer's project, open sample, predictions and workers."""

    project_changed = Signal()
    sample_opened = Signal(object)  # Sample | None
    labels_changed = Signal()
    models_changed = Signal()
    queue_changed = Signal()
    prediction_changed = Signal(object)  # PredictionView | None, for the open sample
    training_event = Signal(object)  # engine Event
    training_started = Signal(str)  # method
    training_ended = Signal(str)  # "done" | "cancelled" | "failed"
    background_state = Signal(bool)  # prediction/scoring running
    overlay_toggled = Signal(str, bool)  # overlay kind, visible (keys and the Review tab's boxes)
    saves_submitted = Signal()  # labels handed to the writer (shown as "saving" until labels_changed)
    save_warning_changed = Signal(str)  # what the last save needs the clinician to know ("" once it is past)
    _save_landed_signal = Signal()  # from the writer thread: saves landed (see _landed)
    _volume_read = Signal(object, object, object)  # project, sample, (Volume | exception, LabelsRead | None)
    labels_exported = Signal(str)  # what was written, or why not
    labels_imported = Signal(str)  # what came in and what was skipped, or why nothing did
    images_relinked = Signal(str)  # the moved images found, those still missing, or why none was looked for
    _worked = Signal(object, object, object)  # project, what ("import-labels", "relink"), result | exception
    _export_done = Signal(object, object, object)  # project, words | exception, audit details (from the export thread)
    _rechecked = Signal(object, object)  # project, ids of samples noted unreadable that read again
    _labeled_checked = Signal(object, object, int)  # project, LabeledSourceCheck, relinks done when it began
    _label_files_checked = Signal(object, object)  # project, the ProjectErrors of damaged or missing mask files

    def __init__(self, viewer):
        super().__init__()
        guard_singletons()  # PySide6 6.12 leaks a reference of True per emit: would abort the app
        self._viewer = weakref.ref(viewer)
        self.project = None
        self.view: SampleView | None = None
        #: the standalone app keeps its layers from one project to the next (`make_spare_layers`);
        #: docked into a user's viewer, a closed project takes its layers with it
        self.keep_layers = False
        self._spare_layers: dict[str, object] = {}
        #: which overlays the clinician shows (the Review tab's boxes, the keys), kept across projects
        self.overlay_visible = dict(DEFAULT_VISIBLE)
        self._shutting_down = False
        self.sample = None
        self.jobs = JobSlots(self)
        self.jobs.changed.connect(self._jobs_changed)
        self.predictions: dict[int, PredictionView] = {}
        self._from_prediction: set[int] = set()
        self._strategy = calls.DEFAULT_STRATEGY
        self.writer = None  # the open project's LabelWriter: label saves on a thread, in order
        self._landed: collections.deque = collections.deque()  # PendingSaves landed, not reported yet
        self._save_landed_signal.connect(self._report_landed)
        self._landed_since_signal: list[int] = []  # samples whose saves landed since the last report
        # saves that failed (a full disk), newest per sample: shown when the sample opens, saved again
        # with the next save, and kept in the user's folder if they still fail when the project closes
        self._not_saved: dict[int, object] = {}
        self._skip_said = False  # the first skip of a session is explained in a notification
        self.save_warning = ""  # the Label tab shows it (`_warn_of_save`)
        self._not_saved_said = False  # save_warning says that saves failed
        self._kept_files: dict[int, object] = {}  # sample id -> its label kept at a closing, being saved now
        self.import_report = ""  # what the last "Create and open" found: the Project tab shows it whole
        self._failed_first: set[int] = set()  # samples that failed to open while none was on screen
        self._save_note: str | None = None  # said with the next "saved" (a save that painted little or nothing)
        # held-out masks saved before their sample's prediction arrived: judged when it does
        self._unjudged: dict[int, np.ndarray] = {}
        self._painted_shares: dict[int, float] = {}  # sample id -> painted share, of the training masks saved lately
        self.rankings = Rankings(self)  # "to label" rankings per label state, made ahead on a thread
        self.rankings.ranked.connect(self._ranked)
        self.rankings.overtaken.connect(self._ranking_overtaken)
        self._queue_wanted = False  # the queue table waits for the ranking of the state as it stands
        self.predictions_kept = 8  # predictions cached (the open sample's, the next ones ahead)
        self.reading: int | None = None  # the sample whose volume is being read on a thread
        self._volume_on_its_way: tuple | None = None  # (project, volume_key) being read: read once
        self._volume_read.connect(self._volume_arrived)
        self._labeled_checked.connect(self._unreadable_labeled_found)
        self._label_files_checked.connect(self._damaged_labels_found)
        self._rechecked.connect(self._read_again)
        self._export_done.connect(self._exported)
        self._worked.connect(self._worked_out)
        self._work_thread: threading.Thread | None = None  # an import of labels or a relink (one at a time)
        self._work_status = ""
        self._relinks = 0  # relinks done: a check of the labeled images begun before one is stale
        self.author = _author()
        self.auto_refresh = True
        self.advance_after_class = True  # a class key labels and opens the next sample
        self.unsavable: list[int] = []  # samples the last save refused (a label number the project lacks)
        self.warm_up_on_open = True  # import torch in the background when a project opens (or the app starts)
        self.last_training = None  # the EngineJob of the last run
        self.timings: dict[str, float] = {}
        from medlabeler.ui.learning import LearningLoop

        self.learning = LearningLoop(self)  # the background learning loop (on when a project opens)
        _start_layers_warm_up()  # before the first image opens: it would pay them on the main thread
        # Save and release the project when the window closes. napari has no public "closing"
        # signal, so watch its main window (private attribute: guarded), and the app quitting.
        self._close_watcher = None
        window = getattr(getattr(viewer, "window", None), "_qt_window", None)
        if isinstance(window, QObject):
            self._close_watcher = _CloseWatcher(self, window)
            window.installEventFilter(self._close_watcher)
        app = QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)
        # The slider moved to another slice of the stack: once it rests there, that slice is the
        # open sample (the dock, the queue and the prediction follow; its strokes save to it).
        self._closing = False  # close_project is under way
        self._background_armed: tuple[int, float] | None = None  # see _background_confirmed
        self._follow_timer = QTimer(self)
        self._follow_timer.setSingleShot(True)
        self._follow_timer.setInterval(FOLLOW_SLICE_MS)
        self._follow_timer.timeout.connect(self._follow_slice)
        viewer.dims.events.current_step.connect(self._slice_moved)
        viewer.layers.events.removed.connect(self._layer_removed)

    @property
    def viewer(self):
        return self._viewer()

    # --- project --------------------------------------------------------------------------------
    @main_thread_only
    def open_project(self, path, *, open_first: bool = True) -> bool:
        """Open a project folder in place of the one open; False with a message when it cannot
        (the one open stays open)."""
        from medlabeler.engine.errors import MedlabelerError, ProjectLockedError, ProjectReadOnlyError

        self._close_if_open(path)  # opened again: this app's own lock would make it read-only
        locked_note = None
        try:
            try:
                project = calls.open_project(path)
            except ProjectLockedError as exc:  # another app writes to it: look, don't touch
                project = calls.open_project(path, readonly=True)
                other = f" ({exc.holder})" if exc.holder else ""
                locked_note = (f"{project.root.name} is open for writing in another app or command{other}, so it opened "
                               "read-only here: images, labels and predictions can be looked at; labeling and "
                               "training need it closed there.")
            except ProjectReadOnlyError as exc:  # an archive, a read-only share, a full disk
                project = calls.open_project(path, readonly=True)
                locked_note = (f"{error_text(exc)}. So it opened read-only: images, labels and predictions can be "
                               "looked at and exported, not changed.")
        except MedlabelerError as exc:
            show_error_message(f"Cannot open the project: {error_text(exc)}")
            return False
        self._close_for(project)
        self._attach(project, open_first=open_first)
        if locked_note:  # after the first sample's own notes, so that none hides it
            from napari.utils.notifications import show_warning

            show_warning(locked_note)
        return True

    @main_thread_only
    def create_project(self, root, images, *, task: str, names, colors=None, unit=None) -> str | None:
        """Create a project from a folder of images and open it in place of the one open; returns
        a summary, or None (with a message; the one open stays open: a form left filled in from
        the last project had closed it before failing)."""
        from medlabeler.engine.errors import MedlabelerError

        if self._is_open(root):
            self.import_report = f"Cannot create the project: {root} holds the project open now"
            show_error_message(self.import_report)
            return None
        try:
            project, report = calls.create_project(root, images, task=task, names=names, colors=colors, unit=unit)
        except MedlabelerError as exc:
            self.import_report = f"Cannot create the project: {error_text(exc)}"
            show_error_message(self.import_report)
            return None
        self._close_for(project)
        notes = [f"skipped {line}" for line in calls.skipped_lines(report.errors)] + [f"warning: {w}" for w in report.warnings]
        # the whole report stays in the Project tab (a notification shows its first line for 4 s);
        # shown to the user, not logged: file names may identify patients
        self.import_report = "\n".join([report.summary(), *notes])
        if notes:
            from napari.utils.notifications import show_warning

            show_warning(self.import_report)
        self._attach(project)
        return report.summary() + "".join(f"\n{w}" for w in report.warnings)

    @main_thread_only
    def open_demo(self, root=None) -> bool:
        from medlabeler.engine.errors import MedlabelerError

        root = root or medlabeler_home() / "demo"
        self._close_if_open(root)
        try:
            project = calls.create_demo_project(root)
        except MedlabelerError as exc:
            show_error_message(f"Cannot open the demo: {error_text(exc)}")
            return False
        self._close_for(project)
        self._attach(project)
        return True

    def _is_open(self, root) -> bool:
        """Whether the project at ``root`` (any spelling: ``~``, a symlink, another case) is the one open."""
        path = Path(root).expanduser()
        return self.project is not None and path.exists() and os.path.samefile(path, self.project.root)

    def _close_for(self, project) -> None:
        """Close the open project for ``project``, opened already; if that fails, ``project`` is
        closed too (its lock would make this app open it read-only from then on)."""
        try:
            self.close_project()
        except BaseException:
            project.close()
            raise

    def _close_if_open(self, root) -> None:
        if self._is_open(root):
            self.close_project()

    def _back_to_2d(self) -> None:
        """A project opens to be painted slice by slice: napari's 3D view (its 2D/3D button, left on
        by the project before) shows a 2D image as a plane the brush paints nothing on."""
        if self.viewer is not None and self.viewer.dims.ndisplay == 3:
            self.viewer.dims.ndisplay = 2

    def _attach(self, project, *, open_first: bool = True) -> None:
        self._back_to_2d()
        self.project = project
        self.writer = None if project.readonly else calls.label_writer(project, self._save_landed_on_writer)
        self._save_kept(project)
        spare, self._spare_layers = self._spare_layers, {}
        self.view = SampleView(self.viewer, project, pending=self.pending_labels, spare=spare,
                               overlay_visible=self.overlay_visible)
        self.predictions.clear()
        self._from_prediction.clear()
        self._failed_first = set()
        _remember(Path(project.root))
        self.warm_up()
        self._check_labeled_images(project)
        self.project_changed.emit()
        self.models_changed.emit()
        self.queue_changed.emit()
        if open_first:
            first = self.next_sample_id()
            if first is None:  # nothing left to label: show the first sample rather than an empty viewer
                first = next((s.id for s in project.samples()), None)
                if first is not None and self.viewer is not None:
                    from napari.utils.notifications import show_info

                    # a notification too: napari's mouse readout replaces the status line at once
                    self.viewer.status = ALL_LABELED_NOTE
                    show_info(ALL_LABELED_NOTE)
            if first is not None:
                self.open_sample(first)

    def _check_labeled_images(self, project) -> None:
        """On a thread (`_on_own_handle`): the labeled images changed or gone since the import that
        no longer read. Each would stop every training run; listed first among the labeled, where a
        right-click takes the label back, before a run has to fail on one."""
        relinks = self._relinks

        def checked(found) -> None:
            if isinstance(found, Exception):  # a check ahead of the runs, which say it themselves
                log.debug("labeled images not checked: %s", found)
                return
            sources, damaged = found
            if sources.unreadable or sources.readable:
                self._labeled_checked.emit(project, sources, relinks)
            if damaged:
                self._label_files_checked.emit(project, damaged)

        _on_own_handle("medlabeler-labeled-check", project.root,
                       lambda own: (own.check_labeled_sources(), own.check_labels()), checked)

    @main_thread_only
    def _damaged_labels_found(self, project, damaged) -> None:
        """Labels whose saved mask file is damaged or missing (a torn copy): said when the project
        opens, not first by a training run that stops at one or an export that leaves it out."""
        if project is not self.project or project.closed:
            return
        more = f" (and {len(damaged) - 1} more)" if len(damaged) > 1 else ""
        _said(f"{len(damaged)} label{'s' * (len(damaged) > 1)} whose saved mask file is damaged or missing: "
              f"{error_text(damaged[0])}{more}. Training stops at such a label and exports leave it out.", warn=True)

    @main_thread_only
    def recheck_unreadable(self) -> bool:
        """Read the images noted as no longer reading again, on a thread with a handle of its own
        (the queue's Refresh): a file put back, as the messages advise, is queued and listed as
        before. False when none is noted."""
        project = self.project
        noted = sorted(project.unreadable_ids()) if project is not None else []
        if not noted:
            return False
        def read_again(own) -> list[int]:
            return [s.id for s in own.samples(ids=noted) if _reads(own, s)]

        def read(readable) -> None:
            if isinstance(readable, Exception):  # e.g. the project was moved: nothing changes
                log.debug("unreadable images not read again: %s", readable)
            elif readable:
                self._rechecked.emit(project, readable)

        _on_own_handle("medlabeler-recheck", project.root, read_again, read)
        return True

    @main_thread_only
    def _read_again(self, project, readable) -> None:
        if project is not self.project or project.closed:
            return
        for sample_id in readable:
            project.note_readable(project.sample(sample_id))
        self.queue_changed.emit()

    @main_thread_only
    def _unreadable_labeled_found(self, project, found, relinks: int) -> None:
        if project is not self.project or project.closed or relinks != self._relinks:
            return  # (found before a relink pointed the project at the images' new place)
        if found.readable and not project.readonly:  # touched or copied: not read again at each opening
            try:
                project.refresh_fingerprints(found.readable)
            except Exception:  # noqa: BLE001 - only a saving for next time
                log.debug("fingerprints not refreshed", exc_info=True)
        if not found.unreadable:
            return
        from napari.utils.notifications import show_warning

        for ids, _ in found.unreadable:  # this handle's own note: the queue and the runs read it
            project.note_unreadable(project.sample(ids[0]))
        samples = [i for ids, _ in found.unreadable for i in ids]
        first = found.unreadable[0][1]
        others = len(found.unreadable) - 1
        more = f" and {others} more image{'s' * (others > 1)}" if others else ""
        show_warning(f"{len(samples)} labeled sample{'s' if len(samples) > 1 else ''} no longer read{'' if len(samples) > 1 else 's'}: "
                     f"{error_text(first)}{more}. Training stops at such an image: put the file back and press the "
                     "queue's Refresh, or take the label back (Queue, labeled: right-click > Remove label; they "
                     "are listed first).")
        self.queue_changed.emit()

    @main_thread_only
    def export_labels(self, out, *, fmt: str, keep_names: bool = False, deidentify: bool = False) -> bool:
        """Write the labels saved, those on screen first, to the folder ``out`` on a thread, through
        a read-only handle of its own (a project closed meanwhile is exported whole); the
        ``labels_exported`` signal says what was written, or why not. False when no project is open."""
        if self.project is None:
            return False
        self.save_current()
        self.flush_saves()
        project = self.project
        details = {"format": fmt, "keep_names": keep_names, "deidentify": deidentify}  # for the audit
        _on_own_handle("medlabeler-export", project.root,
                       lambda own: calls.export_labels(own, out, fmt=fmt, keep_names=keep_names, deidentify=deidentify),
                       lambda result: self._export_done.emit(project, result, details))
        if self.viewer is not None:
            self.viewer.status = f"exporting the labels to {out}…"
        return True

    @main_thread_only
    def _exported(self, project, result, details) -> None:
        from napari.utils.notifications import show_info, show_warning

        if isinstance(result, Exception):
            words = f"Cannot export the labels: {error_text(result)}"
            show_error_message(words)
        else:
            words = str(result)
            (show_warning if calls.EXPORT_LEFT_OUT in words else show_info)(words)  # a damaged mask file
            if project is self.project and not project.closed and not project.readonly:
                project.audit("export", **details)  # the export's own handle was read-only
        if self.viewer is not None and str(self.viewer.status).startswith("exporting the labels"):
            self.viewer.status = words
        self.labels_exported.emit(words)

    @main_thread_only
    def _work_on_a_thread(self, what: str, work: Callable, status: str) -> bool:
        """Run ``work(project)`` (an import of labels, a relink of moved images) on a thread through
        the project's own handle (its writes are thread-safe), one at a time, the strokes on screen
        saved first; ``_worked`` brings the result back. False when it cannot start."""
        if self.project is None or self.project.readonly or self.working:
            return False
        self.save_current()
        self.flush_saves()  # the strokes on screen land first: an imported mask is the newer version
        project = self.project

        def run() -> None:
            try:
                result = work(project)
            except Exception as exc:  # noqa: BLE001 - reported on the main thread
                result = exc
            self._worked.emit(project, what, result)

        self._work_thread = threading.Thread(target=run, name=f"medlabeler-{what}", daemon=True)
        self._work_thread.start()
        self._work_status = status
        if self.viewer is not None:
            self.viewer.status = status
        return True

    @property
    def working(self) -> bool:
        """An import of labels or a relink is under way."""
        return self._work_thread is not None and self._work_thread.is_alive()

    def import_labels(self, path) -> bool:
        """Import masks, DICOM-SEGs or a CSV of classes (what `medlabeler import-labels` reads) on a
        thread; ``labels_imported`` says what came in."""
        before = self.project.current_label_versions() if self.project is not None else {}
        return self._work_on_a_thread("import-labels", lambda project: calls.import_labels(project, path, before),
                                      f"importing labels from {path}…")

    def relink_images(self, folder) -> bool:
        """Look for the images moved or renamed since the import under ``folder`` (`medlabeler
        relink`) on a thread; ``images_relinked`` says what was found."""
        return self._work_on_a_thread("relink", lambda project: calls.relink_images(project, folder),
                                      f"looking for the missing images under {folder}…")

    @main_thread_only
    def _worked_out(self, project, what, result) -> None:
        self._work_thread = None
        words = (self._imported if what == "import-labels" else self._relinked)(project, result)
        if project is not self.project:  # closed meanwhile: its report is not shown over another's
            return
        if self.viewer is not None and self.viewer.status == self._work_status:
            self.viewer.status = words.splitlines()[0]
        (self.labels_imported if what == "import-labels" else self.images_relinked).emit(words)

    def _imported(self, project, result) -> str:
        if isinstance(result, Exception):
            return _said(f"Cannot import the labels: {error_text(result)}", error=True)
        summary, lines, changed = result
        if project is self.project and changed:
            if self.view is not None:  # what came in for the samples on screen shows there, strokes not saved stay
                self.view.show_stored_labels(changed, keep_unsaved=True)
            self.labels_changed.emit()
        skipped = any(line.startswith("skipped") for line in lines)
        _said(summary + (": the Project tab names the files skipped and why" if skipped else
                         ", with warnings in the Project tab" if lines else ""), warn=bool(lines))
        return "\n".join([summary, *lines])

    def _relinked(self, project, result) -> str:
        if isinstance(result, Exception):
            return _said(f"Cannot look for the missing images: {error_text(result)}", error=True)
        summary, lines = result
        if project is self.project:
            self._relinks += 1
            self.queue_changed.emit()  # their samples are queued again
            if self.sample is None:  # nothing could be opened before: the next to label, else the first
                first = self.next_sample_id()
                if first is None:
                    unreadable = project.unreadable_ids()
                    first = min((s.id for s in project.samples() if s.id not in unreadable), default=None)
                if first is not None:
                    self.open_sample(first, save_first=False)
        _said(summary + (": the Project tab names them" if lines else ""), warn=bool(lines))
        return "\n".join([summary, *lines])

    @main_thread_only
    def make_spare_layers(self) -> None:
        """Make the layers a volume opens in now, hidden, before any project is open (at the app's
        start): see `layers.make_spare_layers`."""
        if self.viewer is not None and self.project is None and not self._spare_layers:
            self._spare_layers = make_spare_layers(self.viewer)

    def warm_up(self) -> None:
        """Import torch and the engine's training code on a thread, once per process: when a
        project opens, or at the app's start (`build_app`). Loading torch's libraries holds the
        GIL for 100-300 ms at a time, a stall of the window wherever it falls."""
        global _WARM_THREAD
        if _WARM_THREAD is not None or not self.warm_up_on_open:
            return
        from medlabeler.ui.workers import keep_torch_clear_of_gl_llvm

        keep_torch_clear_of_gl_llvm()
        _WARM_THREAD = threading.Thread(target=_warm_up, name="medlabeler-warm-up", daemon=True)
        _WARM_THREAD.start()

    @main_thread_only
    def close_project(self) -> None:
        if self.project is None:
            return
        # the slider moves while layers go and events run while jobs stop: nothing opens meanwhile
        # (a quit had opened samples 1 and 150, saving the strokes of the one open to each)
        self._closing = True
        self._follow_timer.stop()
        try:
            self._close_project()
        finally:
            self._closing = False

    def _close_project(self) -> None:
        status = self.viewer.status if self.viewer is not None else None
        self.save_current()
        self.flush_saves()  # every label on disk before the project closes
        self._keep_what_did_not_save()
        self._say_what_closing_discards()
        self.jobs.cancel_all()
        self.jobs.wait_idle(60)
        if self._work_thread is not None:
            self._work_thread.join(60)  # its writes land before the project's handle closes
        self.rankings.forget()
        self._queue_wanted = False
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.view is not None:
            if self.keep_layers and not self._shutting_down:
                self._back_to_2d()  # (docked in a user's viewer, their view is theirs until a project opens)
            self._spare_layers = self.view.remove_layers(keep=self.keep_layers and not self._shutting_down)
        self.project.close()
        self.project = None
        self.view = None
        self.sample = None
        self.reading = None
        self._volume_on_its_way = None
        self.predictions.clear()
        self._unjudged.clear()
        self._painted_shares.clear()  # another project paints other structures
        self._set_save_warning("")
        if self.viewer is not None and self.viewer.status == status:  # not the closed project's last words
            self.viewer.status = "Ready"  # ("saved sample 68") over the next; what its last save said stays
        self.project_changed.emit()
        self.sample_opened.emit(None)

    def _keep_what_did_not_save(self) -> None:
        """Labels whose save still fails as the project closes (its disk full) go to the user's
        folder, and into the project when it next opens (`_save_kept`); said, with where."""
        if not self._not_saved:
            return
        kept, lost = self._keep_failed_saves(trial=False)
        self._not_saved.clear()
        self._kept_files.clear()
        words = []
        if kept:
            words.append(f"{samples_text(kept)}: saving into the project failed, so {'their labels are' if len(kept) > 1 else 'its label is'} "
                         f"kept in {medlabeler_home() / 'unsaved'} and saved into the project when it opens again")
        if lost:
            words.append(f"{samples_text([sid for sid, _ in lost])}: not saved, and not kept either ({lost[-1][1]})")
        message = "Closing the project: " + "; ".join(words) + "."
        log.warning(message)
        if not self._shutting_down:
            _said(message, error=bool(lost), warn=not lost)

    def _save_kept(self, project) -> None:
        """Save the labels kept when a save failed as ``project`` last closed (`_keep_what_did_not_save`)."""
        if self.writer is None:  # read-only here: they wait for an opening that can write
            return
        try:
            kept = calls.unsaved_labels(medlabeler_home(), project)
        except OSError as exc:
            log.debug("labels kept at a failed save not read: %s", exc)
            return
        for label in kept:  # (each of this project, and of the image its sample id names now)
            self.writer.submit(label.sample_id, label.value, author=label.author, origin=label.origin)
            self._kept_files[label.sample_id] = label
        if kept:
            many = len(kept) > 1
            replaced = "".join(f" Sample {k.sample_id}'s replaces its label v{k.replaces}, saved since by another app "
                               "(it stays in the history: the queue's labeled view restores it)."
                               for k in kept if k.replaces is not None)
            _said(f"Saving into the project the label{'s' * many} of {samples_text(sorted(self._kept_files))}: "
                  f"{'they were' if many else 'it was'} kept in your medlabeler folder when the project closed on "
                  f"{kept[-1].kept_at} with {'saves' if many else 'a save'} that had failed.{replaced}", warn=True)

    def _say_what_closing_discards(self) -> None:
        """A run stopped half-way leaves no model: say so rather than drop it silently (in a
        notification too while the window stays: a new user found the words on stderr only)."""
        active = self.project.active_model()
        stays = f"the active model v{active.version} stays" if active is not None else "there is no model yet"
        if self.learning.run_under_way:
            message = (f"Closing the project stopped the background run half-way ({self.learning.now}): it is not "
                       f"kept, {stays}.")
        elif self.training_running and not self.learning.running:
            message = f"Closing the project stopped the training run half-way: it is not kept, {stays}."
        else:
            return
        log.warning(message)
        if not self._shutting_down:
            from napari.utils.notifications import show_warning

            show_warning(message)

    def shutdown(self) -> None:
        """Save, stop the workers and release the project (window closing)."""
        self._shutting_down = True  # no layers kept for a next project
        try:
            self.close_project()
        except Exception:  # noqa: BLE001 - closing must not raise into Qt
            log.exception("closing the project failed")
        wait_for_warm_up()

    @main_thread_only
    def close_if_no_panel(self) -> None:
        """The last medlabeler panel was closed (napari's × on its dock): save and close the
        project, so that nothing learns unseen; the Plugins menu opens the panel again."""
        viewer = self.viewer
        if self.project is None or self._shutting_down or viewer is None:
            return
        if any(getattr(widget, "session", None) is self for widget in viewer.window.dock_widgets.values()):
            return  # another of its panels is still docked
        name = self.project.root.name
        self.close_project()
        from napari.utils.notifications import show_info

        show_info(f"medlabeler's panel was closed: the project {name} is saved and closed. Plugins > medlabeler "
                  "opens the panel again, and its Project tab the project (recent projects).")

    @property
    def task(self):
        return None if self.project is None else self.project.task

    def counts(self) -> dict:
        return {} if self.project is None else self.project.status()

    # --- samples and labels ---------------------------------------------------------------------
    @main_thread_only
    def open_sample(self, sample_id: int, *, save_first: bool = True) -> None:
        """Show a sample (saving the labels of the one open first, unless the caller just did). A
        slice of a large volume not read yet is read on a thread first (seconds for a CT series):
        the window stays live, the status bar says so, and the sample opens when its volume is in
        memory."""
        if self.project is None or self._closing:
            return
        if save_first:
            self.save_current()
            if self.unsavable:
                return  # leaving would lose the strokes the save refused
        sample = self.project.sample(int(sample_id))
        if self.view.needs_reading(sample) and volume_bytes(sample) >= READ_ON_A_THREAD_BYTES:
            self._read_then_open(sample)
            return
        self.reading = None
        cached = self._cached_prediction(sample.id)
        from medlabeler.engine.errors import MedlabelerError

        try:
            self.view.show(sample, prediction=cached)  # a prediction made ahead is drawn with the slice
        except MedlabelerError as exc:  # a file damaged since the import: the open sample stays
            labeled = self.project.label(sample.id) is not None
            show_error_message(f"Cannot open sample {sample.id}: {error_text(exc)}{_moved_hint(sample)}" + (
                "\nIts label stays: to take it back, right-click its row in the queue (labeled) > Remove label."
                if labeled else ""))
            self.queue_changed.emit()  # the store left it out of the queue: `n` does not stop there again
            if self.sample is None and len(self._failed_first) < FIRST_OPEN_TRIES:
                # nothing on screen yet (the project's first sample was damaged): the next one instead
                self._failed_first.add(sample.id)
                instead = self.next_sample_id(skip=self._failed_first)
                if instead is not None:
                    self.open_sample(instead, save_first=False)
            return
        self.sample = sample  # only now: a key pressed after a failed open labels what is on screen
        self._forget_reading_note(f"opened sample {sample.id}")
        log.info("opened sample %d", sample.id)  # scripts and tests follow the app by this line
        if self.project.is_missing_slice(sample.id):  # possibly found just now: its file went
            self.viewer.status = missing_slice_note(sample.id)
            self.queue_changed.emit()  # the queue drops it
        from medlabeler.ui.keys import install_layer_keys

        for layer in (self.view.layers.get("image"), self.view.labels_layer):  # may be new layers
            if layer is not None:
                install_layer_keys(layer, self)
        self.sample_opened.emit(sample)
        if cached is not None:
            self.prediction_changed.emit(cached)
        else:
            self.prediction_changed.emit(None)
            if self.project.active_model() is not None:
                self.view.prepare_overlays_soon()
                self._start_background(calls.prediction_only_run(self.project, sample.id), "Predicting", preempt=False)
        self.rank_ahead()

    def _layer_removed(self, event) -> None:
        """napari's delete button took the image or labels layer of the open sample: it comes back
        at once (labeling without it broke: keys raised, `s` saved a slice never painted)."""
        if self._closing or self.view is None or self.sample is None or not self.view.deleted_by_user(event.value):
            return
        sample_id = self.sample.id
        self.viewer.status = (f"medlabeler's {event.value.name} layer is needed to label: shown again "
                              "(strokes not saved were deleted with it)")
        QTimer.singleShot(0, lambda: self._show_again(sample_id))

    def _show_again(self, sample_id: int) -> None:
        if self.sample is None or self.sample.id != sample_id or self.view is None:  # another opened meanwhile
            return
        window = getattr(getattr(self.viewer, "window", None), "_qt_window", None)
        if window is not None and not window.isVisible():  # the viewer closing clears every layer
            return
        if not any(layer in self.viewer.layers for layer in self.view.layers.values()):
            return  # all of them went at once (napari's clear, or the user's select-all): nothing to mend
        self.open_sample(sample_id, save_first=False)

    def _slice_moved(self, _event=None) -> None:
        try:
            if not self._closing and self.view is not None and self.view.shown is not None and self.view.shown.is_stack:
                self._follow_timer.start()  # restarted by every step: a scroll opens where it stops
                self.view.keep_strokes_in_the_scan()
        except RuntimeError:  # the session's Qt side is gone (the window closed)
            pass

    @main_thread_only
    def _follow_slice(self) -> None:
        if self._closing or self.project is None or self.view is None or self.sample is None or self.reading is not None:
            return
        on_screen = self.view.sample_on_screen()
        if on_screen is not None and on_screen[0] != self.sample.id:
            self.open_sample(on_screen[0])

    def _read_then_open(self, sample) -> None:
        self.reading = sample.id
        if self.viewer is not None:
            self.viewer.status = reading_note(sample)
        project = self.project
        on_its_way = (project, volume_key(sample))
        if self._volume_on_its_way == on_its_way:  # `n` while it is read: the same read opens this slice
            return
        self._volume_on_its_way = on_its_way

        def read() -> None:
            labels = None
            try:
                volume = read_volume(sample, project)
            except Exception as exc:  # noqa: BLE001 - shown on the main thread
                volume = exc
            if not isinstance(volume, Exception) and project.task.kind == "segmentation":
                try:
                    labels = read_volume_labels(sample, project, volume.pixels.shape)
                except Exception:  # noqa: BLE001 - e.g. the project closed: the main thread reads them
                    log.debug("labels of sample %s not read with its volume", sample.id, exc_info=True)
            self._volume_read.emit(project, sample, (volume, labels))

        threading.Thread(target=read, name="medlabeler-volume-read", daemon=True).start()

    @main_thread_only
    def _volume_arrived(self, project, read_for, read) -> None:
        """A volume read on a thread is in memory: the slice asked for last opens if it is one of
        this volume's (the one read for, or another slice opened while it was read)."""
        if self._volume_on_its_way == (project, volume_key(read_for)):
            self._volume_on_its_way = None
        if project is not self.project or self.reading is None or self.view is None:
            return  # another project, or a sample in memory (its opening took the note), opened meanwhile
        sample = project.sample(self.reading)
        if volume_key(sample) != volume_key(read_for):
            return  # a slice of another volume was asked for meanwhile: its own read opens it (and its note stays)
        volume, labels = read
        if isinstance(volume, Exception):
            self.reading = None
            self._forget_reading_note()
            show_error_message(f"Cannot read the images of sample {sample.id}: {error_text(volume)}"
                               + _moved_hint(sample))
            return
        self.view.keep_volume(sample, volume, labels)
        self.open_sample(sample.id)

    def _forget_reading_note(self, instead: str = "Ready") -> None:
        """"reading…" stayed in napari's status bar for as long as no mouse moved over the canvas
        (whichever sample it named: a slice opened from memory meanwhile takes its place too)."""
        if self.viewer is not None and str(self.viewer.status).startswith(READING_NOTE):
            self.viewer.status = instead

    def _cached_prediction(self, sample_id: int) -> PredictionView | None:
        """The kept prediction of a sample if the active model made it."""
        cached = self.predictions.get(sample_id)
        active = self.project.active_model() if self.project is not None else None
        if cached is not None and active is not None and cached.model_version == active.version:
            return cached
        return None

    # --- the queue -------------------------------------------------------------------------------
    @property
    def strategy(self) -> str:
        return self._strategy

    @strategy.setter
    def strategy(self, name: str) -> None:
        self._strategy = name
        self.rank_ahead()

    def pending_labels(self) -> dict:
        """Sample id -> label being written (submitted, not on disk yet), or whose save failed."""
        pending = {sample_id: save.value for sample_id, save in self._not_saved.items()}
        if self.writer is not None:
            pending.update(self.writer.pending())
        return pending

    def queue_key(self, *, assume=()):
        """What the "to label" ranking depends on now (saves being written count as labeled)."""
        pending = self.writer.pending_ids() if self.writer is not None else ()
        return queue_key(self.project, self.strategy, pending=pending, assume=assume)

    def queue_rows(self, view: str = "to label", n: int = calls.QUEUE_DEPTH) -> list:
        """Rows of the queue: "to label" is ranked once per label state, model and strategy, and
        shared by the table, `n` and the first sample (one "next"); other views are listings."""
        if self.project is None:
            return []
        if view != "to label":
            return calls.queue_rows(self.project, view=view, n=n, strategy=self.strategy)
        key = self.queue_key()
        self._queue_wanted = False  # ranked here and now
        if n > calls.QUEUE_DEPTH:
            return calls.queue_rows(self.project, n=n, strategy=self.strategy, assume_labeled=key.labeled)
        rows = self.rankings.rank_now(self.project, key)
        return rows[:n] + [row for row in rows[n:] if calls.is_skipped(row)]  # the skipped ones always listed

    def ranked_queue_rows(self) -> list | None:
        """The "to label" rows if they are ranked for the state as it stands, else None (and a
        ranking is asked for in the background: ``rankings.ranked`` follows)."""
        if self.project is None:
            return []
        rows = self.rankings.get(self.queue_key())
        self._queue_wanted = rows is None
        if rows is None:
            self.rank_ahead()
        return rows

    def rank_ahead(self) -> None:
        """Ask the ranking thread for the queue now and for the queue once the open sample is saved
        (what `n` will need), unless they are ranked already."""
        if self.project is None:
            return
        keys = [self.queue_key()]
        if self.sample is not None:  # first: `n` ranks on the main thread what is not ranked by then
            keys.insert(0, self.queue_key(assume=[self.sample.id]))
        self.rankings.request(self.project, keys)

    def _ranked(self, key) -> None:
        """A background ranking arrived: the table shows it if it is the queue now; the first
        sample of the queue after the open one is saved gets its prediction ahead of time."""
        if self.project is None:
            return
        now = self.queue_key()
        if key == now:
            self._queue_wanted = False
            self.queue_changed.emit()
        else:  # the store (or the strategy) moved after the ranking was made
            self._ranking_overtaken(key)
        self._predict_ahead()

    def _ranking_overtaken(self, key) -> None:
        """A background ranking was dropped: the store moved on while it was made (a score, a
        model, a log line written). If the table waits for the queue, or it was the ranking `n`
        will need, rank the state as it is now, so the table and `n` agree and `n` does not rank
        on the main thread; while the loop is still writing scores, its end of
        scoring asks again instead (re-ranking after every chunk would keep a core busy)."""
        if self.project is None or self.learning.scoring or key.revision == self.project.ranking_revision:
            return  # not overtaken: e.g. the ranking for after the save, arrived
        labeled = self.queue_key().labeled
        after_save = self.sample is not None and key.labeled == labeled | {self.sample.id}
        if after_save or (self._queue_wanted and key.labeled == labeled):
            self.rank_ahead()  # the one `n` needs next, or the one the table waits for

    def _predict_ahead(self) -> None:
        """Predict the sample `n` will open, while the clinician labels this one (when the
        prediction worker is free: it never holds up a prediction or a re-scoring)."""
        if self.project is None or self.sample is None or not self.jobs.inference_idle:
            return
        if self.project.active_model() is None:
            return
        rows = self.rankings.get(self.queue_key(assume=[self.sample.id]))
        upcoming = next((row.sample for row in rows or () if row.sample != self.sample.id), None)
        if upcoming is None or self._cached_prediction(upcoming) is not None:
            return
        self._start_background(calls.prediction_only_run(self.project, upcoming), "Predicting ahead", preempt=False)

    def next_sample_id(self, skip=(), *, skipping: bool = False) -> int | None:
        """The top of the queue that is not the open sample. ``skipping``: the open sample is about
        to be skipped: the top of the queue as it will be ranked then (`queue_after_skip`). Else,
        when the open sample is still in the queue (left unlabeled in a project where `n` cannot
        record a skip: open read-only), the row after it: `n` walks down the queue rather than back
        and forth between its first two rows. ``skip``: samples not to open (they failed to)."""
        if self.project is None:
            return None
        from medlabeler.engine.errors import MedlabelerError

        try:
            rows = [row for row in self.queue_rows() if row.sample not in skip]
        except (MedlabelerError, ValueError) as exc:  # a strategy the active model has no scores for
            log.warning("queue: %s", exc)
            rows = []
        current = self.sample.id if self.sample is not None else None
        if skipping:
            rows = calls.queue_after_skip(rows, current)
        at = next((i for i, row in enumerate(rows) if row.sample == current), None)
        for row in rows[at + 1:] if at is not None else []:
            return row.sample
        for row in rows:
            if row.sample != current:
                return row.sample
        remaining = [s.id for s in self.project.samples(labeled=False) if s.id not in skip]
        return next((i for i in remaining if self.sample is None or i != self.sample.id), None)

    @main_thread_only
    def open_next(self) -> None:
        """Save, then open the top of the queue as it stands with the labels just saved. The open
        sample, when left unlabeled, is skipped: the queue asks for it again only after the rest,
        and `n` opens the queue's top, the open sample left out (a sample put back in its place
        is there; in a project open read-only, where nothing is recorded, the row after it)."""
        self.save_current()
        if self.unsavable:
            return  # leaving would lose the strokes the save refused
        skipping = self._skippable()
        split = self.sample.split if skipping else None  # (the open sample's, before another opens)
        next_id = self.next_sample_id(skipping=skipping)  # from the ranking made ahead, not ranked again
        skipped = self._skip(next_id) if skipping else None
        if next_id is not None:
            self.open_sample(next_id, save_first=False)
            if skipped is not None:
                self._say_skipped(skipped, next_id, replaced=split != "train" and self.sample is not None
                                  and self.sample.id == next_id and self.sample.split == split)
        elif self.viewer is not None and self.project is not None:  # said: `n` seemed to do nothing (a trial)
            self.viewer.status = ("nothing left to label: every sample that can be opened is labeled (the queue's "
                                  "labeled view lists them)")

    def _say_skipped(self, skipped: int, opened: int, *, replaced: bool = False) -> None:
        """The status line says each skip; a notification says the first of a session, with how to
        undo it, and each validation or test request passed over for another sample of its split
        (napari's cursor readout replaces the status line at once while the mouse rests on the
        scan: a trial never saw it; another saw a request move on with nothing said)."""
        if self.viewer is not None and self.reading is None:
            self.viewer.status = f"skipped sample {skipped}: asked for after the rest of the queue; opened sample {opened}"
        if replaced:
            _said(f"Skipped sample {skipped}; asked instead: sample {opened} ({calls.where(self.sample, self.project)}), "
                  f"{calls.held_out_reason(self.sample.split)}. To label a training sample first, click its row in "
                  "the queue.")
        elif not self._skip_said:
            _said(f"Skipped sample {skipped}: asked for after every other sample (to put it back, right-click its "
                  "row at the end of the queue).")
        self._skip_said = True

    def _skippable(self) -> bool:
        """Whether `n` skips the open sample: it is left unlabeled, in a project that can record it
        (`Project.skip`). Else after the next save the queue would put it back on top (a test-label
        request a radiologist passed over came back after every save)."""
        sample, project = self.sample, self.project
        if sample is None or project is None or project.readonly or self.writer is None:
            return False
        return sample.id not in self.pending_labels() and sample.id not in project.labeled_ids()

    def _skip(self, next_id: int | None) -> int | None:
        """Record the skip of the open sample (when another opens); returns its id, if recorded."""
        sample, project = self.sample, self.project
        if next_id in (None, sample.id):
            return None
        try:
            project.skip(sample.id)
        except (MedlabelerError, OSError, sqlite3.Error) as exc:  # a full disk: `n` still moves on
            log.warning("could not record that sample %d was skipped: %s", sample.id, exc)
            return None
        return sample.id

    @main_thread_only
    def save_current(self) -> int:
        """Save every label slice on screen that changed; returns how many were handed to the
        label writer. They are written on its thread, in order; ``labels_changed`` follows when
        they are on disk (the status bar says "saving" until then, never "saved" before)."""
        if self.project is None or self.view is None or self.writer is None:
            return 0
        submitted = 0
        changed = self.view.changed_masks()
        missing = self.project.missing_slice_ids() if changed else frozenset()
        self.unsavable = []
        warned = self.save_warning
        for sample_id, mask in changed:
            if sample_id in missing:  # the store would refuse it: say why here, and drop the strokes
                self.view.show_stored_labels([sample_id])
                self.viewer.status = missing_slice_note(sample_id)
                continue
            if int(mask.max(initial=0)) > len(self.project.task.names):  # the store would refuse it: the strokes stay
                self.unsavable.append(sample_id)
                self._warn_of_save(unsavable_note(sample_id, int(mask.max()), self.project.task.names))
                continue
            origin = self._origin_for(sample_id, mask)
            self.writer.submit(sample_id, mask, author=self.author, origin=origin)
            self._unjudged.pop(sample_id, None)  # an earlier mask of it: replaced by this one
            role = HELD_OUT_ROLES.get(self._split_of(sample_id))  # None: a training sample
            if role is not None and origin == "accepted_prediction":  # 'Correct it…', then s with no edit
                self._warn_of_save(f"sample {sample_id}: saved unedited from the model's prediction. A {role[0]} label "
                      f"{role[1]}, and this one is the model's own answer: keep it only if you checked it pixel by "
                      "pixel; otherwise correct it and save again.")
            note = self._incomplete_note(sample_id, mask, role)
            if role is None and note is None and mask.any():  # a sample saved again counts once
                self._painted_shares.pop(sample_id, None)
                self._painted_shares[sample_id] = float(np.count_nonzero(mask)) / mask.size
                if len(self._painted_shares) > TYPICAL_KEPT:
                    del self._painted_shares[next(iter(self._painted_shares))]
            self._save_note = note or self._save_note
            if role is not None and note is None:
                self._judge_later(sample_id, mask)  # against the prediction, when it arrives
            elif role is not None:
                self._warn_of_save(note)  # a partial held-out label misjudges models: more than a status line
            self.view.mark_saved(sample_id, mask)  # the baseline: what is being written
            self._from_prediction.discard(sample_id)
            submitted += 1
        submitted += self._save_again(done={sample_id for sample_id, _ in changed})
        if submitted and self.save_warning == warned and not self._not_saved:  # a save past the last warning
            self._set_save_warning("")
        if submitted:
            self.viewer.status = f"saving {submitted} label{'s' if submitted > 1 else ''}…"
            self.saves_submitted.emit()
        return submitted

    def _warn_of_save(self, text: str) -> None:
        """A notification, and the Label tab's line until a later save (a notification shows one line for
        4 s in the canvas's corner: a trial at 125% scaling read 39 of 175 characters)."""
        _said(text, warn=True)
        self._set_save_warning(text)

    def _set_save_warning(self, text: str) -> None:
        if text != self.save_warning:
            self.save_warning = text
            self.save_warning_changed.emit(text)

    def _drop_not_saved(self, sample_id: int) -> bool:
        """Forget a failed save of ``sample_id`` (its label removed or restored by hand), and the file
        keeping it from an earlier closing; True if there was one."""
        kept = self._kept_files.pop(sample_id, None)
        if kept is not None:
            calls.forget_unsaved(kept)
        return self._not_saved.pop(sample_id, None) is not None or kept is not None

    @main_thread_only
    def labels_closing_would_lose(self) -> list[int]:
        """Samples whose failed save can be neither saved now nor kept in the user's folder: closing
        now loses them (the folder on the full disk too)."""
        if self.project is None or self.writer is None:
            return []
        self.flush_saves()  # (a save that fails now counts)
        if not self._not_saved:
            return []
        # a trial: a file kept now and left would be saved over later labels at the next opening
        return [sample_id for sample_id, _ in self._keep_failed_saves(trial=True)[1]]

    def _keep_failed_saves(self, *, trial: bool) -> tuple[list[int], list[tuple[int, OSError]]]:
        """Try the failed saves again (space freed since?), then keep those that still fail in the
        user's folder (``trial``: only find out whether they can be, the files removed); the samples
        kept, and those that could not be, with why."""
        self._save_again()
        self.flush_saves()
        kept, lost = [], []
        for sample_id, save in self._not_saved.items():
            try:
                calls.keep_unsaved(medlabeler_home(), self.project, save, trial=trial)
                kept.append(sample_id)
            except OSError as exc:
                lost.append((sample_id, exc))
        return kept, lost

    @main_thread_only
    def may_close(self) -> bool:
        """Whether the project may close: yes, unless labels would be lost (`labels_closing_would_lose`),
        then the clinician chooses: try again (after freeing space), close anyway, or stay."""
        while lost := self.labels_closing_would_lose():
            answer = ask_about_lost_labels(lost)
            if answer != "retry":
                return answer == "close"
        return True

    def not_saved_ids(self) -> frozenset[int]:
        """Samples whose last save failed (kept, saved again with the next save)."""
        return frozenset(self._not_saved)

    def _save_again(self, done=()) -> int:
        """Hand the saves that failed to the writer again (all but ``done``: saved from the screen
        just now); returns how many."""
        in_flight = self.writer.pending_ids()
        again = [save for sample_id, save in self._not_saved.items() if sample_id not in done and sample_id not in in_flight]
        for save in again:
            self.writer.submit(save.sample_id, save.value, author=save.author, origin=save.origin)
        return len(again)

    def _judge_later(self, sample_id: int, mask: np.ndarray) -> None:
        """A held-out mask saved before the model's prediction of its sample arrived was judged on
        its painted share alone: a grey-matter ring with no white matter went into validation
        without a word. Judge it again against the prediction when that arrives."""
        if mask.nbytes > UNJUDGED_MAX_BYTES or sample_id in self.predictions:
            return
        if self.project.active_model() is None:  # no model: no prediction is coming
            return
        self._unjudged[sample_id] = mask
        while len(self._unjudged) > UNJUDGED_KEPT:
            del self._unjudged[next(iter(self._unjudged))]

    def _judge_now(self, sample_id: int) -> None:
        mask = self._unjudged.pop(sample_id, None)
        note = None if mask is None else self._incomplete_note(sample_id, mask,
                                                               HELD_OUT_ROLES.get(self._split_of(sample_id)))
        if note is not None:  # the clinician may be on another sample by now: a notification, not the status
            self._warn_of_save(f"Saved earlier: {note}")

    def _incomplete_note(self, sample_id: int, mask: np.ndarray, role: tuple[str, str] | None) -> str | None:
        """A note when a saved mask looks like strokes, not whole structures: every unpainted pixel
        counts as background, which teaches the model (and, on a held-out sample, measures it)
        wrongly. Strokes: under SPARSE_SHARE of the pixels, or under PARTIAL_SHARE of the
        structure the model's prediction of the sample finds. `role`: the sample's held-out role
        (HELD_OUT_ROLES), None for a training sample."""
        share = float(np.count_nonzero(mask)) / max(mask.size, 1)
        found = self._predicted_share(sample_id, mask.shape)
        sparse = self._held_out_sparse_share() if role and not found else SPARSE_SHARE
        if not (0 < share < sparse or share < PARTIAL_SHARE * found):
            return None
        against = f" (the model finds {found:.1%})" if found and share >= SPARSE_SHARE else ""
        # a stroke on one slice of a whole volume is a few thousandths of a percent: not "0.0%"
        count, unit = int(np.count_nonzero(mask)), "voxel" if mask.ndim == 3 else "pixel"
        painted = f"{share:.1%}" if share >= 0.001 else f"{count} {unit}{'s' * (count != 1)} ({share * 100:.2g}%)"
        return (f"sample {sample_id}: only {painted} painted{against}; unpainted pixels count as background"
                f"{f' and a {role[0]} label {role[1]}' if role else ''}: paint each structure whole (or Remove label, "
                "if saved by mistake)")

    def _held_out_sparse_share(self) -> float:
        if len(self._painted_shares) < TYPICAL_AFTER:
            return HELD_OUT_SPARSE_SHARE
        return min(HELD_OUT_SPARSE_SHARE, PARTIAL_SHARE * float(np.median(list(self._painted_shares.values()))))

    def _predicted_share(self, sample_id: int, shape: tuple[int, ...]) -> float:
        """The share of ``sample_id``'s pixels the model's prediction on hand finds as structure
        (0 without one)."""
        pred = self.predictions.get(sample_id)
        if pred is None or not isinstance(pred.label, np.ndarray) or pred.label.shape != tuple(shape):
            return 0.0
        return float(np.count_nonzero(pred.label)) / max(int(np.prod(shape)), 1)

    @main_thread_only
    def save_as_background(self) -> bool:
        """Segmentation: save the untouched mask of the slice on screen as it is (every pixel
        background), when it has no label yet: how a clinician says "nothing to label here" (a
        slice with no structure, a blank slice). The slice on screen, not the open sample: in a
        volume the slider may have moved to another slice. False when there is nothing to do: a
        label exists or the mask was changed (then `save_current` saves it).

        On a validation or test sample the first press only asks for a second one (within
        CONFIRM_BACKGROUND_S): an empty held-out label says none of the structures is there and
        grades the model by that (a user saved a test slice full of bone as all background)."""
        if (self.project is None or self.view is None or self.writer is None or self.sample is None
                or self.project.readonly or self.project.task.kind != "segmentation"):
            return False
        on_screen = self.view.sample_on_screen()
        if on_screen is None:
            return False
        sample_id, mask = on_screen
        if sample_id in self.pending_labels() or sample_id in self.project.labeled_ids():
            return False
        if mask.any():
            return False
        if self.project.is_missing_slice(sample_id):
            self.viewer.status = missing_slice_note(sample_id)
            return True
        if not self._background_confirmed(sample_id, self._predicted_share(sample_id, mask.shape)):
            return True
        mask = mask.astype(np.uint8, copy=True)
        self.writer.submit(sample_id, mask, author=self.author, origin="manual")
        self.view.mark_saved(sample_id, mask)
        self._save_note = "all background (nothing painted)"
        self.viewer.status = f"saving sample {sample_id} as all background…"
        self.saves_submitted.emit()
        return True

    @main_thread_only
    def remove_label(self, sample_id: int | None = None) -> bool:
        """Make the sample on screen (or ``sample_id``: a row of the queue, one whose image cannot
        be opened any more included) unlabeled again: a label saved by mistake (a stray click is
        saved when the slider leaves its slice). Its versions stay in the project's history. False
        when it has no saved label."""
        if self.project is None or self.view is None or (self.sample is None and sample_id is None):
            return False
        if self.writer is None:
            show_error_message("This project is open read-only; labels cannot be removed.")
            return False
        if sample_id is None:
            on_screen = self.view.sample_on_screen() if self.project.task.kind == "segmentation" else None
            sample_id = on_screen[0] if on_screen is not None else self.sample.id
        self.flush_saves()  # a save still being written would land after the removal
        failed = self._drop_not_saved(sample_id)  # taken back with the label
        version = self.project.remove_label(sample_id)
        if version is None and failed:
            self.view.show_stored_labels([sample_id])
            self.viewer.status = f"dropped the strokes of sample {sample_id}, whose save had failed; it has no saved label"
            return True
        if version is None:
            self.viewer.status = f"sample {sample_id} has no saved label to remove"
            return False
        self.view.show_stored_labels([sample_id])
        self._from_prediction.discard(sample_id)
        self._unjudged.pop(sample_id, None)  # nothing left to judge when its prediction comes
        self.labels_changed.emit()
        self.queue_changed.emit()
        self.viewer.status = (f"removed the label of sample {sample_id}: it is unlabeled again (version {version} "
                              "stays in the project's history)")
        return True

    @main_thread_only
    def unskip(self, sample_id: int) -> bool:
        """Put a sample skipped with `n` back in its place in the queue (a slip of the key)."""
        if self.project is None or self.writer is None:
            return False
        try:
            undone = self.project.unskip([sample_id])
        except (MedlabelerError, OSError, sqlite3.Error) as exc:
            show_error_message(f"Could not put sample {sample_id} back in the queue: {exc}")
            return False
        self.queue_changed.emit()
        self.rank_ahead()
        if self.viewer is not None:
            self.viewer.status = (f"sample {sample_id} is back in its place in the queue" if undone else
                                  f"sample {sample_id} was not skipped")
        return bool(undone)

    @main_thread_only
    def restore_label(self, sample_id: int, version: int) -> bool:
        """Make an earlier saved version of a sample's label its label again (an import or a
        correction that replaced a better one, a damaged mask file); the newer versions stay in
        the history. False when it could not be done (said)."""
        if self.project is None or self.view is None:
            return False
        if self.writer is None:
            show_error_message("This project is open read-only; labels cannot be restored.")
            return False
        self.save_current()
        self.flush_saves()  # a save still being written would land after the restore
        self._drop_not_saved(sample_id)  # else saved again over the version restored
        before = self.project.label(sample_id)
        try:
            self.project.revert_label(sample_id, version)
        except MedlabelerError as exc:
            show_error_message(f"Cannot restore version {version} of sample {sample_id}: {error_text(exc)}")
            return False
        self.view.show_stored_labels([sample_id])
        self._from_prediction.discard(sample_id)
        self.labels_changed.emit()
        self.queue_changed.emit()
        self.viewer.status = restored_text(sample_id, version, before)
        return True

    def _split_of(self, sample_id: int) -> str | None:
        return next((s.split for s in self.project.samples(ids=[sample_id])), None)

    def _background_confirmed(self, sample_id: int, found: float) -> bool:
        """Whether an all-background save of ``sample_id`` may go ahead: at once on a training sample
        where the model finds (almost) nothing (``found``: the share of pixels its prediction marks);
        else at the second press within CONFIRM_BACKGROUND_S, the first saying why (an empty training
        slice was saved at once where the model found 21% tissue)."""
        role = HELD_OUT_ROLES.get(self._split_of(sample_id))
        armed, self._background_armed = self._background_armed, None
        if (role is None and found < SPARSE_SHARE) or (armed is not None and armed[0] == sample_id
                                                        and time.monotonic() - armed[1] <= CONFIRM_BACKGROUND_S):
            return True
        self._background_armed = (sample_id, time.monotonic())
        names = " or ".join(self.project.task.names)
        model = f" (the model finds {found:.1%})" if found >= SPARSE_SHARE else ""
        teaches = f"it {role[1]} by that" if role is not None else "the model learns that"
        kind = f"a {role[0]} sample" if role is not None else "a training sample"
        self.viewer.status = (f"sample {sample_id} is {kind}: saved with nothing painted, its label says there is "
                              f"no {names} on it{model}, and {teaches}. Press s again to save it as all background.")
        return False

    def flush_saves(self, timeout_s: float | None = 60.0) -> bool:
        """Wait until every label handed to the writer is on disk, then report them (closing,
        scripts, tests). True if they all landed."""
        if self.writer is None:
            return True
        landed = self.writer.flush(timeout_s)
        self._report_landed()
        return landed

    def _save_landed_on_writer(self, pending) -> None:
        """Runs on the writer thread: hand the landed save to the main thread."""
        self._landed.append(pending)
        self._save_landed_signal.emit()

    @property
    def saving(self) -> bool:
        """Labels handed to the writer are not all on disk yet."""
        return self.writer is not None and self.writer.busy

    @main_thread_only
    def _report_landed(self) -> None:
        """Report the saves that landed: errors at once, successes as one ``labels_changed``."""
        failed: list = []
        while self._landed:
            pending = self._landed.popleft()
            if pending.error is not None:
                failed.append(pending)
                self._not_saved[pending.sample_id] = pending  # its strokes are not lost with the screen
                if self.view is not None:
                    self.view.mark_unsaved(pending.sample_id)  # saved again with the next save, if on screen
            else:
                self._not_saved.pop(pending.sample_id, None)
                kept = self._kept_files.pop(pending.sample_id, None)
                if kept is not None:  # kept at an earlier closing: in the project now
                    calls.forget_unsaved(kept)
                self._landed_since_signal.append(pending.sample_id)
        still = sorted({p.sample_id for p in failed} & set(self._not_saved))  # (not saved by a later try since)
        if still:
            text = not_saved_text(still, failed[-1].error)
            show_error_message(text)
            self._set_save_warning(text)
            if self.viewer is not None:
                self.viewer.status = text.split(". ", 1)[0]  # not "saving 1 label…" any more
        elif self._not_saved_said and not self._not_saved:  # what had failed is saved now
            self._set_save_warning("")
        self._not_saved_said = bool(self._not_saved)
        if self._landed_since_signal and not self.saving:  # one report for a burst of saves
            landed, self._landed_since_signal = sorted(set(self._landed_since_signal)), []
            self.labels_changed.emit()
            if self.viewer is not None:
                text = (f"saved the label of sample {landed[0]}" if len(landed) == 1 else
                        f"saved the labels of samples {', '.join(map(str, landed))}")
                self.viewer.status = text + (f"; {self._save_note}" if self._save_note else "")
            self._save_note = None

    def _origin_for(self, sample_id: int, mask: np.ndarray) -> str:
        if sample_id not in self._from_prediction:
            return "manual"
        pred = self.predictions.get(sample_id)
        if pred is not None and isinstance(pred.label, np.ndarray) and np.array_equal(pred.label, mask):
            return "accepted_prediction"
        return "corrected_prediction"

    @main_thread_only
    def label_class(self, value: int, *, origin: str = "manual") -> bool:
        """Classification: save ``value`` as the open sample's class."""
        if self.project is None or self.sample is None:
            return False
        if self.writer is None:
            show_error_message("This project is open read-only; labels cannot be saved.")
            return False
        names = self.project.task.names
        if isinstance(value, bool) or not 0 <= int(value) < len(names):
            show_error_message(f"The label was not saved: class {value} is not one of {', '.join(names)}")
            return False
        self.writer.submit(self.sample.id, int(value), author=self.author, origin=origin)
        self._save_again(done={self.sample.id})
        self.saves_submitted.emit()
        name = names[int(value)]
        if self.advance_after_class and origin == "manual":
            self.open_next()
        self.viewer.status = f"labeled as {name}"
        return True

    @main_thread_only
    def paint_with(self, value: int, brush_size: int | None = None) -> bool:
        """Segmentation: paint label ``value`` (1-based, as the labels layer stores it) with the brush."""
        layer = self.view.labels_layer if self.view is not None else None
        if layer is None or layer not in self.viewer.layers or not 1 <= value <= len(self.project.task.names):
            return False
        if self.project.readonly:
            self.viewer.status = "this project is open read-only: labels cannot be changed"
            return False
        layer.selected_label = value
        if brush_size is not None:
            layer.brush_size = brush_size
        layer.mode = "paint"
        self.viewer.layers.selection.active = layer
        self.viewer.status = f"painting {self.project.task.names[value - 1]} (label {value})"
        return True

    def current_label(self):
        """The open sample's label: the one being written if any, else the stored one."""
        if self.project is None or self.sample is None:
            return None
        pending = self.pending_labels()
        if self.sample.id in pending:
            return pending[self.sample.id]
        return self.project.load_label(self.sample.id)

    # --- predictions ----------------------------------------------------------------------------
    @property
    def current_prediction(self) -> PredictionView | None:
        if self.sample is None:
            return None
        return self.predictions.get(self.sample.id)

    @main_thread_only
    def accept_prediction(self) -> bool:
        """Save the model's prediction of the open sample as its label (origin accepted_prediction)."""
        pred = self.current_prediction
        if self.project is None or self.sample is None:
            return False
        if pred is None or pred.label is None:  # in the status line, as the other refusals: `a` may be pressed fast
            self.viewer.status = f"sample {self.sample.id} has no prediction yet: nothing to accept"
            return False
        if self.project.readonly:
            self.viewer.status = "this project is open read-only: labels cannot be saved"
            return False
        refusal = held_out_refusal(self.sample) or self._hand_label_refusal() or self._unsaved_strokes_refusal(pred)
        if refusal:
            self.viewer.status = refusal
            return False
        if self.project.task.kind == "classification":
            before, accepted = self._save_note, self._accepted_class_note(pred)
            self._save_note = f"{before}; {accepted}" if before else accepted
            if self.label_class(int(pred.label), origin="accepted_prediction"):
                return True
            self._save_note = before  # not saved: not said with the next save either
            return False
        self.view.set_current_mask(pred.label)
        self._from_prediction.add(self.sample.id)
        if self.save_current() > 0:  # said with "saved" (on this thread, after this): a run of `a` is seen
            accepted = (f"the prediction of v{pred.model_version}, accepted "
                        f"({label_shares_text(pred.label, self.project.task.names)})")
            self._save_note = f"{self._save_note}; {accepted}" if self._save_note else accepted
            return True
        return self._already_saved(pred)

    def _accepted_class_note(self, pred) -> str:
        """What `a` saved on a classification: "saved the label of sample 5" hid a 49.7% / 48.1% call."""
        names, value = self.project.task.names, int(pred.label)
        probabilities = getattr(pred, "probabilities", None)
        text = f"{names[value]}, the prediction of v{pred.model_version}"
        if probabilities is None or len(probabilities) != len(names):
            return text + ", accepted"
        text += f" ({probabilities[value]:.1%}), accepted"
        others = [i for i in range(len(names)) if i != value]
        runner_up = max(others, key=lambda i: probabilities[i]) if others else None
        if runner_up is not None and probabilities[value] - probabilities[runner_up] < CLOSE_CALL:
            text += f": a close call against {names[runner_up]} ({probabilities[runner_up]:.1%})"
        return text

    def _hand_label_refusal(self) -> str:
        """Why a one-click accept would not replace the open sample's label ("" if it may): a label a
        person drew or corrected is not overwritten by the model's prediction unasked."""
        label = self.project.label(self.sample.id)
        if label is None or label.origin not in ("manual", "corrected_prediction"):
            return ""
        return (f"sample {self.sample.id} has your label (v{label.version}): the prediction does not replace it "
                "when accepted. 'Correct it…' copies the prediction into your labels to edit; then save with s.")

    def _unsaved_strokes_refusal(self, pred) -> str:
        """Why accepting would drop strokes painted on the open sample and not saved yet ("" if not)."""
        if self.view is None:
            return ""
        painted = dict(self.view.changed_masks()).get(self.sample.id)
        if painted is None or np.array_equal(painted, pred.label):
            return ""
        return (f"sample {self.sample.id} has strokes not saved yet: the prediction does not replace them when "
                "accepted. Save them with s, or undo them (Ctrl+Z) to accept.")

    def _already_saved(self, pred) -> bool:
        pending = self.pending_labels()
        stored = pending[pred.sample_id] if pred.sample_id in pending else self.project.load_label(pred.sample_id)
        return isinstance(stored, np.ndarray) and np.array_equal(stored, pred.label)

    @main_thread_only
    def edit_prediction(self) -> bool:
        """Copy the prediction into the Labels layer to correct it; saving records corrected_prediction."""
        pred = self.current_prediction
        if pred is None or not isinstance(pred.label, np.ndarray):
            return False
        self.view.set_current_mask(pred.label)
        self._from_prediction.add(self.sample.id)
        return True

    @main_thread_only
    def _apply_prediction(self, ready: calls.PredictionReady) -> None:
        pred = PredictionView(ready.sample_id, ready.label, ready.probabilities, ready.uncertainty, ready.cam, ready.model_version)
        self.predictions.pop(pred.sample_id, None)
        self.predictions[pred.sample_id] = pred  # newest last
        while len(self.predictions) > self.predictions_kept:
            del self.predictions[next(iter(self.predictions))]
        self._judge_now(pred.sample_id)
        if self.sample is not None and pred.sample_id == self.sample.id and self.view is not None:
            self.view.show_prediction(pred)
            self.timings["overlay_at"] = _now()
            self.prediction_changed.emit(pred)

    @main_thread_only
    def set_overlay_visible(self, kind: str, visible: bool) -> None:
        """Show or hide an overlay (prediction, uncertainty, Grad-CAM) now and on the next samples,
        of this project and the next."""
        if kind not in self.overlay_visible or self.overlay_visible[kind] == bool(visible):
            return
        self.overlay_visible[kind] = bool(visible)  # the view's dict too (shared)
        if self.view is not None:
            self.view.set_overlay_visible(kind, visible)
        self.overlay_toggled.emit(kind, bool(visible))

    @main_thread_only
    def toggle_overlay(self, kind: str) -> bool:
        """Flip an overlay's visibility; returns the new state."""
        if self.view is None:
            return False
        visible = not self.overlay_visible.get(kind, False)
        self.set_overlay_visible(kind, visible)
        return visible

    # --- training -------------------------------------------------------------------------------
    @property
    def training_running(self) -> bool:
        return self.jobs.training_running

    @main_thread_only
    def start_training(self, method: str | None, *, init=None, epochs: int | None = None, config: dict | None = None,
                       steps: int | None = None, budget_s: float | None = None) -> bool:
        """Start a training (or pretraining) run on a worker; one at a time. ``method`` None: the
        recommended one; ``steps``/``budget_s``: the run's length (default: the recommended budget)."""
        if self.project is None:
            show_error_message("Open a project first.")
            return False
        if self.project.readonly:
            show_error_message("This project is open read-only; training needs it open for writing.")
            return False
        self.save_current()
        self.flush_saves()  # the run trains on every label saved so far
        job = EngineJob(
            f"Pretraining ({method})" if method in calls.pretrain_methods() else f"Training ({method or 'recommended'})",
            calls.training_run(self.project, method=method, init=init, epochs=epochs, config=dict(config or {}),
                               steps=steps, budget_s=budget_s),
        )
        job.event.connect(self.training_event.emit)
        job.done.connect(self._training_done)
        job.ended.connect(lambda: self._training_ended(job))
        if not self.jobs.start_training(job):
            return False
        self.timings = {"train_started_at": _now()}
        self.last_training = job
        self.training_started.emit(method or "recommended")
        if self.view is not None and method not in calls.pretrain_methods():
            self.view.prepare_overlays()
        return True

    @main_thread_only
    def cancel_training(self) -> None:
        if self.jobs.training is not None:
            self.jobs.training.cancel()

    @main_thread_only
    def _training_ended(self, job) -> None:
        if job.outcome == "failed":  # the store noted a labeled image that stopped it: the labeled list puts it first
            self.queue_changed.emit()
        self.training_ended.emit(job.outcome or "failed")

    @main_thread_only
    def _training_done(self, result) -> None:
        self.timings["train_done_at"] = _now()
        version = calls.result_version(result)
        if version is not None and self.viewer is not None:
            decision = getattr(result, "decision", None)
            self.viewer.status = decision.message if decision is not None else f"model v{version} stored"
        self.models_changed.emit()
        active = self.project.active_model() if self.project is not None else None
        if self.auto_refresh and active is not None and active.version == version:
            self.refresh_after_model()  # a pretraining run stores an encoder and changes nothing shown

    @main_thread_only
    def activate_model(self, version: int) -> bool:
        """Make ``version`` the active model (roll back or forward) and refresh predictions; False
        (and an error shown) when it cannot be."""
        from medlabeler.engine.errors import MedlabelerError

        try:
            calls.activate_by_hand(self.project, int(version))  # logged beside the loop's decisions
        except MedlabelerError as exc:
            show_error_message(f"Cannot activate model v{version}: {error_text(exc)}")
            return False
        self.predictions.clear()
        if self.view is not None:
            self.view.clear_prediction()
        self.learning.activated_by_hand(version)
        self.prediction_changed.emit(None)
        self.models_changed.emit()
        self.queue_changed.emit()
        self.refresh_after_model()
        return True

    @main_thread_only
    def model_promoted(self) -> None:
        """The learning loop promoted a model: predict the open sample with it (the loop itself
        re-scores the pool and the queue re-ranks as the scores arrive)."""
        self.timings["promoted_at"] = _now()
        self.predictions.clear()
        self.prediction_changed.emit(None)
        if self.project is not None and self.sample is not None:
            self._start_background(calls.prediction_only_run(self.project, self.sample.id), "Predicting")

    @main_thread_only
    def refresh_after_model(self) -> None:
        """Re-predict the open sample and re-score the pool in the background; the queue re-ranks after."""
        if self.project is None or self.project.active_model() is None:
            return
        sample_id = self.sample.id if self.sample is not None else None
        self._start_background(calls.refresh_run(self.project, sample_id), "Updating predictions", rerank=True)

    def _start_background(self, make_gen, action: str, *, rerank: bool = False, preempt: bool = True) -> None:
        job = EngineJob(action, make_gen)
        job.event.connect(self._background_event)
        if rerank:
            job.done.connect(self._scores_written)
        self.jobs.start_inference(job, preempt=preempt)

    @main_thread_only
    def _background_event(self, event) -> None:
        if isinstance(event, calls.PredictionReady):
            self._apply_prediction(event)

    @main_thread_only
    def _scores_written(self, _result) -> None:
        self.timings["rescored_at"] = _now()
        self.queue_changed.emit()

    def _jobs_changed(self) -> None:
        self.background_state.emit(self.jobs.inference_running)
        if self.jobs.inference_idle:
            self._predict_ahead()


def _now() -> float:
    import time

    return time.perf_counter()
