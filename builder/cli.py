"""The ``builder`` command line: parse, make one library call, render.

With ``builder.cli_fast`` (the console script, which answers ``validate`` and ``schema`` before
typer loads and hands everything else here), the only module that prints or exits. A
``BuilderError`` (the user's config, CSV, model file or path) becomes one line on stderr and exit
code 2; ``--debug`` shows the traceback instead.
TensorFlow is imported inside the commands that need a model, so ``--help``, ``validate`` and
``schema`` answer at once.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

# Imported first: it sets the environment that quiets TensorFlow and pydantic's plugin scan.
from builder import cli_common
from builder.errors import BuilderError

app = typer.Typer(
    name="builder",
    help="Describe a neural network in YAML; build, train, inspect and use it with Keras.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help: typer's rich help imports rich.markdown and markdown-it (~0.25 s), which
    # would put `builder --help` over its 0.5 s budget (bench/README.md, command latency).
    rich_markup_mode=None,
)


class _Console:
    """A rich ``Console`` made on first use; plain one-line messages bypass rich entirely.

    Importing rich costs ~0.1 s, a fifth of the 0.5 s that ``validate``, ``schema`` and
    ``--help`` may take (bench/README.md, command latency); they print only plain lines.
    """

    def __init__(self, stderr: bool = False) -> None:
        self._stderr = stderr
        self._console: Any = None

    @property
    def stream(self) -> Any:
        """The stream written to (looked up on each use: tests swap ``sys.stdout``)."""
        return sys.stderr if self._stderr else sys.stdout

    def is_terminal(self) -> bool:
        """Whether the stream is a terminal (else a pipe or a file)."""
        isatty = getattr(self.stream, "isatty", None)
        return bool(isatty and isatty())

    @property
    def rich(self) -> Any:
        """The ``rich.console.Console`` itself.

        In a pipe or a file it is as wide as its widest line: rich would otherwise cut every
        line at 80 columns there (``training salary_lin…``). Tables that could be too wide to
        read are split by the commands themselves (see ``_layer_tables``).
        """
        if self._console is None:
            from rich.console import Console

            width = None if self.is_terminal() else PIPE_WIDTH
            self._console = Console(stderr=self._stderr, soft_wrap=True, width=width)
        return self._console

    def print(self, *objects: Any, markup: Any = None, highlight: Any = None, **kwargs: Any):
        """``Console.print``; text with markup and highlighting off is written as it is."""
        plain = markup is False and highlight is False and not kwargs
        if plain and all(isinstance(o, str) for o in objects):
            self.stream.write(" ".join(objects) + "\n")
            return
        self.rich.print(*objects, markup=markup, highlight=highlight, **kwargs)


def Table(*args: Any, **kwargs: Any) -> Any:  # noqa: N802  (stands in for rich's class)
    """``rich.table.Table``, imported on first use (see ``_Console``)."""
    from rich.table import Table as RichTable

    return RichTable(*args, **kwargs)


#: The width of rich's output in a pipe or a file: no line is cut.
PIPE_WIDTH = 100_000

out = _Console()
err = _Console(stderr=True)
_state = {"debug": False}

#: What the first import of the backend says on stderr (TensorFlow takes ~8 s to import).
LOADING = "loading TensorFlow..."
#: The same for the other backends, by ``KERAS_BACKEND``.
LOADING_BY_BACKEND = {"jax": "loading JAX...", "torch": "loading PyTorch..."}


def _loading() -> str:
    # Read when the import starts: the command has chosen the backend by then.
    return LOADING_BY_BACKEND.get(os.environ.get("KERAS_BACKEND", ""), LOADING)


class _AnnounceImport:
    """A ``sys.meta_path`` finder that says ``LOADING`` while the first of ``names`` imports.

    It finds nothing itself: it wraps the loader of the module that the other finders find, so
    the line appears only when the backend really loads (a bad config or a missing run is
    reported before it, at once) and a spinner stops the moment the import ends.
    """

    def __init__(self, names: tuple[str, ...], start: Any, stop: Any) -> None:
        self.names, self.start, self.stop = names, start, stop

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name not in self.names:
            return None
        import importlib.util

        _uninstall_finder(self)  # once: the imports inside it go the ordinary way
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _AnnouncingLoader(spec.loader, self.start, self.stop)
        return spec


class _AnnouncingLoader:
    def __init__(self, loader: Any, start: Any, stop: Any) -> None:
        self.loader, self.start, self.stop = loader, start, stop

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        module.__loader__ = module.__spec__.loader = self.loader  # as if never wrapped
        self.start()
        try:
            self.loader.exec_module(module)
        finally:
            self.stop()


def _uninstall_finder(finder: Any) -> None:
    with contextlib.suppress(ValueError):
        sys.meta_path.remove(finder)


@contextlib.contextmanager
def _announce_backend(names: tuple[str, ...] = ("keras", "tensorflow")):
    """Say ``LOADING`` on stderr if the backend is imported inside: a spinner on a terminal
    (gone once loaded), a plain line in a pipe. Nothing when it is already imported."""
    if any(name in sys.modules for name in names):
        yield
        return
    status: list[Any] = []

    def start() -> None:
        if err.is_terminal():
            status.append(err.rich.status(_loading(), spinner="dots"))
            status[0].start()
        else:
            err.print(_loading(), markup=False, highlight=False)
            err.stream.flush()

    def stop() -> None:
        if status:
            status.pop().stop()

    finder = _AnnounceImport(names, start, stop)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        _uninstall_finder(finder)


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
) -> None:
    _state["debug"] = debug


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the program is, as Ctrl-C raises KeyboardInterrupt.

    Deriving from KeyboardInterrupt, it takes every path Ctrl-C takes: a training saves its
    state and says how to resume, a search records its trials, a half-written file is removed.
    """

    def __init__(self, signum: int) -> None:
        import signal

        self.signum = signum
        super().__init__(signal.Signals(signum).name)


#: The signals that stop a command as Ctrl-C does (``kill``, systemd and job schedulers send
#: SIGTERM; a closed terminal, SIGHUP).
STOP_SIGNALS = ("SIGTERM", "SIGHUP")


@contextlib.contextmanager
def _stop_signals():
    """Turn ``STOP_SIGNALS`` into ``Terminated`` inside the block; the old handlers after it.

    Only the first one raises: one that comes while that one is being handled (the manifest
    being marked, a temporary file removed) is ignored rather than raised into that cleanup;
    SIGKILL still ends a process that does not stop. Nothing is installed outside the main
    thread, where Python cannot set handlers, nor for a signal that was ignored when builder
    started (``nohup`` ignores SIGHUP, and so must we).
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if _state.get("signal") is None:
            _state["signal"] = signum
            raise Terminated(signum)

    _state["signal"] = None
    previous = {}
    for name in STOP_SIGNALS:
        number = getattr(signal, name, None)
        if number is None or signal.getsignal(number) == signal.SIG_IGN:
            continue
        previous[number] = signal.signal(number, handler)
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


def _stop_code() -> int:
    """The exit code of a stopped command: 128 + the signal's number, as a shell reports a
    process its signal ended (130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP)."""
    import signal

    return 128 + (_state.get("signal") or signal.SIGINT)


def _stopped_by() -> str:
    import signal

    number = _state.get("signal")
    return "" if number is None else f" by {signal.Signals(number).name}"


@contextlib.contextmanager
def _errors():
    """The error boundary: a user's mistake is one line and exit 2, never a traceback.

    It also makes SIGTERM and SIGHUP stop a command as Ctrl-C does (``_stop_signals``), with
    the exit code a shell gives that signal (``_stop_code``).
    """
    from builder.errors import Interrupted

    try:
        with _stop_signals():
            yield
    except Interrupted as error:
        # The same line as Ctrl-C's; the exit code tells which signal it was.
        err.print(f"interrupted: {error}", markup=False, highlight=False)
        raise typer.Exit(_stop_code()) from None
    except BuilderError as error:
        if _state["debug"]:
            raise
        err.print(f"error: {error}", markup=False, highlight=False)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        err.print(f"interrupted{_stopped_by()}", markup=False, highlight=False)
        raise typer.Exit(_stop_code()) from None


def _print(text: str) -> None:
    out.print(text, markup=False, highlight=False)


ConfigArg = Annotated[Path, typer.Argument(help="A config file (YAML or JSON).")]
RunArg = Annotated[Path, typer.Argument(help="A run directory, or a model.keras file in one.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
BackendOpt = Annotated[
    str | None,
    typer.Option(
        "--backend",
        help="Keras backend: tensorflow, jax or torch. Over the config's backend: key, then "
        "KERAS_BACKEND; a run takes the backend it trained on when neither chooses.",
        show_default=False,
    ),
]


def _use_backend(flag: str | None, config: Any = None) -> None:
    """Choose the Keras backend before anything imports Keras (``builder.backend.use``)."""
    from builder.backend import use

    if flag is not None or config is not None:
        use(flag, getattr(config, "backend", None))


@app.command()
def validate(
    configs: Annotated[list[Path], typer.Argument(help="Config files to check.")],
    data: Annotated[
        Path | None,
        typer.Option(help="Check this CSV (header and every value) instead of data.path."),
    ] = None,
) -> None:
    """Check configs and their CSVs as train would (no TensorFlow; answers at once)."""
    code = cli_common.validate(configs, data)
    if code:
        raise typer.Exit(code)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the config, for editors."""
    cli_common.schema()


@app.command()
def build(config: ConfigArg, backend: BackendOpt = None) -> None:
    """Build the model a config describes and print its Keras summary."""
    with _errors(), _announce_backend():
        from builder.config import load_config

        cfg = load_config(config)
        _use_backend(backend, cfg)
        from builder.search import require_values

        require_values(cfg, "builder build")
        from builder.model import summary_text
        from builder.training import build_for_data

        _print(summary_text(build_for_data(cfg)))


@app.command()
def train(
    config: Annotated[
        Path | None, typer.Argument(help="A config file (YAML or JSON).", show_default=False)
    ] = None,
    resume: Annotated[
        Path | None, typer.Option(help="Continue an interrupted run directory instead.")
    ] = None,
    data: Annotated[Path | None, typer.Option(help="CSV to train on instead of data.path.")] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Override training.epochs.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override training.seed.")] = None,
    runs_dir: Annotated[Path, typer.Option(help="Where run directories go.")] = Path("runs"),
    tensorboard: Annotated[
        bool, typer.Option("--tensorboard", help="Write TensorBoard logs into the run.")
    ] = False,
    backend: BackendOpt = None,
) -> None:
    """Train on the CSV and write a run directory; compare with two baselines."""
    with _errors(), _announce_backend():
        from builder.config import load_config
        from builder.errors import ConfigError

        if (config is None) == (resume is None):
            raise ConfigError("train needs a CONFIG file or --resume RUN (one of them).")
        if resume is not None:
            from builder.runs import load_run_config

            cfg = load_run_config(resume)
            from builder.backend import use

            use(backend, recorded=cfg.backend)
        else:
            cfg = load_config(config)  # fail fast on a bad config, before TensorFlow loads
            from builder.search import require_values

            require_values(cfg, "builder train")
        _use_backend(backend, cfg)
        from builder.runs import early_stopping
        from builder.training import resume as resume_training
        from builder.training import train as run_training

        progress = _EpochProgress(f"training {cfg.name}")
        try:
            if resume is not None:
                run = resume_training(
                    resume, progress=progress, command=_command(), backend=backend
                )
            else:
                run = run_training(
                    cfg,
                    data=data,
                    epochs=epochs,
                    seed=seed,
                    runs_dir=runs_dir,
                    tensorboard=tensorboard,
                    progress=progress,
                    command=_command(),
                    backend=backend,
                )
        finally:
            progress.close()
        _print(
            f"{run.metrics['epochs_run']} epochs in {run.metrics['timings']['fit_seconds']:.1f} s"
        )
        stopped = _stopping_text(early_stopping(run))
        if stopped:
            _print(stopped)
        for line in _column_lines(run.manifest):
            _print(line)
        out.print(_metrics_table(run.metrics, title=f"test metrics ({cfg.name})"))
        for warning in run.metrics.get("warnings", []):
            err.print(f"warning: {warning}", markup=False, highlight=False)
        if run.path is None:  # a multi_worker worker other than the chief
            _print("run directory: none on this worker (the chief writes it)")
        else:
            _print(f"run directory: {run.path}")


def _column_lines(manifest: dict[str, Any]) -> list[str]:
    # One line per categorical feature: what it holds, and why it was read as text.
    lines = []
    for name, column in (manifest.get("columns") or {}).items():
        if not isinstance(column, dict) or column.get("type") != "categorical":
            continue
        line = f"{name}: categorical, {column.get('categories')} values"
        seen = column.get("seen")
        if isinstance(seen, int) and seen > (column.get("categories") or 0):
            line += f" kept of {seen} (the rest read as unseen)"
        cause = column.get("inferred_from")
        if isinstance(cause, dict):
            line += f" ({cause.get('value')!r} on line {cause.get('line')} is not a number)"
        lines.append(line)
    classes = manifest.get("classes")
    if isinstance(classes, list):
        shown = ", ".join(map(str, classes[:10])) + (" ..." if len(classes) > 10 else "")
        lines.append(f"{manifest.get('target')}: {len(classes)} classes ({shown})")
    return lines


class _EpochProgress:
    """Training's progress on stderr, called after each epoch with ``(epoch, total, logs)``.

    On a terminal, a rich bar that appears with the first epoch (so a data error prints as one
    clean line). In a pipe or a file, a plain line at each tenth of the epochs and at the last
    one run: rich would print the bar once at the end, cut at 80 columns.
    """

    def __init__(self, description: str) -> None:
        self.description = description
        self.bar: Any = None
        self.task: Any = None
        self.line = ""  # the last epoch's line, in a pipe
        self.printed = 0  # the tenths of the epochs printed, in a pipe

    def __call__(self, epoch: int, total: int, logs: dict[str, float]) -> None:
        shown = "  ".join(f"{k} {_fmt(v)}" for k, v in logs.items())
        if not err.is_terminal():
            self.line = f"{self.description}: epoch {epoch}/{total}  {shown}"
            if epoch * 10 // max(total, 1) > self.printed or epoch == total:
                self.printed = epoch * 10 // max(total, 1)
                self._say()
            return
        if self.bar is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self.bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[logs]}"),
                console=err.rich,
            )
            self.task = self.bar.add_task(self.description, total=total, logs="")
            self.bar.start()
        self.bar.update(self.task, completed=epoch, total=total, logs=shown)

    def _say(self) -> None:
        err.print(self.line, markup=False, highlight=False)
        self.line = ""

    def close(self) -> None:
        """Stop the bar; in a pipe, print the last epoch run if its line is not out yet."""
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
        if self.line:
            self._say()


def _stopping_text(outcome: dict[str, Any] | None) -> str | None:
    """What early stopping did, in a line (``builder.runs.early_stopping``); None if nothing."""
    if outcome is None:
        return None
    monitor = outcome["monitor"]
    stopped, restored = outcome["stopped_epoch"], outcome["restored_epoch"]
    if stopped is None:  # every epoch ran; Keras still restores the best ones when asked
        if restored is None or restored == outcome.get("epochs_run"):
            return None
        return f"restored weights of epoch {restored} (lowest {monitor})"
    kept = (
        f"restored weights of epoch {restored}"
        if restored is not None
        else "kept the last epoch's weights (restore_best_weights is off)"
    )
    patience = outcome["patience"]
    return (
        f"early stop at epoch {stopped} (no {monitor} improvement for "
        f"{patience} epoch{'s' if patience != 1 else ''}); {kept}"
    )


@app.command()
def tune(
    config: ConfigArg,
    runs_dir: Annotated[Path, typer.Option(help="Where run directories go.")] = Path("runs"),
    max_trials: Annotated[int | None, typer.Option(min=1, help="Override tune.max_trials.")] = None,
    backend: BackendOpt = None,
) -> None:
    """Search the config's search spaces with Keras Tuner; write results and best.yaml."""
    with _errors(), _announce_backend():
        from builder.config import load_config
        from builder.search import TuneConfig, require_tunable

        cfg = load_config(config)  # fail fast, before TensorFlow loads
        require_tunable(cfg)
        _use_backend(backend, cfg)  # before Keras Tuner imports Keras
        settings = cfg.tune or TuneConfig()
        objective = settings.objective
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        from builder.tuning import tune as run_tune

        bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            console=err.rich,
        )
        trials = bar.add_task("trials", total=max_trials or settings.max_trials, info="")
        epochs = bar.add_task("trial", total=1, info="", visible=False)

        # In a pipe or a file, only the trials' lines: rich would print the bars once, cut.
        live = err.is_terminal()

        def progress(event) -> None:
            if not live:
                if event.kind == "trial_end":
                    err.print(_trial_line(event, objective), markup=False, highlight=False)
                return
            if not bar.live.is_started:
                bar.start()
            if event.kind == "trial_start":
                bar.update(epochs, description=f"trial {event.trial}", completed=0, visible=True)
            elif event.kind == "epoch":
                shown = f"{objective} {_fmt(event.logs.get(objective, float('nan')))}"
                bar.update(epochs, completed=event.epoch, total=event.epochs, info=shown)
            else:
                bar.console.print(_trial_line(event, objective), markup=False)
                best = "" if event.best is None else f"best {objective} {_fmt(event.best)}"
                bar.update(trials, completed=event.number, info=best)

        try:
            result = run_tune(
                cfg,
                runs_dir=runs_dir,
                max_trials=max_trials,
                progress=progress,
                command=_command(),
                backend=backend,
            )
        finally:
            if bar.live.is_started:
                bar.stop()
        out.print(_results_table(result), width=_screen_width())
        _print(f"best trial: {result.best['trial']} ({objective} {_fmt(result.best[objective])})")
        _print(f"best config: {result.best_config}")
        _print(f"run directory: {result.path}")
        _print(f"train it: builder train {result.best_config}")


def _trial_line(event: Any, objective: str) -> str:
    values = "  ".join(f"{_short(k)}={_fmt(v)}" for k, v in event.values.items())
    score = "failed" if event.score is None else f"{objective} {_fmt(event.score)}"
    return f"trial {event.trial} ({event.number}/{event.trials}): {score}  {values}"


def _short(name: str) -> str:
    for prefix in ("training.optimizer.", "training.", "model."):
        name = name.removeprefix(prefix)
    return name


def _results_table(result: Any, limit: int = 10) -> Table:
    """The best trials first, each with only the hyperparameters it used (results.csv has all)."""
    objective = result.objective
    done = [r for r in result.rows if r[objective] is not None]
    done.sort(key=lambda r: r[objective], reverse=result.direction == "max")
    shown = done[:limit]
    table = Table(title=f"best {len(shown)} of {len(result.rows)} trials ({objective})")
    for name in ("trial", objective, "epochs"):
        table.add_column(name, justify="left" if name == "trial" else "right", no_wrap=True)
    # The one column that wraps, between the hyperparameters (see _screen_width).
    table.add_column("hyperparameters", overflow="fold")
    fixed = {"trial", "status", objective, "epochs", "epochs_run", "seconds"}
    names = [c for c in result.columns if c not in fixed]
    for row in shown:
        used = "  ".join(f"{_short(n)}={_fmt(row[n])}" for n in names if row.get(n) is not None)
        table.add_row(row["trial"], _fmt(row[objective]), str(row["epochs_run"]), used)
    return table


def _command() -> list[str]:
    return ["builder", *sys.argv[1:]]


def _fmt(value: Any) -> str:
    if value is None:  # a NaN, as strict JSON stores it
        return "nan"
    if isinstance(value, float):
        if value != value:  # NaN
            return "nan"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.4g}"
    return str(value)


def _metrics_table(metrics: dict[str, Any], title: str) -> Table:
    test = metrics.get("test", {})
    base = metrics.get("baselines", {})
    names = list(test)
    table = Table(title=title)
    table.add_column("model")
    for name in names:
        table.add_column(name, justify="right")
    table.add_row("network", *[_fmt(test[n]) for n in names])
    baselines = (
        ("mean predictor", "mean_predictor"),
        ("least squares", "least_squares"),
        ("majority class", "majority_class"),
        ("logistic regression", "logistic"),
    )
    for label, key in baselines:
        if key in base:
            table.add_row(label, *[_fmt(base[key].get(n, float("nan"))) for n in names])
    return table


@app.command()
def inspect(
    run: RunArg,
    as_json: JsonOpt = False,
    importance: Annotated[
        bool,
        typer.Option(
            "--importance",
            help="Add permutation importance: the test loss's increase when a feature is shuffled.",
        ),
    ] = False,
    backend: BackendOpt = None,
) -> None:
    """Summary, weights by feature and, with no hidden layer, the learned equation."""
    with _errors(), _announce_backend():
        from builder.inspection import inspect_run
        from builder.runs import json_text, load_run

        loaded = load_run(run, backend=backend)
        report = inspect_run(loaded)
        if importance:
            from builder.importance import permutation_importance

            report["importance"] = permutation_importance(loaded)
    if as_json:
        sys.stdout.write(json_text(report) + "\n")
        return
    _print(report["summary"])
    width = _screen_width()
    for layer in report["layers"]:
        tables, left_out = _layer_tables(layer, width)
        for table in tables:
            out.print(table)
        if left_out:
            _print(f"  ({left_out}; inspect --json has every weight)")
    equation = report["equation"]
    if equation:
        _print("learned equation (raw units):")
        _print(f"  {equation['text']}")
        references = equation.get("reference_categories")
        if references:
            shown = ", ".join(f"{name}={value}" for name, value in references.items())
            _print(f"  (a category's term is its effect relative to the most frequent: {shown})")
        lsq = equation["least_squares"]
        if lsq:
            _print("least squares (exact, training split):")
            _print(f"  {lsq['text']}")
            table = Table(title="coefficients: network vs least squares")
            for col in ("term", "network", "least squares", "difference"):
                table.add_column(col, justify="left" if col == "term" else "right")
            rows = [*equation["coefficients"].items(), ("intercept", equation["intercept"])]
            for name, value in rows:
                ref = lsq["coefficients"].get(name, lsq["intercept"])
                diff = (value - ref) / abs(ref) if ref else float("nan")
                table.add_row(name, _fmt(value), _fmt(ref), f"{diff:+.2%}")
            out.print(table)
    if importance:
        out.print(_importance_table(report["importance"]))


def _screen_width() -> int:
    """The width that wide tables are fitted to: COLUMNS, else the terminal's, else 80.

    In a pipe rich cuts no line (``PIPE_WIDTH``); the tables that could grow wider than a
    screen (inspect's weights, tune's hyperparameters) are split or wrapped to this width.
    """
    import shutil

    return shutil.get_terminal_size().columns


#: The most rows and value columns inspect shows of one layer's weights.
MAX_WEIGHTS_SHOWN = 32


def _layer_tables(layer: dict[str, Any], width: int) -> tuple[list[Table], str]:
    """A Dense layer's weights as tables no wider than ``width`` columns.

    The shorter side of the weights goes across: a first hidden layer has a row per unit and a
    column per feature (and its bias), the next ones a row per input and a column per unit (and
    a bias row). Columns that do not fit in ``width`` continue in a next table with the same
    rows. Returns the tables and what was left out (beyond ``MAX_WEIGHTS_SHOWN``), or "".
    """
    inputs, units = list(layer["inputs"]), list(layer["units"])
    kernel, bias = layer["kernel"], layer["bias"]
    across_units = len(units) <= len(inputs)
    # Beyond the limit, the first ones are shown ("1 more" would take the place it frees).
    left_out = []
    n_in, n_units = len(inputs), len(units)
    for count, what in ((n_units, "units"), (n_in, "inputs")):
        if count > MAX_WEIGHTS_SHOWN + 1:
            left_out.append(f"{count - MAX_WEIGHTS_SHOWN} more {what}")
    if n_in > MAX_WEIGHTS_SHOWN + 1:
        n_in = MAX_WEIGHTS_SHOWN
    if n_units > MAX_WEIGHTS_SHOWN + 1:
        n_units = MAX_WEIGHTS_SHOWN
    inputs, units = inputs[:n_in], units[:n_units]
    bias_cells = None if bias is None else [_fmt(v) for v in bias[:n_units]]
    if across_units:  # rows: inputs (and the bias); columns: units
        corner, row_names, col_names = "input", inputs, units
        cells = [[_fmt(v) for v in row[:n_units]] for row in kernel[:n_in]]
        if bias_cells is not None:
            row_names, cells = [*row_names, "bias"], [*cells, bias_cells]
    else:  # rows: units; columns: inputs (and the bias)
        corner, row_names, col_names = "unit", units, inputs
        cells = [[_fmt(kernel[i][j]) for i in range(n_in)] for j in range(n_units)]
        if bias_cells is not None:
            col_names = [*col_names, "bias"]
            cells = [[*row, b] for row, b in zip(cells, bias_cells, strict=True)]
    # "hidden_2[3]" -> "[3]": the title names the layer whose units they are.
    own = f"{layer['name']}["
    if len(col_names) > 1 and all(n.startswith(own) for n in col_names):
        headers = [n[len(own) - 1 :] for n in col_names]
    else:
        headers = col_names
    if not across_units:
        row_names = [n[len(own) - 1 :] if n.startswith(own) else n for n in row_names]
    # Without its outer edge, a table is its columns with two characters of padding each, and
    # a line between two columns.
    first = max(len(corner), *(len(n) for n in row_names)) + 2
    widths = [max(len(h), *(len(row[j]) for row in cells)) + 3 for j, h in enumerate(headers)]
    blocks: list[list[int]] = [[]]
    used = first
    for j, column_width in enumerate(widths):
        if blocks[-1] and used + column_width > width:
            blocks.append([])
            used = first
        blocks[-1].append(j)
        used += column_width
    title = f"{layer['name']} ({layer['activation']})"
    tables = []
    for number, block in enumerate(blocks, start=1):
        part = f", part {number} of {len(blocks)}" if len(blocks) > 1 else ""
        table = Table(title=f"{title}{part}", title_justify="left", show_edge=False)
        table.add_column(corner, no_wrap=True)
        for j in block:
            table.add_column(headers[j], justify="right", no_wrap=True)
        for name, row in zip(row_names, cells, strict=True):
            table.add_row(name, *(row[j] for j in block))
        tables.append(table)
    return tables, ", ".join(left_out)


@app.command()
def evaluate(
    run: RunArg,
    data: Annotated[Path, typer.Option(help="CSV with the feature and target columns.")],
    as_json: JsonOpt = False,
    backend: BackendOpt = None,
) -> None:
    """Metrics of a trained run on another CSV."""
    with _errors(), _announce_backend():
        from builder.predict import evaluate as run_evaluate
        from builder.runs import json_text, load_run

        result = run_evaluate(load_run(run, backend=backend), data)
    if as_json:
        sys.stdout.write(json_text(result) + "\n")
        return
    table = Table(title=f"{result['data']} ({result['rows']} rows)")
    for name in result["metrics"]:
        table.add_column(name, justify="right")
    table.add_row(*[_fmt(v) for v in result["metrics"].values()])
    out.print(table)
    if "classes" in result:
        out.print(_classes_table(result["classes"]))
    for name, count in result.get("unseen", {}).items():
        _print(f"{name}: {count:,} values not seen in training (encoded as the average value)")


def _classes_table(details: dict[str, Any]) -> Table:
    # Per class: precision, recall, F1, support, and the row of the confusion matrix.
    classes = details["classes"]
    table = Table(title="per class (confusion matrix: rows true, columns predicted)")
    for col in ("class", "precision", "recall", "f1", "support", *classes):
        table.add_column(col, justify="left" if col == "class" else "right")
    for label, row in zip(classes, details["confusion_matrix"], strict=True):
        scores = details["per_class"][label]
        table.add_row(
            label,
            *[_fmt(scores[k]) for k in ("precision", "recall", "f1")],
            str(scores["support"]),
            *[str(n) for n in row],
        )
    return table


@app.command()
def predict(
    run: RunArg,
    data: Annotated[Path, typer.Option(help="CSV with the feature columns.")],
    output_text: Annotated[
        str | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --output.")] = False,
    backend: BackendOpt = None,
) -> None:
    """Predict for each CSV row; keeps row order and columns, adds a prediction column."""
    with _errors(), _announce_backend():
        from builder.errors import RunError
        from builder.runs import check_not_an_input, check_output

        if output_text is None and _state.get("stdout_closed"):
            raise RunError("standard output is closed, so predictions have nowhere to go; pass "
                           "--output FILE")  # fmt: skip
        # A str, not a Path: Path("new/") drops the slash that says a directory was meant.
        output = None if output_text is None else Path(output_text)
        if output_text is not None and output_text.endswith("/"):
            raise RunError(
                f"--output {output_text} must name a file. Received: a directory path "
                "(it ends in a slash)"
            )

        # Without --force nothing at --output is replaced, not even a file that appears while
        # the predictions are computed: this check fails fast, the writer's last step (a hard
        # link, which cannot replace) is the guard. --force replaces a regular file only.
        overwrite = "file" if force else "never"
        if output is not None:
            check_output(output, overwrite=overwrite, what="--output")
            check_not_an_input(output, run, data, what="--output")
        from builder.predict import Unseen, predict_chunks
        from builder.runs import load_run, write_csv_frames

        # Chunk by chunk, so a CSV larger than memory works: --output appears whole or not at
        # all; stdout gets each chunk as it is ready (a bad row later on stops it there).
        unseen = Unseen()
        chunks = predict_chunks(load_run(run, backend=backend), data, unseen=unseen)
        if output is None:
            for i, frame in enumerate(chunks):
                sys.stdout.write(frame.to_csv(index=False, header=i == 0))
        else:
            rows = write_csv_frames(output, chunks, overwrite=overwrite, what="--output")
            err.print(f"wrote {rows} predictions to {output}", markup=False, highlight=False)
        note = unseen.message(data)
        if note:
            err.print(f"note: {note}", markup=False, highlight=False)


@app.command()
def plot(
    target: Annotated[str, typer.Argument(help="A run directory, or 'activations'.")],
    network: Annotated[
        bool, typer.Option("--network", help="Draw the network with its learned weights.")
    ] = False,
    output_dir: Annotated[
        Path | None, typer.Option(help="Where PNGs go (default: the run directory).")
    ] = None,
    backend: BackendOpt = None,
) -> None:
    """PNG plots: training curves and predictions of a run (a classifier's confusion matrix and
    class probabilities), or the activation functions."""
    with _errors(), _announce_backend():
        from builder import plotting

        if target == "activations":
            path = (output_dir or Path(".")) / "activations.png"
            _print(str(plotting.plot_activations(path)))
            return
        from builder.runs import load_run

        run = load_run(Path(target), backend=backend)
        # A bare model file (no run directory around it) has its plots written beside it.
        folder = output_dir or run.path or Path(target).parent  # plotting makes it if missing
        written = []
        if network:
            from builder.inspection import network_weights
            from builder.report import network_names

            inputs, outputs = network_names(run)
            written.append(
                plotting.plot_network(
                    network_weights(run),
                    folder / "network.png",
                    input_names=inputs,
                    output_names=outputs,
                    standardized_inputs=run.config.data.normalize == "zscore",
                )
            )
        else:
            # The test split is scored before anything is drawn: a data file that has gone or
            # changed leaves no plot half of the set behind.
            draw_predictions = _test_split_plots(run, folder)
            if run.history is not None:
                from builder.runs import early_stopping

                stopping = early_stopping(run) or {}
                written.append(
                    plotting.plot_history(
                        run.history,
                        folder / "history.png",
                        restored_epoch=stopping.get("restored_epoch"),
                    )
                )
            written.extend(draw_predictions())
        for path in written:
            _print(str(path))


def _test_split_plots(run: Any, folder: Path) -> Any:
    """Scores the run's test split now; the returned function (no arguments) draws its plots
    and returns their paths: predicted vs actual (``predictions.png``) for regression, the
    confusion matrix (``confusion.png``) and the class probabilities (``probabilities.png``)
    for classification."""
    from builder import plotting

    target = run.config.data.target
    if run.config.task != "classification":
        from builder.predict import holdout_predictions

        y_true, y_pred = holdout_predictions(run)
        return lambda: [
            plotting.plot_predictions(y_true, y_pred, folder / "predictions.png", target=target)
        ]
    from builder.data.classes import predicted_class
    from builder.predict import class_labels, holdout_split
    from builder.training import predict_probabilities

    x, y = holdout_split(run, "plot")
    codes = y.astype("int64")
    probabilities = predict_probabilities(run.model, x)
    classes = list(class_labels(run).classes)
    return lambda: [
        plotting.plot_confusion(
            codes, predicted_class(probabilities), classes, folder / "confusion.png", target=target
        ),
        plotting.plot_class_probabilities(
            codes, probabilities, classes, folder / "probabilities.png", target=target
        ),
    ]


@app.command()
def runs(
    runs_dir: Annotated[Path, typer.Argument(help="The runs directory.")] = Path("runs"),
    as_json: JsonOpt = False,
) -> None:
    """Past runs, newest first: trainings with their test metric, searches with their best."""
    from builder.compare import baseline_ratio, headline
    from builder.runs import json_text, list_runs

    with _errors():  # a runs directory that is a file; a damaged run is a row, not an error
        rows = list_runs(runs_dir)
    if as_json:
        sys.stdout.write(json_text(rows) + "\n")
        return
    if not rows:
        _print(f"no runs under {runs_dir}")
        return
    table = Table(title=f"runs in {runs_dir}")
    table.add_column("run", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("epochs", justify="right", no_wrap=True)
    # On a narrow screen it wraps, between words: nothing is cut.
    table.add_column("result", overflow="fold", min_width=14)
    for row in rows:
        run_id = str(Path(row["path"]).relative_to(runs_dir))
        if "damaged" in row:  # its reason in the result column; the other rows list as usual
            table.add_row(run_id, row["status"], "", row["damaged"])
            continue
        if row.get("kind") == "tune":
            table.add_row(run_id, row["status"], "", _tune_result(row["tune"]))
            continue
        test = row["test"]
        key = headline(test)
        value = test.get(key)
        shown = f"test {key} {_fmt(value)}" if value is not None else ""
        ratio = baseline_ratio({"test": test, "baselines": row["baselines"]})
        if value is not None and ratio:
            shown += f" ({ratio['ratio']:.3f}x {ratio['baseline'].replace('_', ' ')})"
        table.add_row(run_id, row["status"], str(row["epochs"] or ""), shown)
    out.print(table, width=_screen_width())


def _tune_result(tune: dict[str, Any]) -> str:
    """A tune run's "result" cell: its best trial's score, and the trials it ran."""
    trials = tune.get("trials")
    of = "" if trials is None else f" of {trials}"
    if tune.get("best_score") is None:
        return "tune: no finished trial" + ("" if trials is None else f" ({trials} run)")
    score = _fmt(float(tune["best_score"]))
    return f"tune: best {tune['objective']} {score} (trial {tune['best_trial']}{of})"


@app.command()
def explain(
    run: RunArg,
    data: Annotated[Path, typer.Option(help="CSV with the feature columns.")],
    row: Annotated[
        int, typer.Option(min=0, help="The data row (0: the first after the header).")
    ] = 0,
    as_json: JsonOpt = False,
    backend: BackendOpt = None,
) -> None:
    """One row through the network: each neuron's inputs, weights, sum and activation."""
    with _errors(), _announce_backend():
        from builder.explain import explain as explain_row
        from builder.runs import json_text, load_run

        result = explain_row(load_run(run, backend=backend), data, row)
    if as_json:
        sys.stdout.write(json_text(result) + "\n")
        return
    for line in explain_lines(result):
        _print(line)


def explain_lines(result: dict[str, Any]) -> list[str]:
    """``builder explain``'s text: the inputs, each layer's neurons, the prediction.

    A layer wider than ``builder.explain.MAX_NEURONS_SHOWN`` shows the neurons that move the
    next layer most for this row, a neuron with many inputs its largest terms (the rest summed).
    """
    from builder.explain import MAX_NEURONS_SHOWN, MAX_TERMS_SHOWN, top_indices

    lines = [f"{result['name']}: row {result['row']} of {result['data']}"]
    normalized = any(
        item["scale"] is not None and item.get("type") != "categorical" for item in result["inputs"]
    )
    lines.append(
        "inputs (raw -> normalized: (raw - training mean) / training std):"
        if normalized
        else "inputs:"
    )
    width = max(len(item["name"]) for item in result["inputs"])
    for item in result["inputs"]:
        shown = f"  {item['name']:<{width}}  {_fmt(item['raw']):>10}"
        if item.get("type") == "categorical":
            # Its text, the vocabulary's code for it, and what the model makes of the code.
            if item["unseen"]:
                how = "unseen in training: encoded as the training frequencies"
            elif item["encoding"] == "one_hot":
                how = f"one-hot: {next(iter(item['encoded']))} = 1"
            else:
                how = f"embedding row of {item['category']!r}"
            shown += f"  -> code {_fmt(item['code'])} ({how})"
        elif item["scale"] is not None:
            shown += f"  -> {_fmt(item['value'])}"
        lines.append(shown)
    for layer in result["layers"]:
        neurons = layer["neurons"]
        keep, left = top_indices([n["influence"] for n in neurons], MAX_NEURONS_SHOWN)
        kind = layer["type"] + (f", {layer['activation']}" if layer["type"] == "Dense" else "")
        head = f"{layer['name']} ({kind}): {len(neurons)} neuron{'s' if len(neurons) != 1 else ''}"
        if left:
            head += (
                f"; the {len(keep)} that move the next layer most for this row "
                f"({left} left out; explain --json has all)"
            )
        zeros = layer.get("inputs_left_out", 0)
        if zeros:
            head += (
                f"; its {zeros} one-hot input{'s' if zeros != 1 else ''} that "
                f"{'are' if zeros != 1 else 'is'} 0 for this row left out"
            )
        lines.append(head)
        for j in keep:
            lines.append("  " + _neuron_text(neurons[j], layer["type"], MAX_TERMS_SHOWN))
    lines.extend(_explain_outcome(result))
    return lines


def _neuron_text(neuron: dict[str, Any], kind: str, max_terms: int) -> str:
    from builder.explain import top_indices

    inputs, weights = neuron["inputs"], neuron["weights"]
    if kind == "Dense":
        terms = [w * item["value"] for w, item in zip(weights, inputs, strict=True)]
        keep, left = top_indices(terms, max_terms)
        text = ""
        for k, i in enumerate(keep):
            w, item = weights[i], inputs[i]
            sign = ("-" if w < 0 else "") if k == 0 else (" - " if w < 0 else " + ")
            text += f"{sign}{_fmt(abs(w))} x {_fmt(item['value'])} ({item['name']})"
        if left:
            rest = sum(t for i, t in enumerate(terms) if i not in set(keep))
            text += f" {'-' if rest < 0 else '+'} {_fmt(abs(rest))} ({left} more inputs)"
        bias = neuron["bias"]
        text += f" {'-' if bias < 0 else '+'} {_fmt(abs(bias))} (bias)"
        text += f" = {_fmt(neuron['weighted_sum'])}"
    else:
        value = inputs[0]["value"]
        text = _fmt(value)
        if neuron["weights"][0] != 1.0 or neuron["bias"] != 0.0:
            bias = neuron["bias"]
            text = (
                f"{_fmt(neuron['weights'][0])} x {_fmt(value)} {'-' if bias < 0 else '+'} "
                f"{_fmt(abs(bias))} = {_fmt(neuron['weighted_sum'])}"
            )
    activation, output = neuron["activation"], neuron["output"]
    if activation == "threshold":
        relation = ">=" if output == 1.0 else "<"
        text += f"; threshold: {relation} {_fmt(neuron['threshold'])} -> {output:.0f}"
    elif kind == "Dropout":
        text += " (dropout is off at prediction)"
    elif activation != "linear" or kind == "Dense":
        text += f"; {activation} -> {_fmt(output)}"
    return f"{neuron['name']}: {text}"


def _explain_outcome(result: dict[str, Any]) -> list[str]:
    target, actual = result["target"], result["actual"]
    lines = []
    scaling = result["target_scaling"]
    if scaling is not None:
        lines.append(
            f"target scaling: {_fmt(result['network_output'][0])} x {_fmt(scaling['scale'])} "
            f"+ {_fmt(scaling['offset'])} = {_fmt(result['output'][0])} "
            f"(the network learns a standardized {target})"
        )
    if result["task"] == "classification":
        from builder.explain import MAX_NEURONS_SHOWN, top_indices

        logits = ", ".join(_fmt(v) for v in result["logits"][: MAX_NEURONS_SHOWN + 1])
        more = len(result["logits"]) - MAX_NEURONS_SHOWN - 1
        logits += f" ... ({more} more; explain --json has all)" if more > 0 else ""
        lines.append(f"logit{'s' if len(result['logits']) > 1 else ''}: {logits}")
        items = list(result["probabilities"].items())
        keep, left = top_indices([p for _, p in items], MAX_NEURONS_SHOWN)
        shown = "  ".join(f"{items[i][0]}: {_fmt(items[i][1])}" for i in keep)
        head = f" (the {len(keep)} most probable of {len(items)})" if left else ""
        lines.append(f"class probabilities{head}: {shown}")
    seen = "" if actual is None else f" (actual {_fmt(actual)})"
    lines.append(f"prediction: {target} = {_fmt(result['prediction'])}{seen}")
    contributions = result.get("contributions")
    if contributions:
        text_columns = any(item.get("type") == "categorical" for item in result["inputs"])
        how = "coefficient x value" + ("; a text column: its category's effect" * text_columns)
        lines.append(f"contributions to {target} (raw units: {how}):")
        width = max(len(name) for name in [*contributions, "intercept"])
        coefficients = result["coefficients"]
        inputs = {item["name"]: item for item in result["inputs"]}
        for name, value in sorted(contributions.items(), key=lambda kv: -abs(kv[1])):
            item = inputs[name]
            if item.get("type") == "categorical":
                # The category's whole effect: its one-hot weight (or embedding row's sum).
                what = "unseen (training frequencies)" if item["unseen"] else item["category"]
                lines.append(f"  {name:<{width}}  {what}: {_fmt(value)}")
                continue
            lines.append(
                f"  {name:<{width}}  {_fmt(coefficients[name])} x {_fmt(item['raw'])} = "
                f"{_fmt(value)}"
            )
        lines.append(f"  {'intercept':<{width}}  {_fmt(result['intercept'])}")
        total = sum(contributions.values()) + result["intercept"]
        lines.append(f"  {'sum':<{width}}  {_fmt(total)} (= the prediction)")
    return lines


def _importance_table(result: dict[str, Any]) -> Table:
    """Permutation importance, most important feature first (``builder.importance``)."""
    table = Table(
        title=f"permutation importance: increase in test {result['loss']} when a feature is "
        f"shuffled (test {result['loss']} {_fmt(result['test_loss'])}; {result['repeats']} "
        f"shuffles of {result['rows']} rows, seed {result['seed']})",
        title_justify="left",
    )
    # A categorical feature is shuffled as one column of categories, so it has one row.
    typed = any(item.get("type") == "categorical" for item in result["features"])
    for col in ("feature", *(["type"] if typed else []), "mean increase", "std", "of the loss"):
        table.add_column(col, justify="left" if col in ("feature", "type") else "right")
    for item in result["features"]:
        share = f"{item['relative']:.1%}"
        kind = [item.get("type", "numeric")] if typed else []
        table.add_row(item["name"], *kind, _fmt(item["mean"]), _fmt(item["std"]), share)
    return table


@app.command()
def compare(
    runs_: Annotated[
        list[Path], typer.Argument(metavar="RUN RUN [RUN ...]", help="Run directories.")
    ],
    as_json: JsonOpt = False,
    plot_path: Annotated[
        Path | None,
        typer.Option("--plot", help="Also draw their validation curves into this PNG."),
    ] = None,
) -> None:
    """Runs side by side: the config keys that differ, test metrics, whether the data did."""
    with _errors():
        from builder.compare import compare as compare_runs
        from builder.runs import json_text

        result = compare_runs(runs_)
        if plot_path is not None:
            from builder import plotting
            from builder.compare import histories

            labels = [run["label"] for run in result["runs"]]
            result["plot"] = str(plotting.plot_compare(histories(result), labels, plot_path))
    if as_json:
        sys.stdout.write(json_text(result) + "\n")
        return
    for warning in result["warnings"]:
        err.print(f"warning: {warning}", markup=False, highlight=False)
    labels = [run["label"] for run in result["runs"]]
    differences = result["differences"]
    if differences:
        table = Table(title=f"config keys that differ ({len(differences)})", title_justify="left")
        table.add_column("key", no_wrap=True)
        for label in labels:
            table.add_column(label, overflow="fold")
        for row in differences:
            table.add_row(row["key"], *(_fmt(v) for v in row["values"]))
        out.print(table)
    else:
        _print("the configs are the same")
    table = Table(title="test metrics", title_justify="left")
    table.add_column("run", no_wrap=True)
    for name in result["metrics"]:
        table.add_column(name, justify="right")
    table.add_column("vs baseline", justify="right")
    for run in result["runs"]:
        cells = [_fmt(run["test"][n]) if n in run["test"] else "" for n in result["metrics"]]
        base = run["baseline"]
        if base is not None:
            name = base["baseline"].replace("_", " ")
            ratio = f"{base['ratio']:.3f}x {name} {base['metric']}"
        elif run["best"] is not None:
            best = run["best"]
            ratio = f"tune: best trial {best['trial']}, {best['objective']} {_fmt(best['score'])}"
        else:
            ratio = ""
        table.add_row(run["label"], *cells, ratio)
    out.print(table)
    first = result["runs"][0]["data"]
    if result["same_data"] and result["same_split"]:
        split = first["split"]
        _print(
            f"data: the same file (SHA-256 {first['sha256'][:12]}) and split (validation "
            f"{split['validation']}, test {split['test']}, seed {split['seed']})"
        )
    else:
        _print("data: NOT THE SAME for every run; see the warning above")
    if "plot" in result:
        _print(result["plot"])


@app.command()
def export(
    run: RunArg,
    format_: Annotated[
        str, typer.Option("--format", "-f", help="onnx, saved_model (a directory) or litert.")
    ],
    output: Annotated[
        str, typer.Option("--output", "-o", help="Where the export goes; its JSON beside it.")
    ],
    force: Annotated[
        bool, typer.Option("--force", help="Replace an export already at --output.")
    ] = False,
    backend: Annotated[
        str,
        typer.Option(
            "--backend",
            help="Keras backend to load the model on. The converters are TensorFlow's, and a "
            "model from any backend loads on it alike.",
        ),
    ] = "tensorflow",
) -> None:
    """Export the model as ONNX, a TensorFlow SavedModel or LiteRT, checked against it first."""
    with _errors(), _announce_backend():
        from builder.export import check_outputs
        from builder.export import export as export_run

        check_outputs(format_, output, force=force)  # before loading anything
        from builder.runs import load_run

        result = export_run(load_run(run, backend=backend), format_, output, force=force)
        check = result["check"]
        unseen = (
            f" + {check['unseen_rows']:,} with unseen categories" if check["unseen_rows"] else ""
        )
        _print(f"wrote {result['path']} ({result['format']})")
        _print(
            f"checked in {check['runtime']} on {check['rows']:,} test rows{unseen}: max difference "
            f"{check['max_rel_diff']:.2g} relative, {check['max_abs_diff']:.3g} absolute "
            f"(tolerance {check['rtol']:g})"
        )
        _print(f"metadata: {result['metadata']}")


@app.command()
def serve(
    run: RunArg,
    host: Annotated[
        str, typer.Option(help="Address to listen on (0.0.0.0: every interface).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free one).")] = 8000,
    max_body_bytes: Annotated[
        int, typer.Option(min=1, help="Largest request body read (413 above).")
    ] = 10 << 20,
    backend: BackendOpt = None,
) -> None:
    """Serve the run's predictions over HTTP: GET /health, /schema; POST /predict (JSON or CSV)."""
    with _errors(), _announce_backend():
        from builder.serving import bind, create_app, url

        sock = bind(host, port)  # a port in use fails before the model loads
        try:
            application = create_app(run, max_body_bytes=max_body_bytes, backend=backend)
        except BaseException:
            sock.close()
            raise
    _print(f"serving {run} at {url(sock)} (Ctrl-C stops)")
    sys.stdout.flush()
    with _errors():
        from builder.serving import serve as run_server

        run_server(application, sock)


@app.command()
def report(
    run: Annotated[Path, typer.Argument(help="A run directory (builder train or tune).")],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Where the HTML goes (default: RUN/report.html)."),
    ] = None,
    backend: BackendOpt = None,
) -> None:
    """One self-contained HTML page: metrics, curves, network, importance, one row explained."""
    with _errors(), _announce_backend():
        from builder.report import write_report

        _use_backend(backend)  # else the run's own (load_run)

        _print(str(write_report(run, output)))


def nul_argument(args: list[str]) -> str | None:
    """The message for the first argument holding a NUL byte, else ``None``.

    No path can hold one, and the OS cannot pass one to a process, but Python callers can: typer
    would answer with a usage box and ``open`` with ``ValueError: embedded null byte``.
    """
    for i, arg in enumerate(args):
        if "\0" not in arg:
            continue
        option, _, value = arg.partition("=")
        if option.startswith("--") and "\0" in value:
            where, arg = option, value
        elif i > 0 and args[i - 1].startswith("-") and not arg.startswith("-"):
            where = args[i - 1]
        else:
            where = f"argument {i + 1}"
        return f"{where} must not contain a NUL byte (no path can). Received: {arg!r}"
    return None


def main(argv: list[str] | None = None) -> None:
    """The typer app; the console script is ``builder.cli_fast.main``, which calls it.

    Args:
        argv: the arguments after ``builder`` (default: ``sys.argv``'s).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    # A shell's `>&-` starts Python with no sys.stdout: what would be printed goes nowhere, and
    # predict, whose output it is, refuses (see ``predict``).
    _state["stdout_closed"] = sys.stdout is None
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (lives as long as the process)
    message = nul_argument(args)
    if message is not None:
        err.print(f"error: {message}", markup=False, highlight=False)
        raise SystemExit(2)
    command = typer.main.get_command(app)
    try:
        code = command.main(args=args, prog_name="builder", standalone_mode=False)
    except Exception as error:
        if not is_usage_error(error):
            raise
        err.print(f"error: {usage_line(error)}", markup=False, highlight=False)
        raise SystemExit(2) from None
    raise SystemExit(code if isinstance(code, int) else 0)  # as typer's own standalone mode


def is_usage_error(error: BaseException) -> bool:
    """Whether ``error`` is click's ``UsageError`` (a bad option, argument or value).

    Matched by name through the class hierarchy: typer ships its own copy of click, whose
    classes are not public API.
    """
    return any(cls.__name__ == "UsageError" for cls in type(error).__mro__)


def usage_line(error: Any) -> str:
    """A usage error as one line: the message, then where the command's help is."""
    message = " ".join(str(error.format_message()).split())
    context = getattr(error, "ctx", None)
    where = context.command_path if context is not None else "builder"
    return f"{message} (see '{where} --help')"
