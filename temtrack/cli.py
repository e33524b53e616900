"""The ``temtrack`` command line: argument parsing and printing only.

Every verb calls the same pipeline functions as the GUI and the HyperSpy plugin. A user error
(:class:`temtrack.errors.TemtrackError`) is printed as one line on stderr with exit code 2; ``--debug``
shows the traceback. Ctrl-C exits with 130 and leaves no half-written output (outputs are staged and
renamed, see :mod:`temtrack.io.results`).
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from temtrack import __version__
from temtrack.errors import Cancelled, ParameterError, TemtrackError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


# -- argument helpers ----------------------------------------------------------------------------
def _floats(text: str, n: int | None = None, name: str = "value") -> list[float]:
    try:
        values = [float(v) for v in text.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{name}: expected comma-separated numbers, got {text!r}") from None
    if n is not None and len(values) != n:
        raise argparse.ArgumentTypeError(f"{name}: expected {n} comma-separated numbers, got {text!r}")
    return values


def _line(text):
    return _floats(text, 4, "--line X0,Y0,X1,Y1")


def _roi(text):
    return _floats(text, 4, "--roi X,Y,W,H")


def _probes(text):
    return _floats(text, None, "--probe-nm")


def _positive(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


def _positive_int(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return v


def _offset(text):
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds or 'auto', got {text!r}") from None


def _figure_formats(text):
    formats = [f.strip().lower().lstrip(".") for f in text.split(",") if f.strip()]
    bad = [f for f in formats if f not in ("png", "svg", "pdf")]
    if bad or not formats:
        raise argparse.ArgumentTypeError(f"--figure-formats: choose among png, svg, pdf, got {text!r}")
    return tuple(f for f in formats if f != "png")


def _key_value(text):
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--set expects KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return key.strip(), parsed


class _Parser(argparse.ArgumentParser):
    """argparse that exits with code 2 and a one-line message (its default is 2 as well)."""

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(EXIT_USER_ERROR, f"temtrack: error: {message}\n")


def _common_movie_args(p):
    p.add_argument("movie", help="movie file or folder (DM3/DM4, GMS In-Situ folder, .frms6/.hdr, EMD, SER/EMI, "
                                 "MRC, TIFF, AVI/MP4, image folder, .npy, .hspy/.zspy)")
    p.add_argument("--pixel-size", type=_positive, metavar="NM",
                   help="pixel size in nm (1/nm for diffraction) when the file lacks or misstates it")
    p.add_argument("--frame-interval", type=_positive, metavar="S", help="frame interval in s, replacing the file's")


def _run_args(p):
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="results folder (written atomically)")
    p.add_argument("--recipe", type=Path, metavar="FILE", help="JSON/YAML recipe (e.g. exported by the GUI); "
                                                               "options given here override it")
    p.add_argument("--set", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="set any recipe field (JSON value), e.g. --set drift_reference='\"mean\"'")
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty results folder")
    p.add_argument("--workers", type=_positive_int, metavar="N",
                   help="local threads (default: all cores); with --dask, a LocalCluster of N processes")
    p.add_argument("--scheduler", metavar="ADDR", help="run on a dask.distributed scheduler, e.g. tcp://host:8786")
    p.add_argument("--dask", action="store_true", help="run on a dask.distributed LocalCluster (see --workers)")
    p.add_argument("--memory-budget-mb", type=_positive, metavar="MB",
                   help="bound on the frames being processed and their working arrays, on all workers "
                        "together (default 1024); not counted: the program itself (~100 MB), the results "
                        "and the page cache of memory-mapped files")
    p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                   help="no progress bar (for batches)")
    p.add_argument("--figure-formats", type=_figure_formats, metavar="png,svg,pdf",
                   help="figure files: PNG always, plus SVG (default) and/or PDF, e.g. png,svg,pdf")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="temtrack", description="Quantitative analysis of in situ TEM movies.")
    parser.add_argument("--version", action="version", version=f"temtrack {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("info", help="format, shape, calibration and timing of a movie")
    _common_movie_args(p)
    p.add_argument("--json", action="store_true", help="print a JSON object")

    p = sub.add_parser("synth", help="write a synthetic movie with its ground truth")
    p.add_argument("kind", choices=["nanowire", "saed", "hrtem", "particles"])
    p.add_argument("out", type=Path, help="output .tif (the truth goes to <name>.truth.json beside it)")
    p.add_argument("--frames", type=_positive_int, help="number of frames")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=_positive_int, metavar="PX", help="frame size (square)")
    p.add_argument("--dose", type=_positive, help="electrons per pixel per frame")
    p.add_argument("--set", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="any other generator parameter (JSON value)")

    p = sub.add_parser("analyze", help="drift, kymograph, reaction front, diameters and kinetics of a nanowire movie")
    _common_movie_args(p)
    _run_args(p)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--line", type=_line, action="append", metavar="X0,Y0,X1,Y1",
                   help="wire axis in px, contact end first; repeat for several wires in the field")
    g.add_argument("--auto", action="store_true", help="find the wire axis and contact end automatically")
    p.add_argument("--width", type=_positive, metavar="PX",
                   help="approximate wire width (pristine diameter) in px; measured from the first frames when omitted")
    p.add_argument("--frames", metavar="A:B", help="frame range to analyse (stop exclusive)")
    p.add_argument("--drift-roi", type=_roi, metavar="X,Y,W,H", help="register drift on this region only (frame 0 px)")
    p.add_argument("--probe-nm", type=_probes, metavar="S1,S2", help="positions along the wire (nm from the contact) "
                                                                     "where diameter vs time is reported")
    p.add_argument("--prefactor", type=_positive, help="P in x^2 = P D (t - t0) (default 2)")
    p.add_argument("--no-drift", action="store_true", help="skip drift correction")
    p.add_argument("--stimulus-log", type=Path, metavar="LOG",
                   help="potentiostat or biasing-holder CSV (time + current and/or voltage columns), a Protochips "
                        "log or a DENSsolutions heater log")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--log-offset", type=_offset, metavar="S|auto",
                   help="clock offset: log time = movie time + S; 'auto' matches the front's onset (kinetics t0) "
                        "to the first step in the log's current (or voltage, temperature)")
    g.add_argument("--log-event-s", type=float, metavar="T",
                   help="movie time (s) of an event seen in the movie (bias on, contact); the log's largest step "
                        "gives the clock offset")
    p.add_argument("--log-event-channel", choices=["auto", "current", "voltage", "temperature", "note"],
                   help="log channel the event is found in (default auto: current, else voltage, else temperature; "
                        "'note': the first note of a Protochips log)")
    p.add_argument("--log-holder-channel", metavar="NAME",
                   help="Protochips holder channel to read (A, B); default the one that carried a current")

    p = sub.add_parser("rings", help="diffraction ring evolution, d-spacings, phase fractions and onsets (SAED movies)")
    _common_movie_args(p)
    _run_args(p)
    p.add_argument("--phases", metavar="A,B,...", help="library phases to fit, e.g. beta-Sn,amorphous-NaxSn,Na15Sn4")
    p.add_argument("--calibration", metavar="SPEC",
                   help="q calibration: a number (1/nm per px), 'camera_length_mm=..,voltage_kv=..,detector_pixel_um=..', "
                        "or 'ring=PHASE:D_A' (a known ring of the pristine phase)")
    p.add_argument("--library", type=Path, metavar="FILE", help="extra phases (YAML/CSV/CIF)")

    p = sub.add_parser("fft", help="FFT of an image ROI over time: fringe spacings, angles, crystalline fraction")
    _common_movie_args(p)
    _run_args(p)
    p.add_argument("--roi", type=_roi, metavar="X,Y,W,H", help="region in px (default: a central square)")

    p = sub.add_parser("particles", help="segment and track every particle: area, expansion, onset, cracking, core")
    _common_movie_args(p)
    _run_args(p)
    p.add_argument("--polarity", choices=["dark", "bright"], help="particles darker (bright field) or brighter")

    p = sub.add_parser("stats", help="pool results of many objects and movies: D, k, n, expansion statistics")
    p.add_argument("results", nargs="+", type=Path, metavar="RESULTS", help="results folders or results.json files")
    p.add_argument("--out", required=True, type=Path, metavar="DIR")
    p.add_argument("--overwrite", action="store_true")

    p = sub.add_parser("export-video", help="annotated MP4/GIF: scale bar, time stamp, drift-corrected, overlays")
    _common_movie_args(p)
    p.add_argument("out", type=Path, help="output .mp4 (H.264) or .gif")
    p.add_argument("--results", type=Path, metavar="DIR", help="an analyze results folder: overlays (wire, front, "
                                                                 "probes) and its drift")
    p.add_argument("--aligned", action="store_true", help="drift-correct (using --results' drift, else estimated)")
    p.add_argument("--fps", type=_positive, help="output frame rate (default: real time, 2-30 fps)")
    p.add_argument("--frames", metavar="A:B", help="frame range, e.g. 10:200")
    p.add_argument("--crop", type=_roi, metavar="X,Y,W,H", help="region in px")
    p.add_argument("--contrast", type=lambda t: _floats(t, 2, "--contrast LO,HI"), metavar="LO,HI",
                   help="display limits in counts (default: 0.5-99.5 percentiles)")
    p.add_argument("--trace", choices=["auto", "current", "voltage", "temperature", "none"], default="auto",
                   help="strip chart of the log under the movie, with a moving cursor (needs --results of an analyze "
                        "run with --stimulus-log; default auto: current, else voltage, else temperature)")
    p.add_argument("--no-scale-bar", action="store_true")
    p.add_argument("--no-timestamp", action="store_true")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")

    p = sub.add_parser("report", help="one self-contained HTML page from a results folder")
    p.add_argument("results", type=Path, metavar="DIR", help="results folder of analyze, rings or fft")
    p.add_argument("--out", type=Path, metavar="FILE", help="output HTML (default DIR/report.html)")

    p = sub.add_parser("batch", help="run one recipe over many movies (continues past bad ones, resumable)")
    p.add_argument("recipe", type=Path, help="recipe file (JSON/YAML with a 'kind': analyze, rings or fft)")
    p.add_argument("movies", nargs="+", help="movie files or folders")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="one results folder per movie + summary.csv")
    p.add_argument("--workers", type=_positive_int, metavar="N", help="local threads per movie")

    p = sub.add_parser("gui", help="open the desktop application")
    p.add_argument("movie", nargs="?", help="movie to open")
    return parser


# -- progress ------------------------------------------------------------------------------------
class _Progress:
    """tqdm bar fed by ``progress(done, total)`` callbacks."""

    def __init__(self, quiet: bool, desc: str):
        self.quiet, self.desc, self.bar = quiet, desc, None

    def __call__(self, done: int, total: int):
        if self.quiet:
            return
        if self.bar is None:
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=self.desc, unit="frame", file=sys.stderr, dynamic_ncols=True)
        if self.bar.total != total:
            self.bar.total = total
        self.bar.n = done
        self.bar.refresh()

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _open(args):
    from temtrack.io import open_movie
    return open_movie(args.movie, pixel_size=args.pixel_size, frame_interval_s=args.frame_interval)


def _executor(args):
    if args.scheduler or args.dask:
        from temtrack.pipeline.executor import DaskExecutor
        return DaskExecutor(scheduler=args.scheduler, workers=args.workers)
    from temtrack.pipeline.executor import LocalExecutor
    return LocalExecutor(args.workers)


def _recipe(cls, args, options: dict, flags: dict | None = None):
    """The recipe file (or defaults) with command-line options on top.

    ``options`` holds option values where None means "not given"; ``flags`` values always apply.
    """
    recipe = cls.from_file(args.recipe) if args.recipe else cls()
    overrides = {k: v for k, v in options.items() if v is not None}
    overrides.update(flags or {})
    overrides.update(dict(args.set))
    if args.memory_budget_mb is not None:
        overrides["memory_budget_mb"] = args.memory_budget_mb
    if overrides:
        data = recipe.to_dict()
        data.update(overrides)
        recipe = cls.from_dict(data, source="command line")
    return recipe


def _run_pipeline(args, run, write, recipe, desc):
    from temtrack.io.results import OutputFolder
    OutputFolder(args.out, overwrite=args.overwrite)  # refuse an existing --out before any work
    movie = _open(args)
    cancel = threading.Event()
    progress = _Progress(args.quiet, desc)
    executor = _executor(args)
    try:
        result = run(movie, recipe, executor=executor, progress=progress, cancel=cancel)
    finally:
        progress.close()
        close = getattr(executor, "close", None)
        if close:
            close()
    from temtrack.io.results import figure_formats
    with figure_formats(args.figure_formats):
        out = write(result, args.out, overwrite=args.overwrite)
    return result, out


def _print_problems(result):
    for w in getattr(result, "warnings", None) or getattr(result, "problems", None) or []:
        print(f"warning: {w}", file=sys.stderr)


# -- verbs ---------------------------------------------------------------------------------------
def cmd_info(args) -> int:
    movie = _open(args)
    info = movie.summary()
    if args.json:
        from temtrack.io.results import to_jsonable
        print(json.dumps(to_jsonable(info), indent=2))
        return 0
    unit = info["pixel_unit"] or "px (uncalibrated)"
    rows = [
        ("file", info["path"]), ("format", info["format"]),
        ("frames", info["n_frames"]), ("frame shape", f"{info['frame_shape'][0]} x {info['frame_shape'][1]} px"),
        ("dtype", info["dtype"]),
        ("pixel size", f"{info['pixel_size']:.6g} {unit}" if info["pixel_size"] else unit),
        ("frame interval", f"{info['frame_interval_s']:.6g} s" if info["frame_interval_s"] else "unknown"),
        ("duration", f"{info['duration_s']:.6g} s" if info["duration_s"] is not None else "unknown"),
        ("timestamps", {True: "uniform", False: "non-uniform", None: "none"}[info["times_uniform"]]
         + f" ({info['time_source']})"),
        ("size on disk", _human_bytes(info["size_on_disk_bytes"])),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    for p in info["problems"]:
        print(f"{'problem':<{width}}  {p}")
    return 0


def _human_bytes(n):
    if n is None:
        return "unknown"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000


def cmd_synth(args) -> int:
    kw = dict(args.set)
    if args.frames:
        kw["n_frames"] = args.frames
    if args.size:
        kw["shape"] = (args.size, args.size)
    if args.dose:
        kw["dose"] = args.dose
    kw["seed"] = args.seed
    if args.kind == "nanowire":
        from temtrack.synthetic.nanowire import write_nanowire_movie as write
    elif args.kind == "particles":
        from temtrack.synthetic.particles import write_particles_movie as write
    elif args.kind == "saed":
        from temtrack.synthetic.saed import write_saed_movie as write
    else:
        from temtrack.synthetic.hrtem import write_hrtem_movie as write
    try:
        movie_path, truth_path = write(args.out, **kw)
    except TypeError as exc:
        raise ParameterError(f"synth {args.kind}: {exc}") from None
    print(f"wrote {movie_path}\ntruth {truth_path}")
    return 0


def cmd_analyze(args) -> int:
    from temtrack.pipeline.analyze import AnalyzeRecipe, analyze, write_analyze_results
    options = {"line": args.line[0] if args.line else None, "width_px": args.width, "probes_nm": args.probe_nm,
               "prefactor": args.prefactor, "pixel_size_nm": args.pixel_size,
               "frame_interval_s": args.frame_interval, "drift_roi": args.drift_roi,
               "stimulus_log": str(args.stimulus_log) if args.stimulus_log else None,
               "stimulus_offset_s": args.log_offset, "stimulus_event_s": args.log_event_s,
               "stimulus_channel": args.log_event_channel, "stimulus_log_channel": args.log_holder_channel}
    if args.frames:
        options["frames"] = _frames_option(args.frames)
    flags = {}
    if args.auto:
        flags.update(auto=True, line=None)
    if args.line:
        flags.update(auto=False, more_lines=args.line[1:])
    if args.no_drift:
        flags["drift"] = False
    recipe = _recipe(AnalyzeRecipe, args, options, flags)
    if recipe.line is None and not recipe.auto:
        raise ParameterError("analyze needs the wire: give --line X0,Y0,X1,Y1 (contact end first) or --auto")
    result, out = _run_pipeline(args, analyze, write_analyze_results, recipe, "analyze")
    _print_problems(result)
    k = result.to_json().get("kinetics") or {}
    if k.get("D_nm2_per_s") is not None:
        ci = (k.get("ci95") or {}).get("D_nm2_per_s") or [None, None]
        ci_txt = f" (95% CI {ci[0]:.4g}-{ci[1]:.4g})" if None not in ci else ""
        print(f"kinetics: {k.get('model')}  D = {k['D_nm2_per_s']:.4g} nm^2/s = {k['D_cm2_per_s']:.3g} cm^2/s{ci_txt}")
    print(f"results written to {out}")
    return 0


def cmd_rings(args) -> int:
    from temtrack.pipeline.rings import RingsRecipe, run_rings, write_rings_results
    overrides = {}
    if args.phases:
        overrides["phases"] = [p.strip() for p in args.phases.split(",") if p.strip()]
    if args.library:
        overrides["library_file"] = str(args.library)
    if args.calibration:
        overrides.update(_parse_calibration(args.calibration))
    if args.pixel_size:
        overrides["pixel_size_inv_nm"] = args.pixel_size
    recipe = _recipe(RingsRecipe, args, overrides)
    result, out = _run_pipeline(args, run_rings, write_rings_results, recipe, "rings")
    _print_problems(result)
    onsets = result.to_json().get("onsets_s") or {}
    for name, t in onsets.items():
        print(f"onset {name}: {'never' if t is None else f'{t:.4g} s'}")
    print(f"results written to {out}")
    return 0


def _parse_calibration(spec: str) -> dict:
    spec = spec.strip()
    try:
        return {"pixel_size_inv_nm": float(spec)}
    except ValueError:
        pass
    if spec.startswith("ring="):
        phase, _, d = spec[5:].partition(":")
        try:
            return {"calibration_ring": {"phase": phase, "d_A": float(d)}}
        except ValueError:
            raise ParameterError(f"--calibration ring=PHASE:D_A expects a d-spacing in A, got {spec!r}") from None
    out = {}
    for part in spec.split(","):
        key, _, value = part.partition("=")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            raise ParameterError(f"--calibration: cannot read {part!r}; expected a number, "
                                 "'camera_length_mm=..,voltage_kv=..,detector_pixel_um=..' or 'ring=PHASE:D_A'") from None
    return out


def cmd_fft(args) -> int:
    from temtrack.pipeline.fft import FFTRecipe, run_fft, write_fft_results
    recipe = _recipe(FFTRecipe, args, {"roi": args.roi})
    result, out = _run_pipeline(args, run_fft, write_fft_results, recipe, "fft")
    _print_problems(result)
    print(f"results written to {out}")
    return 0


def _frame_range(text: str | None, n: int) -> range | None:
    if not text:
        return None
    a, sep, b = text.partition(":")
    try:
        start = int(a) if a else 0
        stop = int(b) if b else n
    except ValueError:
        raise ParameterError(f"--frames expects A:B (whole numbers), got {text!r}") from None
    if not sep or not (0 <= start < stop <= n):
        raise ParameterError(f"--frames {text!r} is not a range inside 0:{n}")
    return range(start, stop)


def _frames_option(text: str) -> list[int]:
    """``A:B`` -> [A, B] for a recipe's ``frames`` (both ends required: the movie is not open yet)."""
    a, sep, b = text.partition(":")
    try:
        return [int(a), int(b)]
    except ValueError:
        raise ParameterError(f"--frames expects A:B with whole numbers, got {text!r}") from None


def cmd_export_video(args) -> int:
    from temtrack.export.annotated_video import Overlay, Trace, export_video
    if args.out.exists() and not args.overwrite:
        raise TemtrackError(f"{args.out}: exists (use --overwrite)")
    movie = _open(args)
    results = None
    if args.results:
        from temtrack.pipeline.recipe import read_json_file
        results = read_json_file(args.results / "results.json")
    overlay = Overlay.from_results(results) if results else None
    trace = Trace.from_results(results, args.trace) if results and args.trace != "none" else None
    if args.trace not in ("auto", "none") and not results:
        raise ParameterError(f"--trace {args.trace} needs --results DIR of an analyze run with a stimulus log")
    if args.aligned:
        from temtrack.series.drift import DriftResult, aligned_movie, estimate_drift
        drift_json = (results or {}).get("drift") or {}
        if drift_json.get("dy_px"):
            drift = DriftResult.from_json(drift_json)
        else:
            drift = estimate_drift(movie, progress=_Progress(args.quiet, "drift"))
        movie = aligned_movie(movie, drift, crop=False)
    progress = _Progress(args.quiet, "export")
    try:
        out = export_video(movie, args.out, fps=args.fps, frames=_frame_range(args.frames, movie.n_frames),
                           crop=args.crop, contrast=args.contrast, scale_bar=not args.no_scale_bar,
                           timestamp=not args.no_timestamp, overlay=overlay, overlay_on_raw=not args.aligned,
                           trace=trace, progress=progress)
    finally:
        progress.close()
    print(f"movie written to {out}")
    return 0


def cmd_report(args) -> int:
    from temtrack.export.report import write_report
    print(f"report written to {write_report(args.results, args.out)}")
    return 0


def cmd_batch(args) -> int:
    from temtrack.pipeline.batch import run_batch
    from temtrack.pipeline.executor import LocalExecutor
    from temtrack.pipeline.registry import load_recipe
    recipe = load_recipe(args.recipe)
    progress = _Progress(args.quiet, "batch")

    def report(row):
        if not args.quiet:
            msg = f" ({row['message']})" if row["message"] else ""
            print(f"{row['status']:<16} {row['movie']}{msg}", file=sys.stderr)

    try:
        summary = run_batch(recipe, args.movies, args.out, executor=LocalExecutor(args.workers),
                            progress=progress, on_movie=report)
    finally:
        progress.close()
    print(f"{len(summary.rows)} movies, {summary.n_failed} failed; summary in {args.out / 'summary.csv'}")
    return 1 if summary.n_failed else 0


def cmd_particles(args) -> int:
    from temtrack.pipeline.particles import ParticlesRecipe, run_particles, write_particles_results
    recipe = _recipe(ParticlesRecipe, args, {"polarity": args.polarity, "pixel_size_nm": args.pixel_size,
                                             "frame_interval_s": args.frame_interval})
    result, out = _run_pipeline(args, run_particles, write_particles_results, recipe, "particles")
    _print_problems(result)
    print(f"{result.n_particles} particles, {int(result.cracked.sum())} cracked; results written to {out}")
    return 0


def cmd_stats(args) -> int:
    from temtrack.stats import run_stats
    table = run_stats(args.results, args.out, overwrite=args.overwrite)
    for group, quantities in table.summary().items():
        if not isinstance(quantities, dict):
            continue
        for name, st in quantities.items():
            if isinstance(st, dict) and st.get("count"):
                std = "–" if st.get("std") is None else f"{st['std']:.3g}"
                print(f"{group:<9} {name:<18} n={st['count']:<4} median={st['median']:.4g} "
                      f"mean={st['mean']:.4g} std={std}")
    print(f"statistics written to {args.out}")
    return 0


def cmd_gui(args) -> int:
    try:
        from temtrack_gui.app import main as gui_main
    except ImportError as exc:
        raise TemtrackError(f"the GUI needs PySide6 and pyqtgraph: pip install 'temtrack[gui]' ({exc})") from None
    return int(gui_main([args.movie] if args.movie else []) or 0)


VERBS = {"info": cmd_info, "synth": cmd_synth, "analyze": cmd_analyze, "rings": cmd_rings, "fft": cmd_fft,
         "batch": cmd_batch, "export-video": cmd_export_video, "report": cmd_report,
         "particles": cmd_particles, "stats": cmd_stats, "gui": cmd_gui}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # SIGTERM behaves like Ctrl-C so staged outputs are cleaned up the same way.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return VERBS[args.verb](args)
    except (KeyboardInterrupt, Cancelled):
        print("temtrack: interrupted; no partial results were written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except TemtrackError as exc:
        if args.debug:
            raise
        print(f"temtrack: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as exc:  # noqa: BLE001 - last line of defence: one line, not a traceback
        if args.debug:
            raise
        print(f"temtrack: internal error: {type(exc).__name__}: {exc} (rerun with --debug and report it)",
              file=sys.stderr)
        return 1


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
