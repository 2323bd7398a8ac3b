"""Reading medical images: DICOM (files, multi-frame, series folders), NIfTI, PNG/JPEG/TIFF/BMP.

    from medlabeler.engine.io import read_image, scan_sources, SourceInfo

Format libraries load on first use, so importing this package stays cheap.
"""

from medlabeler.engine.io.image import Image
from medlabeler.engine.io.reader import read_image
from medlabeler.engine.io.sources import SourceInfo, scan_sources

__all__ = ["Image", "SourceInfo", "read_image", "scan_sources"]
