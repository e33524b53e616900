"""The pipelines by name, so batch runs, recipes and front ends find them without a chain of ifs.

Each entry names a module with a Recipe subclass, a run function ``run(movie, recipe, *, executor,
progress, cancel) -> result`` and a writer ``write(result, out_dir, *, overwrite) -> Path``. The modules
are imported on first use: ``import temtrack`` stays light.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from temtrack.errors import ParameterError


@dataclass(frozen=True)
class PipelineSpec:
    module: str
    recipe: str
    run: str
    write: str

    def load(self) -> tuple[type, Callable, Callable]:
        mod = importlib.import_module(self.module)
        return getattr(mod, self.recipe), getattr(mod, self.run), getattr(mod, self.write)


PIPELINES: dict[str, PipelineSpec] = {
    "analyze": PipelineSpec("temtrack.pipeline.analyze", "AnalyzeRecipe", "analyze", "write_analyze_results"),
    "rings": PipelineSpec("temtrack.pipeline.rings", "RingsRecipe", "run_rings", "write_rings_results"),
    "fft": PipelineSpec("temtrack.pipeline.fft", "FFTRecipe", "run_fft", "write_fft_results"),
    "particles": PipelineSpec("temtrack.pipeline.particles", "ParticlesRecipe", "run_particles",
                              "write_particles_results"),
}


def get_pipeline(kind: str) -> tuple[type, Callable, Callable]:
    """(Recipe class, run, write) of the pipeline called ``kind``."""
    try:
        spec = PIPELINES[kind]
    except KeyError:
        raise ParameterError(f"unknown pipeline {kind!r}; expected one of {sorted(PIPELINES)}") from None
    return spec.load()


def load_recipe(path) -> Any:
    """Read a recipe file of any pipeline (its ``kind`` key says which)."""
    from temtrack.pipeline.recipe import read_recipe_mapping

    data = read_recipe_mapping(path)
    if "kind" not in data:
        raise ParameterError(f"{path}: a recipe file needs a 'kind' key ({', '.join(sorted(PIPELINES))})")
    cls, _, _ = get_pipeline(data["kind"])
    return cls.from_dict(data, source=str(path))
