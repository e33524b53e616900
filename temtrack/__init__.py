"""temtrack: quantitative analysis of in situ TEM movies of battery electrodes.

Importing this package stays light: it imports neither Qt, nor HyperSpy, nor matplotlib.pyplot.

>>> import temtrack
>>> movie = temtrack.open_movie("sample_movies/nanowire_sodiation.tif")   # doctest: +SKIP
"""
from __future__ import annotations

__version__ = "0.1.0"

from temtrack.errors import (AnalysisError, Cancelled, MovieReadError, ParameterError,  # noqa: F401
                             TemtrackError)
from temtrack.io.movie import Movie, movie_from_array  # noqa: F401


def open_movie(path, **kwargs):
    """Open any supported movie lazily; see :func:`temtrack.io.open_movie`."""
    from temtrack.io import open_movie as _open
    return _open(path, **kwargs)
