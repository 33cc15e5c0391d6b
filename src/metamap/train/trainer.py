"""The meta-training loop: sample a batch of tasks, take a meta-gradient step, validate, save.

Resumable: ``checkpoints/last.pt`` holds the learner, the optimizer, the schedule, the task
sampler's RNG state and the step, so a run killed at any moment and resumed ends with exactly the
weights of an uninterrupted run. ``checkpoints/best.pt`` holds the weights with the best
validation score on a fixed, seeded set of tasks (and the whole state at that step, so a run whose
``last.pt`` is lost resumes from it and replays the same steps).

What a run folder is guaranteed (:meth:`Trainer.fit`): one trainer at a time holds it
(:class:`~metamap.train.rundir.RunLock`); every file the trainer replaces is replaced atomically;
temporaries of interrupted writes are removed at the next start; and a folder holding results is
never overwritten implicitly: it is resumed when that provably continues the same run (the
stored configuration's fingerprint matches), refused otherwise, and cleared only on
``fit(resume=False)`` (``metamap train --restart``).
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import yaml

from metamap.core.problem import Problem
from metamap.errors import CheckpointError, ConfigError, NonFiniteLossError, RunFolderError
from metamap.fileio import atomic_write_text, check_output_dir, remove_stale_temporaries
from metamap.learners import MetaLearner, MetaStep
from metamap.models import reseed_drop_layers
from metamap.progress import progress_bar
from metamap.tasks import make_generator
from metamap.train.build import build_run_learner, resolve_device
from metamap.train.checkpoint import check_run_state, load_checkpoint, save_checkpoint
from metamap.train.compiled import CompiledLearner
from metamap.train.config import RunConfig, parse_config
from metamap.train.distributed import ShardedLearner, any_rank, rank_and_world
from metamap.train.learner_view import LearnerView
from metamap.train.metrics import MetricsLog
from metamap.train.problems import VAL_CHUNK, VAL_SEED_OFFSET, build_problem
from metamap.train.rundir import RunLock, RunPaths
from metamap.train.schedule import lr_factor, schedule_mismatch

__all__ = [
    "VAL_CHUNK",
    "VAL_SEED_OFFSET",
    "TrainResult",
    "Trainer",
    "check_run_folder",
    "check_time_budget",
]


def check_time_budget(minutes: float | None) -> None:
    """A time budget (``metamap train --minutes``, ``fit(minutes=)``) is a positive number of
    minutes, or none; refused before any work otherwise."""
    if minutes is not None and not (math.isfinite(minutes) and minutes > 0):
        raise ConfigError(
            f"the time budget (--minutes) must be a positive number of minutes, got {minutes:g}"
        )


def _stored_config(state: dict[str, Any], evaluation: dict[str, Any]) -> RunConfig | None:
    """The config a checkpoint stores, parsed by this version of metamap (``None``: unreadable).

    Re-parsing (rather than trusting the stored fingerprint) lets a checkpoint written before a
    config field was added, or before a field stopped counting, resume: the new field takes its
    default. The resuming run's ``evaluation`` section stands in for the stored one: it does not
    count for the fingerprint, so a run resumes whatever it is to be scored with.
    """
    try:
        return parse_config({**state["config"], "eval": evaluation}, legacy=True)
    except (KeyError, TypeError, ConfigError):
        return None


def _identity(path: Path | None) -> tuple[Path, int, int] | None:
    """A checkpoint file's path, modification time and size: whether it was rewritten."""
    if path is None:
        return None
    st = path.stat()
    return path, st.st_mtime_ns, st.st_size


def _same_run(cfg: RunConfig, stored_yaml: Path) -> bool:
    try:
        stored = parse_config(yaml.safe_load(stored_yaml.read_text()), legacy=True)
    except Exception:  # missing, unreadable or invalid: not provably the same run
        return False
    return stored.fingerprint() == cfg.fingerprint()


def check_run_folder(cfg: RunConfig, out_dir: str | Path, resume: bool = True) -> None:
    """Raise :class:`RunFolderError` if training ``cfg`` into ``out_dir`` would overwrite results
    it was not asked to: a folder with results (metrics, scores) but no checkpoint to resume
    from, unless its ``config.yaml`` shows the same run (then it is replayed from step 0, which
    loses nothing). ``resume=False`` (a deliberate restart) is never refused. Reads only."""
    paths = RunPaths(Path(out_dir))
    if not resume or paths.last.is_file() or paths.best.is_file():
        return
    found = paths.results()
    if not found or (paths.evaluation not in found and _same_run(cfg, paths.config)):
        return
    names = ", ".join(str(p.relative_to(paths.out_dir)) for p in found)
    raise RunFolderError(
        f"run folder {str(paths.out_dir)!r} holds results ({names}) but no checkpoint to resume "
        "from (checkpoints/last.pt or best.pt), so training would start over and overwrite "
        "them; pass --restart (Trainer.fit(resume=False)) to discard them, or choose a new --out"
    )


@dataclass(frozen=True)
class TrainResult:
    out_dir: Path
    step: int
    best_step: int
    best_val: float
    last_loss: float
    train_seconds: float
    """Wall-clock seconds spent training, summed over every resumed session."""
    train_cpu_seconds: float | None = None
    """CPU seconds this process spent training (user + system, every thread; rank 0's with
    several processes), summed over every resumed session; unlike the wall clock, not inflated
    when other work shares the machine. ``None`` when part of the run was made by a metamap that
    did not count it."""
    budget_stopped: bool = False
    """Whether this call's time budget (``fit(minutes=...)``) ended it before ``train.steps``:
    its last step is checkpointed, and the same call continues the run."""


class Trainer:
    """Meta-trains the learner a :class:`RunConfig` describes, writing into ``out_dir``."""

    def __init__(
        self,
        cfg: RunConfig,
        out_dir: str | Path | None = None,
        *,
        problem: Problem | None = None,
        learner: MetaLearner | None = None,
    ) -> None:
        """The problem and learner ``cfg`` describes, or a ``problem`` of your own with its
        ``learner`` (then ``cfg`` gives the seed, the ``train`` section and the fingerprint)."""
        self.cfg = cfg
        self.out_dir = Path(out_dir if out_dir is not None else cfg.out_dir)
        resolve_device(cfg.train.device)  # a wrong device fails at once, before any data
        if problem is None:
            built = build_problem(cfg)
            problem = built
            learner = learner or build_run_learner(
                cfg, built.base_classes(), baseline=built.baseline()
            )
        elif learner is None:
            raise ConfigError("a problem of your own needs its learner: Trainer(..., learner=)")
        self.problem: Problem = problem
        """What differs between kinds of task: drawing them, the outer update, validation."""
        self.learner: MetaLearner = learner
        self.higher_is_better = self.problem.higher_is_better
        self.val_name = f"val_{self.problem.metric}"
        t = cfg.train
        params = list(self.learner.parameters())
        self.optimizer: torch.optim.Optimizer = (
            torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
            if t.optimizer == "adam"
            else torch.optim.SGD(
                params,
                lr=t.lr,
                momentum=t.momentum,
                nesterov=t.nesterov,
                weight_decay=t.weight_decay,
            )
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_factor(t))
        self.generator = make_generator(cfg.seed)
        self.step = 0
        self.best_step = 0
        self.best_val = -math.inf if self.higher_is_better else math.inf
        self.last_loss = math.nan
        self.train_seconds = 0.0
        self.train_cpu_seconds: float | None = 0.0
        self.rank, self.world = rank_and_world()
        """This process's rank among ``world`` data-parallel processes (``0, 1``: alone)."""
        self._resumed_from: tuple[Path, int, int] | None = None
        self.on_resume: Callable[[Path, int], None] | None = None
        """Called with the checkpoint and its step once a resume has loaded it (a hook, e.g.
        for the command line's note)."""

    # ---- paths ---------------------------------------------------------------------------
    @property
    def last_path(self) -> Path:
        return RunPaths(self.out_dir).last

    @property
    def best_path(self) -> Path:
        return RunPaths(self.out_dir).best

    @property
    def result_path(self) -> Path:
        """The run's result as ``eval.checkpoint`` names it: best validation, or the last step."""
        return RunPaths(self.out_dir).result(self.cfg.eval.checkpoint)

    @property
    def metrics_path(self) -> Path:
        """The run's metrics log (JSON lines: step, loss, lr, time, validation)."""
        return RunPaths(self.out_dir).metrics

    # ---- state ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "config": self.cfg.model_dump(mode="json"),
            "fingerprint": self.cfg.fingerprint(),
            "step": self.step,
            "best_step": self.best_step,
            "best_val": self.best_val,
            "learner": self.learner.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "generator": self.generator.get_state(),
            "train_seconds": self.train_seconds,
            "train_cpu_seconds": self.train_cpu_seconds,
        }

    def load_state_dict(self, state: dict[str, Any], source: str) -> None:
        check_run_state(state, source, resumable=True)
        stored = _stored_config(state, self.cfg.eval.model_dump(mode="json"))
        if stored is None:
            raise CheckpointError(
                f"checkpoint {source!r} stores a configuration this version of metamap cannot "
                "read, so it cannot be checked against this run's; use a new out_dir"
            )
        theirs = stored.fingerprint()
        if theirs != self.cfg.fingerprint():
            raise CheckpointError(
                f"checkpoint {source!r} was written by a run with another configuration "
                f"(fingerprint {theirs} ≠ {self.cfg.fingerprint()}); "
                "use a new out_dir, or the same config to resume"
            )
        step = int(state["step"])
        differ = schedule_mismatch(stored.train, self.cfg.train, step)
        if differ is not None:
            at, before, after = differ
            raise CheckpointError(
                f"checkpoint {source!r} reached step {step} under another learning-rate "
                f"schedule (at step {at} its rate was {before:.3g}, this config's is "
                f"{after:.3g}); a schedule may change only from the step a run has reached, "
                f"e.g. train.schedule=piecewise with train.milestones=[{step}]"
            )
        self.learner.load_state_dict(state["learner"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        # this config's rate for the next step, not the stored one (the schedule may differ)
        rates = zip(self.scheduler.base_lrs, self.scheduler.lr_lambdas, strict=True)
        for group, (base, factor) in zip(self.optimizer.param_groups, rates, strict=True):
            group["lr"] = base * factor(step)
        self.generator.set_state(state["generator"])
        self.step = step
        self.best_step = int(state["best_step"])
        self.best_val = float(state["best_val"])
        self.train_seconds = float(state.get("train_seconds", 0.0))
        cpu = state.get("train_cpu_seconds")  # absent from checkpoints before it was counted
        self.train_cpu_seconds = None if cpu is None else float(cpu)

    def resume_source(self) -> Path | None:
        """The checkpoint a resume starts from: ``last.pt``, else ``best.pt`` (a whole state at
        an earlier step, from which the same steps are replayed), else none."""
        paths = RunPaths(self.out_dir)
        return next((p for p in (paths.last, paths.best) if p.is_file()), None)

    def resume(self) -> bool:
        """Load :meth:`resume_source` if there is one; returns whether it did."""
        source = self.resume_source()
        self._resumed_from = _identity(source)
        if source is None:
            return False
        self.load_state_dict(load_checkpoint(source), str(source))
        if self.on_resume is not None:
            self.on_resume(source, self.step)
        return True

    def check_run_folder(self, resume: bool = True) -> None:
        """:func:`check_run_folder` for this trainer's config and folder."""
        check_run_folder(self.cfg, self.out_dir, resume)

    # ---- the loop ------------------------------------------------------------------------
    def validate(self) -> float:
        """The problem's metric (query MSE, accuracy, ...) on its fixed validation tasks, after
        the trained number of inner steps."""
        return self.problem.validate(self.learner)

    def _better(self, val: float) -> bool:
        if not math.isfinite(val):
            return False
        return val > self.best_val if self.higher_is_better else val < self.best_val

    def fit(
        self, resume: bool = True, stop_after: int | None = None, minutes: float | None = None
    ) -> TrainResult:
        """Train to ``train.steps`` (or stop after ``stop_after`` steps, as a kill would).

        ``minutes``: a time budget for this call (``metamap train --minutes``). Once it is spent
        the call stops after the step under way, with that step checkpointed (at least one step
        per call), and returns ``budget_stopped=True``; calling again continues the run exactly
        as if it had not stopped. With several processes they stop at the same step.

        ``resume=True`` continues the run in ``out_dir`` from :meth:`resume_source`, or starts
        it; :meth:`check_run_folder` refuses a folder whose results that would overwrite.
        ``resume=False`` discards the folder's results first (``metamap train --restart``). The
        folder is locked against other trainers for the whole call
        (:class:`~metamap.errors.RunLockedError`).
        """
        # Checked and loaded before the lock, so that a refusal leaves the folder untouched.
        check_time_budget(minutes)
        check_output_dir(self.out_dir, "out_dir")
        deadline = None if minutes is None else time.monotonic() + 60 * minutes
        self.problem.prepare()
        if self.rank > 0:  # a follower: rank 0 checks, locks and prepares the folder first
            dist.barrier()
            if resume:
                self.resume()
            return self._loop(None, stop_after, deadline)
        self.check_run_folder(resume)
        resumed = resume and self.resume()
        with RunLock(self.out_dir):
            paths = RunPaths(self.out_dir)
            for folder in (self.out_dir, paths.checkpoints):
                remove_stale_temporaries(folder)
            self.check_run_folder(resume)  # again: the folder may have changed before the lock
            if not resume:
                for p in paths.outputs():
                    p.unlink()
            elif self._resumed_from != _identity(self.resume_source()):  # written meanwhile
                resumed = self.resume()
            atomic_write_text(paths.config, self.cfg.to_yaml())
            log = MetricsLog(self.metrics_path, self.step if resumed else None)
            if self.world > 1:
                dist.barrier()  # the followers load the same checkpoint now
            return self._loop(log, stop_after, deadline)

    def _loop(
        self, log: MetricsLog | None, stop_after: int | None, deadline: float | None
    ) -> TrainResult:
        """The steps; with several processes only rank 0 (``log`` given) validates, logs and
        writes checkpoints, the others compute their share of every meta-gradient. Stops
        after a step that ends past ``deadline`` (``time.monotonic()``) on any process."""
        cfg, t = self.cfg, self.cfg.train
        device = torch.device(t.device)
        bar = progress_bar(
            total=t.steps,
            initial=self.step,
            disable=not t.progress or log is None,
            desc=cfg.name,
            dynamic_ncols=True,
            leave=False,
        )
        start = time.perf_counter() - self.train_seconds
        cpu_start = time.process_time() - (self.train_cpu_seconds or 0.0)
        stopped = False
        try:
            while self.step < t.steps:
                if stop_after is not None and self.step >= stop_after:
                    break
                self._one_step(self._gradients(device))
                self.train_seconds = time.perf_counter() - start
                if self.train_cpu_seconds is not None:
                    self.train_cpu_seconds = time.process_time() - cpu_start
                # every process stops at the same step once any has spent the budget
                stopped = (
                    deadline is not None
                    and self.step < t.steps
                    and any_rank(time.monotonic() >= deadline)
                )
                if log is not None:
                    self._record(log, start, checkpoint=stopped)
                    bar.update(1)
                    best = f"{self.best_val:.4f}" if math.isfinite(self.best_val) else "–"
                    bar.set_postfix(loss=f"{self.last_loss:.4f}", best_val=best, refresh=False)
                if stopped:
                    break
        finally:
            bar.close()
        return TrainResult(
            self.out_dir,
            self.step,
            self.best_step,
            self.best_val,
            self.last_loss,
            self.train_seconds,
            self.train_cpu_seconds,
            budget_stopped=stopped,
        )

    def _record(self, log: MetricsLog, start: float, checkpoint: bool = False) -> None:
        """After a step (rank 0): validate, log and checkpoint at their cadences (and
        checkpoint this step anyway if ``checkpoint``: the call stops here)."""
        t = self.cfg.train
        record: dict[str, Any] = {}
        if self.step % t.val_every == 0 or self.step == t.steps:
            val = self.validate()
            record[self.val_name] = val
            if self._better(val):
                self.best_val, self.best_step = val, self.step
                save_checkpoint(self.best_path, self.state_dict())
        if self.step % t.log_every == 0 or record:
            log.write(
                {
                    "step": self.step,
                    "loss": self.last_loss,
                    "lr": self.scheduler.get_last_lr()[0],
                    "time": round(time.perf_counter() - start, 3),
                    **record,
                }
            )
        if checkpoint or self.step % t.ckpt_every == 0 or self.step == t.steps:
            save_checkpoint(self.last_path, self.state_dict())

    @functools.cached_property
    def _stepping(self) -> MetaLearner | LearnerView:
        """The learner the training step asks for meta-gradients: compiled (``train.compile``),
        and, on several processes, sharded (each computes its slice; all get the whole batch's
        step)."""
        learner: MetaLearner | LearnerView = self.learner
        if self.cfg.train.compile:
            learner = CompiledLearner(learner)
        return ShardedLearner(learner) if self.world > 1 else learner

    def _gradients(self, device: torch.device) -> MetaStep:
        """One outer step of the problem: its meta-gradients (or its own update)."""
        # DropBlock masks: a generator per step, seeded from ours, for whatever DropBlock layers
        # the model has (none: no draw, so runs without them are unaffected).
        schedule = self.cfg.model.drop_schedule(self.step)
        reseed_drop_layers(self.learner, self.generator, device, schedule)
        self.learner.set_training_step(self.step)  # schedules inside the learner (MAML++)
        bf16 = self.cfg.train.autocast == "bf16"
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            return self.problem.meta_step(self._stepping, self.generator)

    def _one_step(self, ms: MetaStep) -> None:
        step = self.step + 1
        loss = float(ms.loss)
        if not math.isfinite(loss) or not all(torch.isfinite(g).all() for g in ms.grads.values()):
            last = str(self.last_path) if self.last_path.exists() else None
            raise NonFiniteLossError(step, loss, last)
        if not ms.applied:  # else the problem's own outer update has changed the parameters
            self.learner.apply_gradients(ms)
            if self.cfg.train.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(self.learner.parameters(), self.cfg.train.grad_clip)
            self.optimizer.step()
        with warnings.catch_warnings():  # the schedule counts steps the optimizer did not take
            warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step", UserWarning)
            self.scheduler.step()
        self.step = step
        self.last_loss = loss
