"""Which Keras backend a command runs on: TensorFlow, JAX or PyTorch, chosen by one key.

Keras reads its backend once, from ``KERAS_BACKEND``, when it is first imported, and cannot change
it afterwards. So the choice is made before that import: ``--backend`` (or the Python API's
``backend=``) first, then the config's ``backend:`` key, then ``KERAS_BACKEND``, then
``DEFAULT``. A run's recorded backend is a record, not a request: inspect, predict, resume
and the rest use it only where neither the flag nor ``KERAS_BACKEND`` chose. Asking for one
backend after Keras was imported with another is a ``ConfigError``, never a silent mix.

On JAX and PyTorch nothing here or in the data path imports TensorFlow: tables reach ``fit`` as
numpy batches (``builder.data.batches``), and TensorFlow is imported only by what needs it
(``tf.distribute``, the SavedModel and ONNX exports).
"""

from __future__ import annotations

import importlib.machinery
import importlib.metadata
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from builder.errors import ConfigError

#: The backends a config's ``backend:`` key and ``--backend`` take, by their Keras names.
BACKENDS = ("tensorflow", "jax", "torch")

#: The backend used when neither the flag, the config nor ``KERAS_BACKEND`` names one. Chosen by
#: ``bench/bench_backends.py`` (bench/README.md, backends).
DEFAULT = "tensorflow"

#: The module each backend imports, and the install that brings it.
_MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
#: The most disk JAX's compilation cache takes under builder's settings (``jax_cache_settings``);
#: beyond it JAX drops the entries used least recently.
JAX_CACHE_MAX_BYTES = 256 << 20

_INSTALL = {
    "tensorflow": "pip install -e .",
    "jax": "pip install -e '.[jax]'",
    "torch": "pip install -e '.[torch]'",
}


def check_name(name: str, where: str) -> str:
    """``name`` if it is one of ``BACKENDS``.

    Raises:
        ConfigError: it is not; the message names ``where`` (the flag, the variable).
    """
    if name not in BACKENDS:
        raise ConfigError(f"{where} must be one of {', '.join(BACKENDS)}. Received: {name!r}")
    return name


def choose(
    flag: str | None = None, config: str | None = None, recorded: str | None = None
) -> tuple[str, str]:
    """The backend to use and where the choice came from (``--backend``, ``config``,
    ``KERAS_BACKEND``, ``run`` or ``default``), by the precedence in this module's docstring.
    ``recorded`` is the backend a run trained on: a record, not a request, it comes after
    ``KERAS_BACKEND``."""
    if flag is not None:
        return check_name(flag, "--backend"), "--backend"
    if config is not None:
        return check_name(config, "backend"), "config"
    env = os.environ.get("KERAS_BACKEND")
    if env:
        return check_name(env, "KERAS_BACKEND"), "KERAS_BACKEND"
    if recorded is not None:
        return check_name(recorded, "the run's backend"), "run"
    return DEFAULT, "default"


def current() -> str | None:
    """The backend Keras was imported with in this process, or ``None`` before it is."""
    if "keras" not in sys.modules:
        return None
    import keras

    return keras.backend.backend()


def use(flag: str | None = None, config: str | None = None, *, recorded: str | None = None) -> str:
    """Choose the backend (``choose``) and make it the one Keras imports with.

    With neither ``flag`` nor ``config`` in a process that has imported Keras, that is the
    backend (a run trained on another backend loads on it). ``recorded`` (the backend a run
    trained on) counts only where nothing else chose.

    Returns:
        The backend's name.

    Raises:
        ConfigError: the name is not a backend; its library is not installed; or Keras was
            already imported with another backend in this process.
    """
    imported = current()
    if imported is not None and flag is None and config is None:
        if imported != "tensorflow":
            _settle(imported)
        return imported  # nothing asked for: KERAS_BACKEND already chose, as Keras read it
    name, source = choose(flag, config, recorded)
    # PathFinder, not importlib.util.find_spec: looking a package up through sys.meta_path
    # would wake the finders that wait for its import (the CLI's "loading ..." line).
    module = _MODULES[name]
    if module not in sys.modules and importlib.machinery.PathFinder.find_spec(module) is None:
        raise ConfigError(
            f"backend {name} needs the {module} package, which is not installed. "
            f"Received: backend={name} (from {source}); install it with `{_INSTALL[name]}`"
        )
    if imported is not None:
        if imported != name:
            where = {"config": "backend", "default": "the default backend"}.get(source, source)
            raise ConfigError(
                f"{where} asks for {name}, but Keras was already imported with {imported} in "
                f"this process, and Keras cannot change backend once imported. Received: "
                f"{where.split()[-1]}={name}; start a new process (or set KERAS_BACKEND={name} "
                "before importing keras)"
            )
        if name != "tensorflow":
            _settle(name)
        return name
    os.environ["KERAS_BACKEND"] = name
    import keras  # noqa: F401  (now, so that the backend cannot change under us)

    if name != "tensorflow":
        _settle(name)
    return name


def _settle(name: str) -> None:
    keep_tensorflow_out()
    if name == "jax":
        cache_jax_compilations()


def jax_cache_settings(environ: Mapping[str, str] | None = None) -> dict[str, object]:
    """The JAX options builder sets, so that a model's compiled steps are kept on disk.

    JAX compiles each step function (train, test, predict) for each input shape, which is most
    of a small model's fit; its persistent compilation cache lets the next process with the same
    model, shapes and versions load them instead (bench/README.md, backends). JAX's own defaults
    keep nothing: no directory, and only compilations over a second. builder sets a directory
    (``$XDG_CACHE_HOME/builder/jax``, by default ``~/.cache/builder/jax``), keeps every
    compilation and bounds the directory by ``JAX_CACHE_MAX_BYTES``, each only where JAX's own
    variable for it is not set; ``JAX_ENABLE_COMPILATION_CACHE=false`` turns the cache off.
    """
    environ = os.environ if environ is None else environ
    settings: dict[str, object] = {}
    if not environ.get("JAX_COMPILATION_CACHE_DIR"):
        base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        settings["jax_compilation_cache_dir"] = str(Path(base) / "builder" / "jax")
    if not environ.get("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"):
        settings["jax_persistent_cache_min_compile_time_secs"] = 0.0
    # A bounded cache evicts under a file lock (the filelock package, which the jax extra
    # brings); without it JAX refuses a bound at the first compilation, so none is set then.
    have_lock = "filelock" in sys.modules or importlib.machinery.PathFinder.find_spec("filelock")
    if not environ.get("JAX_COMPILATION_CACHE_MAX_SIZE") and have_lock:
        settings["jax_compilation_cache_max_size"] = JAX_CACHE_MAX_BYTES
    return settings


def cache_jax_compilations() -> dict[str, object]:
    """Apply ``jax_cache_settings`` to this process's JAX, once, before it compiles. A cache
    directory that cannot be made leaves JAX's cache off (its default) rather than fail a
    command. Returns the settings applied."""
    global _JAX_CACHE
    if _JAX_CACHE is not None:
        return _JAX_CACHE
    import jax

    settings = jax_cache_settings()
    folder = settings.get("jax_compilation_cache_dir")
    if folder is not None:
        try:
            Path(str(folder)).mkdir(parents=True, exist_ok=True)
        except OSError:
            settings = {}
    for key, value in settings.items():
        jax.config.update(key, value)
    _JAX_CACHE = settings
    return settings


_JAX_CACHE: dict[str, object] | None = None


# keras-team/keras#18455 (closed unfixed): on every backend, Keras's checks for optional
# TensorFlow (`keras.utils.set_random_seed`, serializing a model's config) import TensorFlow
# whenever it is installed, which costs seconds and hundreds of MB on JAX and PyTorch. The checks
# read one lazy module's `_available`; marking it unavailable before anything imports TensorFlow
# makes them skip it, while code that does use TensorFlow (tf.distribute, exports) still imports
# it on first use. tests/backend_subset.py fails if TensorFlow is imported.


def keep_tensorflow_out() -> bool:
    """Stop Keras importing TensorFlow for its optional checks, on a backend that is not
    TensorFlow (see the comment above). Returns whether it applied."""
    from builder.keras_private import lazy_tensorflow

    if "tensorflow" in sys.modules:
        return False
    lazy = lazy_tensorflow()
    if lazy is None or lazy.module is not None or not hasattr(lazy, "_available"):
        return False
    lazy._available = False
    return True


def versions(name: str | None = None) -> dict[str, str]:
    """The installed versions of Keras and of the backend's library, by package name."""
    name = name or current() or choose()[0]
    found = {}
    for package in ("keras", {"tensorflow": "tensorflow-cpu"}.get(name, name)):
        try:
            found[package.removesuffix("-cpu")] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            if package == "tensorflow-cpu":  # the GPU build has the plain name
                found["tensorflow"] = importlib.metadata.version("tensorflow")
    return found
