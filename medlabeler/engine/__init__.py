"""The engine: reading, storing, learning and scoring. Never imports Qt or napari."""
