"""HyperSpy front end: temtrack's analyses as methods of HyperSpy signals.

HyperSpy finds the signal classes through ``temtrack/hyperspy_extension.yaml`` (entry point group
``hyperspy.extensions``); ``s.set_signal_type("in_situ_movie")`` or ``"in_situ_diffraction"`` turns
any (time | x, y) signal into :class:`~temtrack.hyperspy.signals.InSituMovie` or
:class:`~temtrack.hyperspy.signals.InSituDiffractionMovie`. The methods are thin shells over the
same pipelines the CLI runs (``temtrack.pipeline``, ``temtrack.series``); nothing is computed here.

This package imports HyperSpy only when a conversion or a signal class is used, and ``import
temtrack`` never imports this package.
"""
from temtrack.hyperspy.convert import load, movie_to_signal, signal_to_movie

__all__ = ["load", "movie_to_signal", "signal_to_movie"]
