"""Read AVI/MP4 (any container ffmpeg decodes) as a lazy, uncalibrated luminance movie.

imageio's ffmpeg plugin decodes; the code here makes that a movie:

* an exact frame count: the container's nominal count is often missing or wrong, so ffmpeg counts
  the packets of the video stream (no decoding), trusted when they agree with duration x fps,
  else the whole stream is decoded once to count;
* frames decoded only when asked for, with a small cache (going back or jumping far means ffmpeg
  seeks to the previous key frame and decodes from there, so neighbouring reads stay cheap);
* RGB turned into float32 luminance, frame times from the container's frame rate.

Videos are lossy and carry no calibration; both are reported in ``problems``.
"""
from __future__ import annotations

import functools
import math
import os
import re
import subprocess
from pathlib import Path

import numpy as np

from temtrack.errors import MovieReadError
from temtrack.io.lazy import LUMINANCE_PROBLEM, LazyFrames, rgb_to_luminance
from temtrack.io.movie import Movie


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _count_packets(path: Path) -> int | None:
    """Frames in the first video stream by copying its packets to nowhere (no decoding: about
    30x faster than ``count_frames``); None when ffmpeg cannot tell."""
    try:
        import imageio_ffmpeg

        out = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-hide_banner", "-i", str(path),
                              "-map", "0:v:0", "-c", "copy", "-f", "null", "-"],
                             capture_output=True, timeout=600, check=False)
    except (OSError, subprocess.SubprocessError, ImportError, RuntimeError):
        return None
    counts = re.findall(rb"frame=\s*(\d+)", out.stderr)
    return int(counts[-1]) if out.returncode == 0 and counts else None


class _VideoSource:
    """One open ffmpeg reader, reopened on demand (it is not picklable nor safe to share unlocked:
    :class:`LazyFrames` serialises the calls)."""

    def __init__(self, path: Path):
        self.path = path
        self._reader = None

    def _open(self):
        import imageio.v2 as iio

        if self._reader is None:
            self._reader = iio.get_reader(self.path, format="FFMPEG")
        return self._reader

    def frame(self, index: int) -> np.ndarray:
        try:
            data = np.asarray(self._open().get_data(index))
        except (IndexError, RuntimeError, OSError) as exc:
            self.close()
            raise MovieReadError(self.path, f"cannot decode frame {index} ({_one_line(exc)})") from exc
        if data.ndim == 3 and data.shape[-1] in (3, 4):
            return rgb_to_luminance(data)
        if data.ndim == 3 and data.shape[-1] == 1:
            data = data[..., 0]
        return data.astype(np.float32)

    def close(self):
        if self._reader is not None:
            try:
                self._reader.close()
            except Exception:  # a half-dead ffmpeg pipe: nothing more to release
                pass
            self._reader = None

    def __del__(self):
        self.close()


def read_video(path: str | os.PathLike) -> Movie:
    """Read a video file (AVI, MP4, ...) lazily as float32 luminance frames.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    Movie
        ``format='video'``, uncalibrated (``pixel_size`` None), times ``arange(n) / fps`` with
        ``time_source='axis'`` when the container states a frame rate.

    Raises
    ------
    MovieReadError
        Not a decodable video, or a video with no frames.
    """
    import imageio.v2 as iio

    path = Path(path)
    if not path.is_file():
        raise MovieReadError(path, "file not found" if not path.exists() else "not a file")
    try:
        reader = iio.get_reader(path, format="FFMPEG")
        try:
            meta = dict(reader.get_meta_data())
            n = _count_packets(path)
            fps, duration = meta.get("fps"), meta.get("duration")
            # Packets can outnumber decoded frames (edit lists): trust the count only when it
            # agrees with the container's duration; otherwise decode the stream to count.
            if n is None or not fps or not duration or abs(n - float(fps) * float(duration)) > 1.01:
                n = int(reader.count_frames())
            first = np.asarray(reader.get_data(0)) if n > 0 else None
        finally:
            reader.close()
    except IndexError:
        raise MovieReadError(path, "the video holds no frames (empty movie)") from None
    except Exception as exc:  # imageio/ffmpeg raise OSError, RuntimeError, ValueError on bad files
        raise MovieReadError(path, f"not a readable video ({type(exc).__name__}: {_one_line(exc)})") from exc
    if n <= 0 or first is None:
        raise MovieReadError(path, "the video holds no frames (empty movie)")
    rows, cols = int(first.shape[0]), int(first.shape[1])
    source = _VideoSource(path)
    frames = LazyFrames(n, (rows, cols), np.float32, source.frame, cache_frames=16)
    fps = meta.get("fps")
    problems = ["no spatial calibration: pixel size unknown (give --pixel-size)",
                "lossy video: pixel values are approximate"]
    if first.ndim == 3 and first.shape[-1] in (3, 4):
        problems.append(LUMINANCE_PROBLEM)
    if fps is not None and math.isfinite(float(fps)) and float(fps) > 0:
        times_s = np.arange(n, dtype=np.float64) / float(fps)
        time_source = "axis"
        problems.append(f"frame times from the container's nominal rate ({float(fps):g} fps)")
    else:
        times_s, time_source = None, "none"
        problems.append("no frame timing (give --frame-interval)")
    original = {k: (v if isinstance(v, (str, int, bool)) or v is None
                    else (float(v) if math.isfinite(v) else None) if isinstance(v, float) else str(v))
                for k, v in meta.items() if k != "ffmpeg_version"}
    original["n_frames_decoded"] = n
    return Movie(frames, times_s, None, None, path, "video", original, problems, time_source,
                 reopen=functools.partial(read_video, path))
