"""medlabeler: label a few medical images while the model learns from all of them.

Importing this package stays light: no torch, no Qt. Heavy parts load on first use.
"""

__version__ = "0.1.0"
