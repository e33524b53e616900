"""Reference phases for diffraction-ring identification (d-spacings, intensities, profiles)."""
from temtrack.phases.library import Phase, PhaseLibrary, default_library, load_library  # noqa: F401
