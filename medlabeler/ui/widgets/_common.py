"""Small pieces the dock widgets share."""

from __future__ import annotations

import inspect
import weakref

from qtpy.QtCore import QObject
from qtpy.QtWidgets import QComboBox, QLabel, QWidget


def session_for(viewer):
    from medlabeler.ui.session import get_session

    return get_session(viewer)


class _PanelWatcher(QObject):
    """Tells the session when its panel leaves the viewer: napari's × on a dock takes the widget
    out of the window (its parent becomes None) and leaves the object alive."""

    def __init__(self, widget: QWidget, session):
        super().__init__(widget)
        self._session = weakref.ref(session)

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt name
        from qtpy.QtCore import QEvent, QTimer

        if event.type() == QEvent.Type.ParentChange and watched.parent() is None:
            session = self._session()
            if session is not None:  # once napari has forgotten the dock, not while it removes it
                QTimer.singleShot(0, session.close_if_no_panel)
        return False


def scrolled(panel: QWidget) -> QWidget:
    """``panel``, docked on its own (the Plugins menu's Project, Label, ... entries), with what it
    holds in a page that scrolls: napari's dock asks for a panel's whole height, and a trial's
    Project panel (692 px) pushed the window past a 768 px screen, then drew over the panel below.
    The panel stays the widget docked (its attributes, its watcher of the ×)."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QFrame, QScrollArea, QVBoxLayout

    page = QWidget()
    page.setLayout(panel.layout())  # the panel's widgets move with their layout
    area = QScrollArea()
    area.setWidget(page)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    outer = QVBoxLayout(panel)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(area)
    leave_keys_to_the_canvas(area)
    return panel


def close_with_the_panel(widget: QWidget) -> None:
    """Closing the last medlabeler panel (the dock's ×) saves and closes the project, as closing
    the window does: learning never goes on in a window that shows none of it."""
    widget.installEventFilter(_PanelWatcher(widget, widget.session))


def leave_keys_to_the_canvas(root: QWidget) -> None:
    """Buttons, combo boxes, check boxes, sliders, tables, tab bars and scrolled pages under ``root`` take no
    keyboard focus: a click on one leaves the focus where it was (the canvas), so the labeling
    keys (digits, s, n, u) keep working. A combo box that kept the focus took the next digit as a
    choice of its own. Text and number fields still take focus: they are typed into. The wheel
    scrolls the page (`leave_the_wheel_to_the_page`)."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QAbstractButton, QAbstractItemView, QAbstractSlider, QScrollArea, QTabBar

    def in_a_combo(widget: QWidget) -> bool:  # a combo's own popup list keeps its keys
        parent = widget.parent()
        while parent is not None and parent is not root:
            if isinstance(parent, QComboBox):
                return True
            parent = parent.parent()
        return False

    for kind in (QAbstractButton, QComboBox, QAbstractSlider, QAbstractItemView, QTabBar, QScrollArea):
        for child in root.findChildren(kind):
            if not in_a_combo(child):
                child.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    leave_the_wheel_to_the_page(root)


_WHEEL_TO_THE_PAGE = "medlabeler_wheel_to_the_page"


class _WheelToThePage(QObject):
    """Passes a wheel event over a number field or a combo box on to the page that scrolls, unless
    the field has the keyboard focus (clicked to be edited)."""

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt name
        from qtpy.QtCore import QEvent

        if event.type() == QEvent.Type.Wheel and not watched.hasFocus():
            event.ignore()  # Qt offers an ignored wheel event to the parents: the page scrolls
            return True
        return False


def leave_the_wheel_to_the_page(root: QWidget) -> None:
    """The mouse wheel over the dock scrolls its page; it no longer turns the number field or
    combo box that happens to pass under the pointer (scrolling down the Train tab set the batch
    size from 8 to 1 without a sign). A field takes the wheel once clicked into, as in a browser."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QAbstractSpinBox

    wheel = _WheelToThePage(root)
    for field in root.findChildren(QAbstractSpinBox) + root.findChildren(QComboBox):
        if field.property(_WHEEL_TO_THE_PAGE):  # a part's own call and the whole dock's: once is enough
            continue
        field.setProperty(_WHEEL_TO_THE_PAGE, True)
        if isinstance(field, QAbstractSpinBox):
            field.setFocusPolicy(Qt.FocusPolicy.StrongFocus)  # a wheel does not give it the focus
        field.installEventFilter(wheel)


def hint(text: str) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setStyleSheet("color: gray;")
    return label


def _alive(widget: QWidget) -> bool:
    try:
        widget.objectName()
    except RuntimeError:  # its C++ object was deleted
        return False
    return True


#: How long a ``later`` connection waits: any delay makes it a timer event, which Qt dispatches
#: after the events already posted (the canvas repaint of a newly opened slice), not before.
LATER_MS = 1


def connect(widget: QWidget, signal, slot, *, later: bool = False) -> None:
    """Connect a session signal (or a tuple of them) to ``slot`` for as long as ``widget`` lives.

    The session outlives its widgets (a dock can be closed and opened again), so the connection
    holds the widget weakly and goes quiet once the widget is gone. ``later``: run the slot on a
    coming turn of the event loop, once for a burst of signals (with the last one's arguments),
    so that work the signal's sender does right then (opening the next sample) and this widget's
    update do not stall the window as one piece. A tuple of signals shares the one call: a save
    and the open that follows emit three, which had refreshed the queue three times.
    """
    from qtpy.QtCore import QTimer

    ref = weakref.ref(widget)
    method = weakref.WeakMethod(slot) if inspect.ismethod(slot) else None
    pending: list = []  # the arguments of the call waiting for the event loop

    def call(*args):
        target = ref()
        fn = method() if method is not None else slot
        if target is None or fn is None or not _alive(target):
            return
        fn(*args)

    def call_later(*args):
        target = ref()
        if target is None or not _alive(target):
            return
        if not pending:  # a real timer, not a posted event: the repaint the sender asked for goes first
            QTimer.singleShot(LATER_MS, target, lambda: call(*pending.pop()))  # the widget as context
        else:
            pending.clear()
        pending.append(args)

    for one in signal if isinstance(signal, tuple) else (signal,):
        one.connect(call_later if later else call)


def sample_text(sample, project=None) -> str:
    """Where a sample is, without its file path (paths may carry patient names): "sample 12 (scan 3,
    slice 40, train)" (slices from 0, like napari's slider; the scan in a project of several)."""
    if sample is None:
        return "no sample open"
    if sample.slice_index is None:
        return f"sample {sample.id} ({sample.split})"
    from medlabeler.ui import engine_calls as calls

    return f"sample {sample.id} ({calls.where(sample, project)}, {sample.split})"


class CompactCombo(QComboBox):
    """A combo box that may shrink to ``chars`` characters whatever its items, and grows with
    the room it gets: by default Qt sizes a combo to its longest item, and one long method name
    made the dock's pages wider than the dock. The box clips a longer text, so its tooltip shows
    the whole choice (or ``tip``, an explanation of every choice), and the open list is as wide as
    its longest item. (A subclass, so that its slots are methods: Qt disconnects them when the
    combo goes, where a closure could still be called while the application shuts down.)"""

    def __init__(self, chars: int = 14, tip: str = "", parent: QWidget | None = None):
        from qtpy.QtWidgets import QSizePolicy

        super().__init__(parent)
        self._tip = tip
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(chars)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, self.sizePolicy().verticalPolicy())
        model = self.model()
        for signal in (model.rowsInserted, model.modelReset, model.dataChanged, self.currentIndexChanged):
            signal.connect(self._fit)

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt name
        """Qt's own painting, with a text longer than the box cut with an ellipsis (Qt cuts it
        mid-letter: "recommended (FixMatcl")."""
        from qtpy.QtCore import Qt
        from qtpy.QtWidgets import QStyle, QStyleOptionComboBox, QStylePainter

        painter = QStylePainter(self)
        option = QStyleOptionComboBox()
        self.initStyleOption(option)
        field = self.style().subControlRect(QStyle.ComplexControl.CC_ComboBox, option,
                                            QStyle.SubControl.SC_ComboBoxEditField, self)
        option.currentText = self.fontMetrics().elidedText(option.currentText, Qt.TextElideMode.ElideRight,
                                                           max(field.width(), 0))
        painter.drawComplexControl(QStyle.ComplexControl.CC_ComboBox, option)
        painter.drawControl(QStyle.ControlElement.CE_ComboBoxLabel, option)

    def _fit(self, *_args) -> None:
        view = self.view()
        metrics = view.fontMetrics()
        longest = max((metrics.horizontalAdvance(self.itemText(i)) for i in range(self.count())), default=0)
        view.setMinimumWidth(longest + 2 * view.frameWidth() + 24)  # margins and a scroll bar
        self.setToolTip(self._tip or self.currentText())

