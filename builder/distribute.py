"""``training.distribution`` -> a distribution strategy, and who writes the run directory.

On TensorFlow, a ``tf.distribute`` strategy; on JAX, ``mirrored`` is Keras's own
``keras.distribution.DataParallel`` over the local devices (``multi_worker`` and PyTorch
distribution are refused by ``check_backend``).

- ``none``: TensorFlow's default strategy (one device).
- ``mirrored``: ``MirroredStrategy`` over this machine's GPUs, or over its logical CPU devices
  when it has none (``split_cpu`` makes several, for trying it out).
- ``multi_worker``: ``MultiWorkerMirroredStrategy``; the cluster and this machine's task come
  from the ``TF_CONFIG`` environment variable, as TensorFlow documents. Every worker runs the
  same program; only the chief (task ``chief``, or ``worker`` 0 when there is none) keeps a run
  directory, the others write theirs to a temporary folder and delete it.

In every case ``training.batch_size`` is the global batch: each step splits it across the
replicas. The model is built and compiled inside the strategy's scope (``builder.training``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from builder.errors import ConfigError

EXAMPLE = (
    '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
    '"task": {"type": "worker", "index": 0}}'
)

_strategies: dict[str, Any] = {}


def tf_config(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """The ``TF_CONFIG`` cluster description, checked.

    Raises:
        ConfigError: ``TF_CONFIG`` is missing, not JSON, or does not describe a cluster of
            ``worker`` (and at most one ``chief``) tasks with this machine's task among them.
    """
    environ = os.environ if environ is None else environ
    text = environ.get("TF_CONFIG", "").strip()
    intro = "training.distribution is multi_worker, so TF_CONFIG"
    if not text:
        raise ConfigError(
            f"{intro} must describe the cluster and this machine's task, e.g. {EXAMPLE}. "
            "Received: TF_CONFIG is not set"
        )
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{intro} must be JSON. Received: {err.msg} at {err.pos}") from None
    if not isinstance(spec, dict):
        raise ConfigError(f"{intro} must be a JSON object. Received: {text[:60]}")
    cluster, task = spec.get("cluster"), spec.get("task")
    if not isinstance(cluster, dict) or not isinstance(cluster.get("worker", []), list):
        raise ConfigError(
            f"{intro} must have a cluster mapping with a worker list. Received: cluster={cluster!r}"
        )
    extra = sorted(set(cluster) - {"worker", "chief"})
    if extra:
        raise ConfigError(
            f"{intro} cluster must have only worker and chief tasks (multi_worker has no "
            f"parameter servers or evaluators). Received: {', '.join(extra)}"
        )
    for kind, addresses in cluster.items():
        if not isinstance(addresses, list) or not all(_is_address(a) for a in addresses):
            raise ConfigError(
                f"{intro} cluster.{kind} must be a list of host:port addresses. "
                f"Received: {addresses!r}"
            )
    if len(cluster.get("chief", [])) > 1:
        raise ConfigError(f"{intro} cluster must have at most one chief. Received: {cluster}")
    if not cluster.get("worker") and not cluster.get("chief"):
        raise ConfigError(f"{intro} cluster must list at least one task. Received: {cluster}")
    if not isinstance(task, dict):
        raise ConfigError(
            f'{intro} must have a task, e.g. {{"type": "worker", "index": 0}}. '
            f"Received: task={task!r}"
        )
    kind, index = task.get("type"), task.get("index")
    if kind not in cluster:
        raise ConfigError(
            f"{intro} task.type must be one of the cluster's task types ({', '.join(cluster)}). "
            f"Received: type={kind!r}"
        )
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(cluster[kind]):
        raise ConfigError(
            f"{intro} task.index must be 0 to {len(cluster[kind]) - 1} for {kind}. "
            f"Received: index={index!r}"
        )
    return spec


def _is_address(value: Any) -> bool:
    if not isinstance(value, str) or ":" not in value:
        return False
    host, _, port = value.rpartition(":")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


def is_chief(config: Any) -> bool:
    """Whether this process keeps the run directory (always, unless multi_worker)."""
    if config.training.distribution != "multi_worker":
        return True
    spec = tf_config()
    task = spec["task"]
    if "chief" in spec["cluster"]:
        return task["type"] == "chief"
    return task["type"] == "worker" and task["index"] == 0


def describe(config: Any) -> dict[str, Any]:
    """What the manifest records about distribution (read without starting TensorFlow)."""
    kind = config.training.distribution
    if kind != "multi_worker":
        return {"strategy": kind}
    spec = tf_config()
    return {
        "strategy": kind,
        "workers": sum(len(v) for v in spec["cluster"].values()),
        "task": spec["task"],
    }


def worker_scratch(config: Any) -> Path | None:
    """``None`` on the chief; on another worker, a new temporary folder for its run directory.

    Workers must run every step the chief runs (saving the model reads variables, some of them
    collectively), so they write a run directory too, into this folder; ``discard`` removes it.
    """
    if is_chief(config):
        return None
    return Path(tempfile.mkdtemp(prefix="builder-worker-"))


def discard(scratch: Path | None) -> None:
    """Remove a worker's temporary folder (no-op on the chief)."""
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)


def strategy_for(config: Any) -> Any:
    """The ``tf.distribute`` strategy for ``training.distribution``; ``None`` for ``none``.

    A process makes each kind of strategy once: ``MultiWorkerMirroredStrategy`` cannot be
    made again once TensorFlow has started, and tuning calls this for every trial.

    Raises:
        ConfigError: multi_worker without a usable ``TF_CONFIG``.
    """
    kind = config.training.distribution
    if kind == "none":
        return None
    if kind in _strategies:
        return _strategies[kind]
    import keras

    name = keras.backend.backend()
    check_backend(kind, name)
    if name == "jax":
        # Keras's own data parallelism: the same replicas-split-the-global-batch rule.
        strategy = keras.distribution.DataParallel(devices=keras.distribution.list_devices())
        _strategies[kind] = strategy
        return strategy
    import tensorflow as tf

    if kind == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus or tf.config.list_logical_devices("CPU")]
        strategy = tf.distribute.MirroredStrategy(devices=devices)
    else:
        tf_config()  # a clear error before TensorFlow reads it
        _patch_keras_for_multi_worker()
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    _strategies[kind] = strategy
    return strategy


#: The backends each ``training.distribution`` runs on.
BACKENDS = {"none": ("tensorflow", "jax", "torch"), "mirrored": ("tensorflow", "jax"),
            "multi_worker": ("tensorflow",)}  # fmt: skip


def check_backend(kind: str, backend: str) -> None:
    """Refuse a distribution the backend cannot run.

    Raises:
        ConfigError: ``kind`` is not supported on ``backend``; the message lists the backends
            that support it.
    """
    if backend not in BACKENDS[kind]:
        raise ConfigError(
            f"training.distribution {kind} runs on the {' and '.join(BACKENDS[kind])} "
            f"backend{'s' if len(BACKENDS[kind]) > 1 else ''} only. "
            f"Received: distribution={kind} with backend {backend}"
        )


def scope(strategy: Any) -> Any:
    """``strategy.scope()``, or a no-op without a strategy."""
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def shard(dataset: Any, strategy: Any) -> Any:
    """Name how ``tf.data`` splits a dataset across workers: by element (``DATA``).

    Each worker reads the whole input (an in-memory split, or the CSV streamed in chunks) and
    keeps its replicas' share of every global batch. ``FILE`` sharding would need the data in
    several files; ``AUTO`` falls back to ``DATA`` for this input anyway, with a warning.
    """
    if strategy is None or dataset is None or not hasattr(strategy, "extended"):
        return dataset  # no strategy, or Keras's own distribution (JAX): nothing to name
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def split_cpu(count: int) -> None:
    """Present the CPU as ``count`` logical devices, for MirroredStrategy without accelerators.

    Must run before TensorFlow initializes its devices (before any model or tensor is made):
    ``Virtual devices cannot be modified after being initialized`` otherwise.
    """
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
    )


# Keras 3 has had the multi-worker reduction fault since its first releases
# (tensorflow/tensorflow#72388, closed unfixed); the patches below replace trainer internals that
# builder.keras_private hands over for the Keras versions it checked.


class _TrainerInternals(NamedTuple):
    """The private parts of Keras's TensorFlow trainer that the multi-worker patches touch."""

    symbolic_build: Callable[..., Any]  # TensorFlowTrainer._maybe_symbolic_build
    reduce_per_replica: Callable[..., Any]
    is_multi_worker: Callable[[Any], bool]  # a MultiWorkerMirroredStrategy across workers?
    patched: bool
    install: Callable[[Callable[..., Any], Callable[..., Any]], None]


def _keras_trainer_internals() -> _TrainerInternals | None:
    """Keras's private trainer internals, or ``None`` where the patches do not apply.

    Keras has no public hook for how ``fit`` builds and reduces under a strategy
    (tensorflow/tensorflow#72388): ``builder.keras_private.tensorflow_trainer`` gives its
    module. ``None`` when Keras is outside ``keras_private.CHECKED`` or the internals have moved.
    """
    from builder.keras_private import tensorflow_trainer

    trainer = tensorflow_trainer()
    if trainer is None:
        return None
    try:
        cls = trainer.TensorFlowTrainer
        return _TrainerInternals(
            symbolic_build=cls._maybe_symbolic_build,
            reduce_per_replica=trainer.reduce_per_replica,
            is_multi_worker=trainer._collective_all_reduce_multi_worker,
            patched=getattr(trainer, "_builder_multi_worker_patch", False),
            install=lambda build, reduce: _install(trainer, build, reduce),
        )
    except AttributeError:
        return None


def _install(trainer: Any, build: Callable[..., Any], reduce: Callable[..., Any]) -> None:
    trainer.TensorFlowTrainer._maybe_symbolic_build = build
    trainer.reduce_per_replica = reduce
    trainer._builder_multi_worker_patch = True


def _patch_keras_for_multi_worker() -> None:
    """Work around two Keras faults that stop ``fit`` under MultiWorkerMirroredStrategy.

    1. Before the first step ``fit`` reduces a whole ``(x, y)`` batch across workers to build
       the metrics; MultiWorkerMirroredStrategy cannot reduce a nested structure
       (``Attempt to convert a value (PerReplica...) to a Tensor``). The build needs only
       shapes, so it gets this worker's own first batch.
    2. Each step's logs are reduced with ``strategy.reduce("MEAN", v, axis=0)``, which fails on
       scalars (``Invalid reduction dimension 0 for input with 0 dimensions``,
       tensorflow/tensorflow#72388). Scalars are averaged across workers with ``axis=None``.

    Both patches act only under a multi-worker strategy; tests/test_distribute.py checks that
    two workers train as far as one process does. With a Keras outside
    ``keras_private.CHECKED`` they are not applied, with a warning.
    """
    import keras
    import tensorflow as tf

    internals = _keras_trainer_internals()
    if internals is None:
        warnings.warn(
            f"builder's multi_worker workarounds are not applied to Keras {keras.__version__} "
            "(known for Keras 3); if fit fails while reducing across workers, see "
            "tensorflow/tensorflow#72388",
            RuntimeWarning,
            stacklevel=2,
        )
        return
    if internals.patched:
        return
    multi_worker = internals.is_multi_worker

    def local(value: Any, strategy: Any) -> Any:
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    build = internals.symbolic_build

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self.distribute_strategy
        if iterator is not None and multi_worker(strategy):
            for _, _, batches in iterator:
                data_batch = keras.tree.map_structure(lambda v: local(v, strategy), next(batches))
                break
            iterator = None
        return build(self, iterator=iterator, data_batch=data_batch)

    reduce_per_replica = internals.reduce_per_replica

    def _reduce_per_replica(values, strategy, reduction):
        if reduction not in ("auto", "mean") or not multi_worker(strategy):
            return reduce_per_replica(values, strategy, reduction)

        def one(value):
            shape = getattr(local(value, strategy), "shape", None)
            if shape is not None and shape.rank == 0:
                return strategy.reduce("MEAN", value, axis=None)
            return reduce_per_replica(value, strategy, reduction)

        return keras.tree.map_structure(one, values)

    internals.install(_maybe_symbolic_build, _reduce_per_replica)
