"""Grade answers: run each one against its problem's tests in the sandbox, return typed verdicts.

The one entry point every part of ap2o-coder uses to turn an answer into a label (the ``grade``
stage, the trainer's quiz, evaluation). A verdict is a frozen ``Verdict`` whose fields are exactly
``schemas.VERDICT``'s columns, so a typo in a field name fails where it is written instead of
reading None; ``error_type``/``error_category``/``status`` follow ``builder.grading.taxonomy``.

    from builder.grading.grader import GraderConfig, Grader, grade_table
    with Grader(GraderConfig(timeout_s=3.0)) as grader:
        verdicts = grader.grade(rows)          # rows: mappings with completion + problem fields
        verdicts[0].passed, verdicts[0].error_type
    table = grade_table(rows_table, GraderConfig())  # input columns + verdict, schemas.ANSWERS

Problem kinds: ``function`` rows carry ``test`` (code defining ``check(candidate)``) and
``entry_point``; the grader calls ``check(<entry_point>)`` itself. ``stdio`` rows carry ``inputs``
and ``outputs`` (lists of strings): the program runs once per case and its stdout is compared.
The kind is the row's ``kind`` when present, else inferred from which columns are filled.
"""

from __future__ import annotations

import keyword
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from typing import Any

import pyarrow as pa

import schemas
from builder.errors import UserError, wait_first
from builder.generation.extract import extract_code
from builder.grading import taxonomy
from builder.grading.sandbox.jobs import function_job, stdio_job
from builder.grading.sandbox.judge import prelude_of
from builder.grading.sandbox.pool import SandboxSettings, WorkerPool
from builder.progress import bar

VERDICT_KEYS = tuple(schemas.VERDICT.names)


@dataclass
class GraderConfig:
    """How answers are run. Defaults fit HumanEval/MBPP-sized problems."""

    # on the command line: --timeout (--timeout-s too); see COMMAND_LINE
    timeout_s: float = field(default=3.0, metadata={
        "help": "wall-clock limit per run in seconds (a function problem's whole test; each stdio case)"})
    memory_mb: int = field(default=2048, metadata={
        "help": "address-space limit per answer in MiB (2 GiB is enough for `import numpy`)"})
    workers: int | None = field(default=None, metadata={
        "help": "sandbox worker processes; None = one per available core"})
    output_limit_mb: float = field(default=8.0, metadata={
        "help": "a stdio answer printing more than this many MiB per case is an OutputLimit error"})
    stdout_keep_bytes: int = field(default=4096, metadata={
        "help": "how much of an answer's printed output is kept in the `stdout` column (its tail)"})
    max_processes: int = field(default=64, metadata={
        "help": "RLIMIT_NPROC for an answer (processes and threads it may have at once)"})
    max_open_files: int = field(default=256, metadata={"help": "RLIMIT_NOFILE for an answer"})
    max_file_mb: int = field(default=64, metadata={"help": "largest file an answer may write, MiB (RLIMIT_FSIZE)"})
    tmp_mb: int = field(default=256, metadata={
        "help": "size cap of a worker's private RAM-backed /tmp, which holds the answer's scratch directory, MiB "
                "(with bubblewrap)"})
    isolation: str = field(default="auto", metadata={
        "help": "'auto' (bubblewrap when it works here, else rlimits with a warning), 'bwrap' (required), "
                "'rlimits' (never bubblewrap)", "choices": ("auto", "bwrap", "rlimits")})

    time_limit: str = field(default="reference", metadata={
        "help": "'reference': an answer to a problem with a measured reference time (the problems table's "
                "reference_cpu_s) may use max(time_limit_floor_s, time_limit_factor x reference) CPU seconds, "
                "with --timeout (or twice the CPU limit, when larger) as the wall-clock backstop; 'fixed': "
                "--timeout of wall clock for every answer. Problems without a reference get the fixed limit "
                "either way",
        "choices": ("fixed", "reference")})
    time_limit_factor: float = field(default=4.0, metadata={
        "help": "the 'reference' policy's multiple of the reference solution's CPU time (EvalPlus: 4)"})
    time_limit_floor_s: float = field(default=1.0, metadata={
        "help": "the 'reference' policy's smallest CPU-time limit, seconds: room for what a fast reference "
                "does not pay and an honest answer may (importing pandas costs 0.3 CPU-s)"})

    answer_packages: tuple[str, ...] = field(default=("numpy", "scipy", "sympy", "networkx", "pandas",
                                                      "sortedcontainers"), metadata={
        "help": "installed Python distributions an answer (and its test) may import besides the standard library, "
                "each with the distributions it requires; inside bubblewrap nothing else that is installed is "
                "visible to an answer (docs/sandbox.md); those not installed here are skipped"})

    pin_workers: bool = field(default=True, metadata={
        "help": "pin each sandbox worker, with the judge and the answers it runs, to one core of those this "
                "process may use (round-robin): the processes of one answer hand off to each other on every "
                "test call, which is cheaper on one core; false lets the scheduler place them"})

    def __post_init__(self):
        # Checked before any worker starts: NaN slips past every comparison, inf or 1e12 overflows
        # the deadlines and rlimits downstream, and a limit past the machine's RAM bounds nothing.
        _check_range("timeout_s", self.timeout_s, 0, MAX_TIMEOUT_S, low_open=True)
        _check_range("memory_mb", self.memory_mb, MIN_MEMORY_MB, max(_ram_mib(), 4096))
        if self.workers is not None:
            _check_range("workers", self.workers, 1, MAX_WORKERS, integer=True)
        _check_range("output_limit_mb", self.output_limit_mb, 0, 1024, low_open=True)
        _check_range("stdout_keep_bytes", self.stdout_keep_bytes, 0, 1 << 20, integer=True)
        _check_range("max_processes", self.max_processes, 1, 4096, integer=True)
        # the child moves its report pipe to a random descriptor in [64, max_open_files - 8)
        _check_range("max_open_files", self.max_open_files, 80, 65536, integer=True)
        _check_range("max_file_mb", self.max_file_mb, 1, 64 * 1024)
        _check_range("tmp_mb", self.tmp_mb, 1, max(_ram_mib(), 4096))
        if self.isolation not in ("auto", "bwrap", "rlimits"):
            raise UserError(f"isolation must be 'auto', 'bwrap' or 'rlimits', got {self.isolation!r}")
        if self.time_limit not in TIME_LIMITS:
            raise UserError(f"time_limit must be 'fixed' or 'reference', got {self.time_limit!r}")
        _check_range("time_limit_factor", self.time_limit_factor, 0, 1000, low_open=True)
        _check_range("time_limit_floor_s", self.time_limit_floor_s, 0, MAX_TIMEOUT_S, low_open=True)
        if isinstance(self.answer_packages, str) or not all(
                isinstance(p, str) and _DISTRIBUTION_NAME.fullmatch(p) for p in self.answer_packages):
            raise UserError(f"answer_packages must be distribution names (letters, digits, '.', '-', '_'), "
                            f"got {self.answer_packages!r}")
        self.answer_packages = tuple(self.answer_packages)

    def run_limits(self, reference_cpu_s: float | None) -> tuple[float, float | None]:
        """(wall-clock seconds, CPU seconds or None) for one run of an answer to a problem whose
        reference solution took ``reference_cpu_s`` CPU seconds (None: not measured).

        Why CPU time: an answer's CPU time does not grow when other processes share its core, its
        wall time does; a tight wall-clock limit on a loaded machine turns slow-but-correct answers
        into Timeouts. The wall clock stays as the backstop for answers that sleep or block (they
        use no CPU): the fixed ``timeout_s``, raised to twice the CPU limit where that is larger,
        so that an answer may run at half speed before the wall clock decides."""
        if self.time_limit != "reference" or reference_cpu_s is None:
            return self.timeout_s, None
        cpu = min(max(self.time_limit_floor_s, self.time_limit_factor * reference_cpu_s), MAX_TIMEOUT_S / 2)
        return max(self.timeout_s, 2 * cpu), cpu

    def sandbox_settings(self):
        mib = 1024 * 1024
        return SandboxSettings(
            timeout_s=self.timeout_s, memory_bytes=int(self.memory_mb * mib),
            output_limit_bytes=int(self.output_limit_mb * mib), stdout_keep_bytes=self.stdout_keep_bytes,
            max_processes=self.max_processes, max_open_files=self.max_open_files,
            max_file_bytes=int(self.max_file_mb * mib), tmp_bytes=int(self.tmp_mb * mib), isolation=self.isolation,
            pin_workers=self.pin_workers, answer_packages=self.answer_packages)

    def worker_count(self) -> int:
        if self.workers:
            return self.workers
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # not Linux
            return max(1, os.cpu_count() or 1)


# How GraderConfig's fields are spelt on every command that grades (grade, run, ap2o-eval):
# `--timeout` is what users type, `--timeout-s` what the field's name gives; both work everywhere.
COMMAND_LINE = {"rename": {"timeout_s": "timeout"}, "aliases": {"timeout_s": ("--timeout-s",)}}
MAX_TIMEOUT_S = 3600.0
TIME_LIMITS = ("fixed", "reference")
_DISTRIBUTION_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")
MIN_MEMORY_MB = 32  # SandboxSettings' floor; the pool's start-up probe decides what is too small for Python here
MAX_WORKERS = 1024  # the sandbox gives worker i the uids base + 2 x (i % 1024) (+ 1: its judge's)


def _ram_mib() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // (1024 * 1024)
    except (ValueError, OSError, AttributeError):  # not Linux
        return 1 << 30


def _check_range(name: str, value, low, high, *, low_open: bool = False, integer: bool = False) -> None:
    """``UserError`` unless ``low <= value <= high`` (``low < value`` with ``low_open``), finite,
    and a whole number where ``integer``."""
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type:
        kind = "a whole number" if integer else "a number"
        raise UserError(f"{name} must be {kind}, got {value!r}")
    if not math.isfinite(value) or value < low or value > high or (low_open and value == low):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"
        raise UserError(f"{name} must be in {interval}, got {value!r}")


def infer_kind(row: Mapping) -> str:
    """``function`` or ``stdio``: the row's own ``kind`` wins, else which tests it carries."""
    kind = row.get("kind")
    if kind:
        return kind
    if row.get("test") is None and row.get("inputs") is not None:
        return "stdio"
    return "function"


def reference_of(row: Mapping, index: int) -> float | None:
    """The row's ``reference_cpu_s`` (the problem's measured reference time), None when absent."""
    value = row.get("reference_cpu_s")
    if value is None:
        return None

    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise UserError(f"row {index}: reference_cpu_s must be a finite number >= 0 or null, got {value!r}")
    return float(value)


def make_job(row: Mapping, index: int, config: GraderConfig) -> dict | None:
    """The worker's job for one row; None when the answer has no code (a NoCode verdict). Its
    limits come from ``config.run_limits`` and the row's ``reference_cpu_s``: ``timeout`` the wall
    clock, ``cpu_limit`` the CPU time (None under the fixed limit)."""
    if "completion" not in row:
        raise UserError(f"row {index}: missing column 'completion'")
    timeout_s, cpu_limit = config.run_limits(reference_of(row, index))
    code = extract_code(row["completion"])
    if code is None:
        return None
    return _job(row, index, infer_kind(row), code, {"timeout": timeout_s, "cpu_limit": cpu_limit})


def _job(row: Mapping, index: int, kind: str, code: str, limits: dict) -> dict:
    if kind == "function":
        for col in ("test", "entry_point"):
            if not row.get(col):
                raise UserError(f"row {index}: function problem without {col!r}")
        entry = row["entry_point"]
        # the judge binds it as a name of the test's namespace: "add; import os" or "__import__" is no entry point
        if (not isinstance(entry, str) or not entry.isidentifier() or keyword.iskeyword(entry)
                or (entry.startswith("__") and entry.endswith("__"))):
            raise UserError(f"row {index}: entry_point must be a Python function name, got {entry!r}")

        # the problem's helpers (HumanEval/32's poly) run in the judge from the prompt, never the answer's copy
        return function_job(code, row["test"], row["entry_point"],
                            prelude=prelude_of(row.get("prompt"), row["entry_point"]), **limits)
    if kind == "stdio":
        inputs, outputs = row.get("inputs"), row.get("outputs")
        if (not isinstance(inputs, (list, tuple)) or not isinstance(outputs, (list, tuple)) or not inputs
                or len(inputs) != len(outputs)):
            raise UserError(f"row {index}: stdio problem needs 'inputs' and 'outputs' lists of the same "
                            f"non-zero length")
        for col, values in (("inputs", inputs), ("outputs", outputs)):
            bad = next((v for v in values if not isinstance(v, str)), None)
            if bad is not None or None in values:  # a null would become the text "None"
                raise UserError(f"row {index}: column {col!r} must hold strings (the case's stdin and stdout), "
                                f"got {bad!r}")

        return stdio_job(code, list(inputs), list(outputs), **limits)
    raise UserError(f"row {index}: unknown kind {kind!r} (expected one of {', '.join(schemas.PROBLEM_KINDS)})")


@dataclass(frozen=True, slots=True)
class Verdict:
    """How one answer fared: the ``schemas.VERDICT`` columns as a typed, immutable record (a
    verdict is a fact about a run; nothing downstream may edit it). Build one with
    ``make_verdict``, which derives ``passed``/``status``/``error_category`` from the error type;
    ``to_row()`` gives the dict a table row wants, ``verdict_table`` the Arrow table."""

    passed: bool
    status: str
    error_type: str | None
    error_class: str | None
    error_category: str | None
    error_message: str | None
    traceback: str | None
    error_line: int | None
    failed_test: str | None
    runtime_s: float | None
    stdout: str | None

    def to_row(self) -> dict:
        """The verdict as a row: keys ``VERDICT_KEYS``, in the schema's order."""
        return {name: getattr(self, name) for name in VERDICT_KEYS}


if tuple(f.name for f in fields(Verdict)) != VERDICT_KEYS:  # schemas.VERDICT changed: change Verdict with it
    raise TypeError(f"Verdict's fields {[f.name for f in fields(Verdict)]} are not schemas.VERDICT's {VERDICT_KEYS}")


def make_verdict(raw: Mapping) -> Verdict:
    """The ``Verdict`` of a worker's result; status and category come from the taxonomy so that
    they can never disagree with the error type. Every text field goes through ``safe_text``:
    the answer wrote most of them."""
    error_type = safe_text(raw.get("error_type"), taxonomy.MAX_CLASS_NAME)
    if error_type == "":
        error_type = "Exception"  # a label is never empty, whatever reached us
    line = raw.get("error_line")
    return Verdict(
        passed=error_type is None,
        status=taxonomy.status_of(error_type),
        error_type=error_type,
        error_class=safe_text(raw.get("error_class"), taxonomy.MAX_CLASS_NAME),
        error_category=taxonomy.category_of(error_type),
        error_message=safe_text(raw.get("error_message"), taxonomy.MAX_MESSAGE),
        traceback=safe_text(raw.get("traceback"), taxonomy.MAX_TRACEBACK),
        error_line=line if type(line) is int and -2**31 <= line < 2**31 else None,
        failed_test=safe_text(raw.get("failed_test"), taxonomy.MAX_MESSAGE),
        runtime_s=raw.get("runtime_s"),
        stdout=safe_text(raw.get("stdout"), 1 << 20) or None,
    )


def verdict_table(verdicts: Iterable[Verdict]) -> pa.Table:
    """The verdicts as a ``schemas.VERDICT`` table, one row per verdict, in order."""
    return pa.Table.from_pylist([v.to_row() for v in verdicts], schema=schemas.VERDICT)


def safe_text(value, limit: int) -> str | None:
    """Text an answer produced, made fit for Arrow and for a dataset: lone surrogates (which
    ``pa.Table.from_pylist`` refuses) become ``\\udXXX`` escapes, anything not a str becomes its
    repr, and at most ``limit`` characters are kept. The one place every verdict's text passes."""
    if value is None:
        return None
    if type(value) is not str:
        value = repr(value)
    if len(value) > limit:
        value = value[:limit]
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


NO_CODE_RESULT = {"error_type": taxonomy.NO_CODE, "error_message": "the answer contains no code to run",
                  "runtime_s": 0.0}


class Grader:
    """A pool of sandbox workers; use as a context manager so the workers always go away."""

    def __init__(self, config: GraderConfig | None = None):
        self.config = config or GraderConfig()
        self._pool = None

    def __enter__(self) -> Grader:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        if self._pool is None:
            self._pool = WorkerPool(self.config.worker_count(), self.config.sandbox_settings())

    @property
    def isolated(self) -> bool:
        """Whether the workers run inside bubblewrap."""
        self.start()
        return self._pool.use_bwrap

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def grade(self, rows: Iterable[Mapping], progress: bool = False) -> list[Verdict]:
        """One ``Verdict`` per row, in order."""
        jobs = [make_job(row, i, self.config) for i, row in enumerate(rows)]
        shown = bar(total=len(jobs), desc="grade", unit="answer", disable=not progress, dynamic_ncols=True)
        try:
            return [make_verdict(result) for result in self.run_jobs(jobs, bar=shown)]
        finally:
            shown.close()

    def run_jobs(self, jobs: Sequence[dict | None], *, bar: Any = None) -> list[dict]:
        """The worker's raw result of each job (``make_job``'s), in order, run on every worker at
        once; ``NO_CODE_RESULT`` for a None job (no code to run). ``bar``: a progress bar to
        advance per job. The one loop over the pool: verdicts (``grade``) and the reference
        timing (``builder.engine.references``) both run through it."""
        self.start()
        results: list[dict | None] = [None] * len(jobs)
        threads = ThreadPoolExecutor(max_workers=self._pool.size, thread_name_prefix="ap2o-grade")
        try:
            futures = {}
            for i, job in enumerate(jobs):
                if job is None:
                    results[i] = NO_CODE_RESULT
                    if bar is not None:
                        bar.update(1)
                else:
                    futures[threads.submit(self._pool.run, job)] = i
            pending = set(futures)
            while pending:
                done, pending = wait_first(pending)  # not as_completed: it would not see a Ctrl-C
                for future in done:
                    results[futures[future]] = future.result()
                    if bar is not None:
                        bar.update(1)
        except BaseException:
            # Ctrl-C or a failed job: kill the answers in flight and drop the queued ones now;
            # a plain `with` would wait for every queued answer to run to its deadline first
            self._pool.abort()
            threads.shutdown(wait=True, cancel_futures=True)
            self.close()
            raise
        finally:
            threads.shutdown(wait=True)
        return results  # type: ignore[return-value]


def grade_table(table: pa.Table, config: GraderConfig | None = None, progress: bool = True, *,
                grader: Grader | None = None) -> pa.Table:
    """``table``'s columns plus the verdict columns (replacing any it had), in ``schemas.ANSWERS``:
    graded answers as the stages pass them on (``completion`` is the program that ran); the
    notebook stage turns them into the published ``samples`` config. ``grader``: a pool to reuse
    (the engine grades many chunks, the quiz many quizzes, with one); else one is started here."""
    rows = table.to_pylist()
    if grader is not None:
        verdicts = grader.grade(rows, progress=progress)
    else:
        with Grader(config) as grader:
            verdicts = grader.grade(rows, progress=progress)
    base = table.drop_columns([c for c in VERDICT_KEYS if c in table.column_names])
    kinds = pa.array([infer_kind(r) for r in rows], pa.string())  # rows without a kind get the inferred one
    if "kind" in base.column_names:
        base = base.set_column(base.column_names.index("kind"), "kind", kinds)
    else:
        base = base.append_column("kind", kinds)
    graded = verdict_table(verdicts)
    for f in graded.schema:
        base = base.append_column(f, graded.column(f.name))
    return schemas.conform(base, schemas.ANSWERS)


__all__ = ["VERDICT_KEYS", "Grader", "GraderConfig", "Verdict", "grade_table", "infer_kind", "make_verdict",
           "safe_text", "verdict_table"]
