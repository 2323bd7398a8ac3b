"""A medlabeler active-learning strategy plugin: diverse mini-batch margin sampling."""

from medlabeler_diverse_margin.strategy import diverse_margin

__all__ = ["diverse_margin"]
