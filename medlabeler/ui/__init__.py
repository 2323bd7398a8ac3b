"""The napari/Qt half of medlabeler: the only package that imports Qt.

``workers`` runs engine generators on threads, ``layers`` maps the store to napari layers,
``session`` holds one viewer's state, ``widgets`` are the dock widgets, ``app`` starts it all.
"""
