"""Queue: the samples the model is least sure about, with score and reason; click to open, right-click
to open or take a label back."""

from __future__ import annotations

import difflib
import logging
import re

from qtpy.QtCore import Qt, Signal
from qtpy.QtGui import QAction, QFont, QFontMetrics
from qtpy.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMenu,
    QPushButton,
    QStyle,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from medlabeler.ui import engine_calls as calls
from medlabeler.ui.widgets._common import (
    CompactCombo, close_with_the_panel, connect, hint, leave_keys_to_the_canvas, session_for,
)

log = logging.getLogger(__name__)
VIEWS = ("to label", "labeled", "all")
CELL_PADDING = 8  # px beyond the text and the focus frame, as Qt pads a cell sized to its contents


class QueueWidget(QWidget):
    collapsed = Signal(bool)

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.rows: list[calls.QueueRow] = []
        self._bold_rows: set[int] | None = None  # rows shown in bold (None: unknown, look at each)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)

        controls = QHBoxLayout()
        self.collapse_button = QToolButton()
        self.collapse_button.setCheckable(True)
        self.collapse_button.setArrowType(Qt.ArrowType.DownArrow)
        self.collapse_button.setToolTip("Hide or show the queue table (the canvas and tabs get the room)")
        self.collapse_button.toggled.connect(self.set_collapsed)
        controls.addWidget(self.collapse_button)
        self.view_combo = CompactCombo(4)
        self.view_combo.addItems(VIEWS)
        self.strategy_combo = CompactCombo(4)
        self.strategy_combo.addItems(_strategies())
        for i in range(self.strategy_combo.count()):
            self.strategy_combo.setItemData(i, strategy_help(self.strategy_combo.itemText(i)),
                                            Qt.ItemDataRole.ToolTipRole)
        self.strategy_combo.setCurrentText(self.session.strategy)
        self.strategy_combo.setToolTip(strategy_help(self.strategy_combo.currentText()))
        controls.addWidget(QLabel("Queue"))
        controls.addWidget(self.view_combo, 1)
        controls.addWidget(QLabel("by"))
        controls.addWidget(self.strategy_combo, 1)
        layout.addLayout(controls)

        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["sample", "where", "score", "why"])
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setVisible(False)
        # one line a row, the reason cut to the column with its whole text in the tooltip: wrapped,
        # the reasons made each row three lines high and a 1366x768 screen showed three rows
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.table.setMinimumHeight(90)
        layout.addWidget(self.table, 1)

        self.buttons = QWidget()
        buttons = QHBoxLayout(self.buttons)
        buttons.setContentsMargins(0, 0, 0, 0)
        self.next_button = QPushButton("Open next (n)")
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setToolTip("Rank the queue again, and read again the images that no longer read "
                                       "(a file put back is listed as before)")
        buttons.addWidget(self.next_button)
        buttons.addWidget(self.refresh_button)
        layout.addWidget(self.buttons)
        self.status = hint("")
        layout.addWidget(self.status)

        self.table.cellClicked.connect(self._clicked)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._context_menu)
        self.next_button.clicked.connect(self.session.open_next)
        self.refresh_button.clicked.connect(self._refresh_clicked)
        self.view_combo.currentTextChanged.connect(lambda _: self.refresh(wait=True))
        self.strategy_combo.currentTextChanged.connect(self._strategy_changed)
        connect(self, self.session.project_changed, self._project_changed)
        # the table follows on the next turn of the event loop: `n` opens the sample first
        connect(self, (self.session.queue_changed, self.session.labels_changed, self.session.sample_opened),
                self._refresh_later, later=True)
        connect(self, self.session.background_state, self._background)
        self.refresh()
        leave_keys_to_the_canvas(self)
        close_with_the_panel(self)

    def set_collapsed(self, collapsed: bool) -> None:
        """Show only the header row (the table and its buttons hidden), or everything."""
        if self.collapse_button.isChecked() != collapsed:
            self.collapse_button.setChecked(collapsed)  # calls back here once
            return
        self.collapse_button.setArrowType(Qt.ArrowType.RightArrow if collapsed else Qt.ArrowType.DownArrow)
        for part in (self.table, self.buttons, self.status):
            part.setVisible(not collapsed)
        self.collapsed.emit(collapsed)

    def _refresh_clicked(self) -> None:
        self.session.recheck_unreadable()  # a file put back is listed as before once read again
        self.refresh(wait=True)

    def _project_changed(self) -> None:
        """Another project starts on "to label": a new one opened on "labeled" showed "0 samples"."""
        if self.view_combo.currentText() != VIEWS[0]:
            self.view_combo.blockSignals(True)
            self.view_combo.setCurrentText(VIEWS[0])
            self.view_combo.blockSignals(False)
        self.refresh()

    def _refresh_later(self, *_args) -> None:
        self.refresh()  # after a save, the queue without the sample just saved: often ranked already

    def _strategy_changed(self, name: str) -> None:
        self.strategy_combo.setToolTip(strategy_help(name))
        self.session.strategy = name
        self.refresh(wait=True)

    def _background(self, running: bool) -> None:
        self.status.setText("updating scores in the background…" if running else self._summary())

    def refresh(self, wait: bool = False) -> None:
        """Show the queue as it stands. The "to label" ranking is made on a thread: until it is
        there the table keeps the rows it shows (``wait``: rank here and now instead)."""
        project = self.session.project
        rows: list | None = []
        if project is not None:
            from medlabeler.engine.errors import MedlabelerError

            view = self.view_combo.currentText()
            try:
                if view == "to label" and not wait:
                    rows = self.session.ranked_queue_rows()
                else:
                    depth = calls.QUEUE_DEPTH if view == "to label" else LISTED_AT_MOST
                    rows = self.session.queue_rows(view, n=depth)
            except (MedlabelerError, ValueError) as exc:  # e.g. a score the active model never wrote
                self.status.setText(str(exc))
                return
        if rows is None:  # being ranked: session.queue_changed follows
            self._mark_open()
            return
        if rows != self.rows or self.table.rowCount() != len(rows):
            self._fill(project, rows)
        self._mark_open()
        self.status.setText(self._summary())

    def _fill(self, project, rows: list) -> None:
        """Bring the table to ``rows``, touching only what changed. After a save the queue is most
        often the rows it was, less the one saved: the rows that left are removed and the new ones
        inserted, and only cells whose text changed are set and measured. Rebuilt whole, the table
        had cost 4-7 ms at each save (sizing every row and column), and its stall 13-36 ms while
        the loop trains."""
        before = [row.sample for row in self.rows] if self.table.rowCount() == len(self.rows) else None
        self.rows = list(rows)
        self._bold_rows = None
        ids = [row.sample for row in self.rows]
        samples = {s.id: s for s in project.samples(ids=ids)} if project is not None and ids else {}
        has_model = project is not None and project.active_model() is not None
        self.table.setUpdatesEnabled(False)
        try:
            if before is None:
                self.table.setRowCount(0)
                before = []
            moves = difflib.SequenceMatcher(None, before, ids, autojunk=False).get_opcodes()
            for tag, i1, i2, j1, j2 in reversed(moves):  # from the end: the earlier indices stay valid
                if tag in ("delete", "replace"):
                    for _ in range(i2 - i1):
                        self.table.removeRow(i1)
                if tag in ("insert", "replace"):
                    for k in range(j2 - j1):
                        self.table.insertRow(i1 + k)
            places = {i: calls.where(sample, project) for i, sample in samples.items()}
            changed = [r for r, row in enumerate(self.rows)
                       if self._set_row(r, row, places.get(row.sample, ""), has_model)]
            if changed:  # most rows new (another view, a new ranking): every column fitted anew
                if self._fit_columns(changed, whole=not before or 2 * len(changed) > len(self.rows)):
                    self.table.resizeRowsToContents()  # the stretched "why" column narrowed: rows may wrap
                else:
                    for r in changed:
                        self.table.resizeRowToContents(r)
        finally:
            self.table.setUpdatesEnabled(True)

    def _set_row(self, r: int, row, where: str, has_model: bool) -> bool:
        """Row ``r`` shows ``row``, at ``where``; returns whether any of its texts changed."""
        value = calls.shown_score(row, has_model=has_model)  # an uncertainty, or nothing
        score = "" if value is None else f"{value:.3f}"
        changed = False
        for c, text in enumerate((str(row.sample), where, score, short_reason(row.reason))):
            item = self.table.item(r, c)
            if item is None:
                item = QTableWidgetItem()
                self.table.setItem(r, c, item)
            if c == 3 and item.toolTip() != row.reason:  # the whole reason, as `medlabeler queue` prints it
                item.setToolTip(row.reason)  # (its details may change where the cell's text does not)
            if item.text() == text:
                continue
            changed = True
            item.setText(text)
            if c == 0:
                item.setData(Qt.ItemDataRole.UserRole, row.sample)
        return changed

    def _fit_columns(self, rows: list[int], *, whole: bool) -> bool:
        """Sample, where and score as wide as their text in bold (the open sample's row is bold:
        sized for the plain font, its "slice 119" broke over two lines). ``whole``: fitted to
        every row anew; else widened where one of ``rows`` needs it (a column never narrows
        while rows come and go). Returns whether a column's width changed."""
        before = [self.table.columnWidth(column) for column in range(3)]
        bold = QFont(self.table.font())
        bold.setBold(True)
        metrics = QFontMetrics(bold)
        margins = 2 * (self.table.style().pixelMetric(QStyle.PixelMetric.PM_FocusFrameHMargin, None, self.table) + 1)
        measured = range(self.table.rowCount()) if whole else rows  # whole: the unchanged bold row too
        for column in range(3):
            if whole:
                self.table.resizeColumnToContents(column)
            items = (self.table.item(r, column) for r in measured)
            widest = max((metrics.horizontalAdvance(item.text()) for item in items if item is not None), default=0)
            needed = widest + margins + CELL_PADDING
            if self.table.columnWidth(column) < needed:
                self.table.setColumnWidth(column, needed)
        return [self.table.columnWidth(column) for column in range(3)] != before

    def _summary(self) -> str:
        if self.session.project is None:
            return "Open a project to see what to label next."
        active = self.session.project.active_model()
        model = f"ranked with model v{active.version}" if active else "no model yet: first picks"
        view = self.view_combo.currentText()
        if view != "to label":
            counts = self.session.counts()
            total = counts.get("labeled" if view == "labeled" else "samples", len(self.rows))
            return (f"{total} samples" if total <= len(self.rows) else
                    f"the first {len(self.rows)} of {total} samples (by sample id)")
        if not self.rows:  # said: an empty table looked like a queue still being made
            counts = self.session.counts()
            unlabeled = counts.get("samples", 0) - counts.get("labeled", 0)
            if unlabeled <= 0:
                return "nothing left to label: every sample is labeled (the labeled view lists them)"
            return (f"nothing to label now: the {unlabeled} unlabeled samples are blank, or their images no longer "
                    "read (moved? the Project tab's Find moved images…)")
        skipped = sum(1 for row in self.rows if calls.is_skipped(row))
        then = f", then {skipped} skipped with n (right-click one to put it back)" if skipped else ""
        return f"the next {len(self.rows) - skipped} to label{then}; {model}"

    def _mark_open(self) -> None:
        """The open sample's row in bold and selected, no other row selected (a click's selection
        stays on its row index when the rows move, and would point at another sample); only rows
        whose state changes are touched."""
        sample = self.session.sample
        bold_now = {r for r, row in enumerate(self.rows) if sample is not None and row.sample == sample.id}
        selected = {index.row() for index in self.table.selectionModel().selectedRows()}
        if selected != bold_now:
            self.table.clearSelection()
            for r in bold_now:
                self.table.selectRow(r)
        if bold_now == self._bold_rows:
            return
        self._bold_rows = bold_now
        for r in range(len(self.rows)):
            first = self.table.item(r, 0)
            if first is None:
                continue
            bold = r in bold_now
            if first.font().bold() == bold:
                continue
            font = first.font()
            font.setBold(bold)
            for c in range(self.table.columnCount()):
                item = self.table.item(r, c)
                if item is not None:
                    item.setFont(font)

    def _clicked(self, row: int, _column: int) -> None:
        if 0 <= row < len(self.rows):
            self.session.open_sample(self.rows[row].sample)

    def row_actions(self, row: int) -> list[QAction]:
        """What a right-click on ``row`` offers: open its sample, take its label back, which
        reaches a sample whose image cannot be opened any more (a labeled file damaged after the
        import stops every training run until it is put back or unlabeled), restore an earlier
        saved version of its label, and put a sample skipped with `n` back in its place."""
        project = self.session.project
        if not 0 <= row < len(self.rows) or project is None:
            return []
        sample_id = self.rows[row].sample
        labeled = project.label(sample_id) is not None
        open_it = QAction(f"Open sample {sample_id}", self.table)
        open_it.triggered.connect(lambda: self.session.open_sample(sample_id))
        remove = QAction(f"Remove label of sample {sample_id}", self.table)
        remove.setToolTip("unlabeled again; its saved versions stay in the project's history")
        remove.setEnabled(self.session.writer is not None and labeled)
        remove.triggered.connect(lambda: self.session.remove_label(sample_id))
        actions = [open_it, remove, self._restore_menu(sample_id).menuAction()]
        if not labeled and sample_id in project.skipped_ids():  # in any view
            put_back = QAction(f"Put sample {sample_id} back in its place in the queue", self.table)
            put_back.setToolTip("skipped with n; ranked again like the samples never skipped")
            put_back.setEnabled(self.session.writer is not None)
            put_back.triggered.connect(lambda: self.session.unskip(sample_id))
            actions.append(put_back)
        return actions

    def _restore_menu(self, sample_id: int) -> QMenu:
        """The sample's saved versions, newest first: choosing an earlier one makes it the label
        again (an import or a correction replaced a better one)."""
        from medlabeler.ui.engine_calls import saved_versions

        menu = QMenu(f"Restore a saved version of sample {sample_id}", self.table)
        versions = saved_versions(self.session.project, sample_id)
        for version, text, current in versions:  # its label now listed too, marked and not to be chosen
            action = menu.addAction(text + ("   (its label now)" if current else ""))
            action.setEnabled(not current)
            action.triggered.connect(lambda _=False, v=version: self.session.restore_label(sample_id, v))
        menu.setEnabled(any(not current for *_, current in versions) and self.session.writer is not None)
        return menu

    def _context_menu(self, position) -> None:
        actions = self.row_actions(self.table.rowAt(position.y()))
        if actions:
            menu = QMenu(self.table)
            menu.setToolTipsVisible(True)  # what Remove label and Put back do (a trial never saw them)
            menu.addActions(actions)
            menu.exec(self.table.viewport().mapToGlobal(position))
            menu.deleteLater()  # and its actions with it: one menu a right-click
            for action in actions:  # a submenu's action belongs to its menu: the menu goes, and it with it
                (action.menu() or action).deleteLater()

    def sample_ids(self) -> list[int]:
        return [row.sample for row in self.rows]


#: Rows the "labeled" and "all" views list (a project of imported labels holds hundreds of them;
#: 500 rows took 84-156 ms of the main thread to fill, 200 about a third of it)
LISTED_AT_MOST = 200


def strategy_help(name: str) -> str:
    """"kcenter: the samples least like any labeled one…": what an order puts first."""
    try:
        from medlabeler.engine.active.strategies import STRATEGY_HELP
    except ImportError:
        return name
    text = STRATEGY_HELP.get(name)
    return f"{name}: {text} first" if text else name


def short_reason(reason: str) -> str:
    """The reason without its bracketed details and without the uncertainty the score column shows
    ("among the most uncertain, spread over them" for the cell; the tooltip has it all)."""
    return re.sub(r"^[a-z_ ]+ -?\d+\.\d+, ", "", re.sub(r" \([^()]*\)", "", reason))


def _strategies() -> list[str]:
    try:
        from medlabeler.engine.active.strategies import available_strategies

        names = list(available_strategies())
    except ImportError:
        names = []
    preferred = ["hybrid", "entropy", "margin", "least_confidence", "bald", "kcenter", "random"]
    return [n for n in preferred if n in names or n in ("entropy", "margin", "least_confidence", "bald")] + [
        n for n in names if n not in preferred and n != "cold-start"
    ]
