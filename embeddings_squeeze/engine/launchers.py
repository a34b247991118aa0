"""Where a sweep's jobs run: in this process (serial), as processes on this machine (local), or as
SLURM jobs through submitit (slurm). Every launcher runs the same jobs (``engine/sweep/``), so the
tables agree whatever ran them.

Each pending job is written to ``jobs/<name>.json`` (the whole sweep as plain values, and the job);
a local or SLURM job is a process that runs that file (``run_job_file``). ``jobs/launched.json``
records where each job went (a SLURM id, or a host and pid), so running the same command again
launches only what has no result and no live job. On SLURM, each stage is a job array that starts
once the previous stages have ended, whatever their outcome (``afterany``); the collect job writes
the tables from what exists. A job near its time limit, or preempted, is requeued by submitit (the
one layer that requeues: Lightning's own requeue is off) and resumes from its last completed epoch.
Waiting never relies on SLURM's accounting (often absent): live jobs are those ``squeue`` lists.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import submitit
from tqdm import tqdm

from embeddings_squeeze.config import LaunchConfig
from embeddings_squeeze.console import configure_logging, one_line
from embeddings_squeeze.engine.sweep import Job, JobKind, Sweep, SweepSpec, collect, failure_reason
from embeddings_squeeze.engine.sweep.estimate import dry_run_lines, duration_text
from embeddings_squeeze.errors import Interrupted, UserError
from embeddings_squeeze.utils.columns import Kind
from embeddings_squeeze.utils.files import shown, write_json

log = logging.getLogger(__name__)
JOB_MODULE = "embeddings_squeeze.engine.launchers"  # ``python -m`` of this module runs one job file
POLL_SECONDS = 2


def launch(sweep: Sweep, config: LaunchConfig, say: Callable[[str], None] = log.info) -> list[dict] | None:
    """Run or submit every job of ``sweep`` without a result or a live job; the rows of the tables
    when they were written here (None: SLURM jobs were queued and will write them). ``say`` tells
    the user what was submitted (the command prints it)."""
    jobs = sweep.spec.jobs()
    records = Records(sweep.jobs_dir)
    live = records.live()
    measuring = [job for job in jobs if job.kind not in (JobKind.FEATURES, JobKind.COLLECT)]
    done = [job.name for job in measuring if sweep.is_done(job)]
    if done:
        log.info("skipping %d job(s) finished earlier: %s", len(done), ", ".join(done))
    pending = [job for job in measuring if job.name not in live and job.name not in done]
    trains = any(job.kind in (JobKind.BASELINE, JobKind.SQUEEZED) for job in pending)
    if trains and "features" not in live:
        pending.insert(0, jobs[0])
    if live:
        log.info("not launching %d job(s) still queued or running: %s", len(live), ", ".join(sorted(live)))
    if config.dry_run:
        for line in dry_run_lines(sweep, pending):
            say(line)
    if config.dry_run and config.launcher != "slurm":
        return None
    if not config.dry_run:
        sweep.make_folders()
    if config.launcher == "slurm":
        return submit_slurm(sweep, jobs, pending, records, live, config, say)
    if live:
        raise UserError(
            f"{len(live)} job(s) of this sweep are still queued or running ({', '.join(sorted(live))}); "
            "wait for them, or launch with the launcher that started them"
        )
    if config.launcher == "local":
        run_local(sweep, pending, records, config.max_parallel)
    else:
        run_serial(sweep, pending, records)
    rows = collect(sweep, jobs)
    _refuse_unmeasured([row for row in rows if row["kind"] in (Kind.FAILED, Kind.MISSING)])
    return rows


def _refuse_unmeasured(unmeasured: list[dict]) -> None:
    """End with one line when rows have no result (the tables are written, marking them)."""
    if unmeasured:
        first = unmeasured[0]
        raise UserError(
            f"{len(unmeasured)} row(s) have no result (first: {first['name']}: {first['reason']}); they are "
            "marked in sweep.csv and the report; fix the cause and run the same command again"
        )


class Records:
    """``jobs/launched.json``: where each job went, to tell live jobs from ended ones."""

    def __init__(self, jobs_dir: Path):
        self.path = jobs_dir / "launched.json"
        self.entries = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def add(self, name: str, **where) -> None:
        self.entries[name] = where
        write_json(self.path, self.entries)

    def live(self) -> set[str]:
        """Jobs launched earlier that are still queued or running (SLURM), or whose process is alive."""
        queued = slurm_queue() if any(e["launcher"] == "slurm" for e in self.entries.values()) else {}
        return {
            name for name, entry in self.entries.items()
            if (entry["id"] in queued if entry["launcher"] == "slurm"
                else entry["host"] == socket.gethostname() and _process_alive(entry["pid"]))
        }  # fmt: skip

    def ended(self) -> dict[str, str]:
        """How each launched job that is no longer live ended, in words (for rows without a result)."""
        queued = slurm_queue() if any(e["launcher"] == "slurm" for e in self.entries.values()) else {}
        return {name: f"SLURM job {entry['id']} {slurm_outcome(entry['id'])}"
                for name, entry in self.entries.items()
                if entry["launcher"] == "slurm" and entry["id"] not in queued}  # fmt: skip


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid != os.getpid()  # this process launched it: it is running the job right now, not queued


# -- in this process -------------------------------------------------------------------------------


def run_serial(sweep: Sweep, pending: list[Job], records: Records) -> None:
    """Every job, one after the other in this process; a failed job is logged and the others go on."""
    took: dict[str, list[float]] = {}  # seconds per job done, by kind
    for number, job in enumerate(pending, 1):
        log.info("job %d of %d: %s (%s)%s", number, len(pending), job.name, job.kind,
                 _time_left(took, pending[number - 1 :]))  # fmt: skip
        records.add(job.name, launcher="serial", host=socket.gethostname(), pid=os.getpid())
        started = time.monotonic()
        try:
            sweep.run(job)
            took.setdefault(job.kind, []).append(time.monotonic() - started)  # a failed job sets no pace
        except Interrupted:
            raise
        except UserError as error:
            log.error("%s failed: %s", job.name, failure_reason(error))
        except Exception:
            log.exception("%s failed", job.name)  # not a user mistake: the traceback says where


def _time_left(took: dict[str, list[float]], remaining: list[Job]) -> str:
    """What a job's line adds: the time left for the remaining jobs of kinds done before (each at its
    kind's mean), and how many are of kinds not timed yet (a baseline's pace says nothing of theirs)."""
    timed = [job for job in remaining if took.get(job.kind)]
    if not timed:
        return ""
    seconds = sum(statistics.fmean(took[job.kind]) for job in timed)
    untimed = len(remaining) - len(timed)
    rest = f", and {untimed} job(s) of kinds not timed yet" if untimed else ""
    return f"; about {duration_text(seconds)} left at the pace so far{rest}"


# -- processes on this machine ---------------------------------------------------------------------


def job_file(sweep: Sweep, job: Job) -> Path:
    """Write ``jobs/<name>.json``: what a process needs to run ``job`` alone."""
    path = sweep.jobs_dir / f"{job.name}.json"
    write_json(path, {"spec": sweep.spec.values(), "job": asdict(job)})
    return path


def run_local(sweep: Sweep, pending: list[Job], records: Records, max_parallel: int) -> None:
    """Every job as a process of its own, at most ``max_parallel`` at once, stage after stage; each
    gets an equal share of the cores. A process that ends without a result or a reason (killed, out
    of memory) gets a failed record saying how it ended."""
    logs = sweep.jobs_dir / "logs"
    logs.mkdir(exist_ok=True)
    threads = max(1, (os.cpu_count() or 1) // max_parallel)
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads)}

    def start(job: Job) -> subprocess.Popen:
        log.info("job %d of %d: %s (%s), log in %s", pending.index(job) + 1, len(pending), job.name, job.kind,
                 shown(logs / f"{job.name}.log"))  # fmt: skip
        with open(logs / f"{job.name}.log", "w") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", JOB_MODULE, str(job_file(sweep, job))],
                stdout=log_file, stderr=subprocess.STDOUT, env=environment,
            )  # fmt: skip
        records.add(job.name, launcher="local", host=socket.gethostname(), pid=process.pid)
        return process

    def finish(name: str, returncode: int) -> None:
        if returncode == 0:
            return
        if not sweep.failure_record(name).is_file():
            write_json(sweep.failure_record(name), {"job": name, "reason": _how_it_ended(returncode, logs)})
        log.warning("%s failed; its log: %s", name, shown(logs / f"{name}.log"))

    with tqdm(total=len(pending), desc="jobs", unit="job") as progress:
        for stage in sorted({job.stage for job in pending}):
            waiting = [job for job in pending if job.stage == stage]
            running: dict[str, subprocess.Popen] = {}
            while waiting or running:
                while waiting and len(running) < max_parallel:
                    job = waiting.pop(0)
                    running[job.name] = start(job)
                for name, process in list(running.items()):
                    if process.poll() is not None:
                        del running[name]
                        finish(name, process.returncode)
                        progress.update()
                time.sleep(0.2)


def _how_it_ended(returncode: int, logs: Path) -> str:
    if returncode < 0:
        return f"its process was killed by {signal.Signals(-returncode).name}"
    return f"its process ended with exit code {returncode} (see {shown(logs)})"


def run_job_file(path: Path) -> None:
    """Run the job of a job file in this process: how local and SLURM jobs start."""
    configure_logging()
    if "SLURM_CPUS_PER_TASK" in os.environ:  # SLURM's share of the cores, not the whole node's
        import torch

        torch.set_num_threads(int(os.environ["SLURM_CPUS_PER_TASK"]))
    values = json.loads(path.read_text())
    job = Job.from_values(values["job"])
    sweep = Sweep(SweepSpec.from_values(values["spec"]), path.parent.parent)
    if job.kind == JobKind.COLLECT:
        collect(sweep, sweep.spec.jobs(), Records(sweep.jobs_dir).ended())
    else:
        sweep.run(job)


# -- SLURM -----------------------------------------------------------------------------------------


def slurm_queue() -> dict[str, str]:
    """This user's SLURM jobs and array tasks that are queued or running: id -> state."""
    try:
        listing = subprocess.run(
            ["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i %T"],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError) as error:
        raise UserError(
            f"SLURM does not answer (squeue: {one_line(str(error))}); is this a SLURM cluster's login node? "
            "(scripts/local_slurm.sh start runs a one-node cluster here)"
        ) from None
    return dict(line.split(maxsplit=1) for line in listing.splitlines() if line.strip())


def slurm_outcome(job_id: str) -> str:
    """How a SLURM job that left the queue ended, from ``scontrol`` (no accounting needed)."""
    shown_job = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
    fields = dict(item.split("=", 1) for item in shown_job.split() if "=" in item)
    if "JobState" not in fields:
        return "ended without a result (SLURM no longer knows it)"
    return (
        f"ended {fields['JobState']} (exit code {fields.get('ExitCode', '?')}, reason {fields.get('Reason')})"
    )


class SweepJob(submitit.helpers.Checkpointable):
    """What a SLURM job runs: one job file. Near its time limit submitit asks it to checkpoint and
    requeues it (``Checkpointable``: the same call again); the requeued job resumes its training
    from the last completed epoch, which the run folder holds."""

    def __call__(self, path: str) -> None:
        run_job_file(Path(path))


def submit_slurm(
    sweep: Sweep,
    jobs: list[Job],
    pending: list[Job],
    records: Records,
    live: set[str],
    config: LaunchConfig,
    say: Callable[[str], None],
) -> list[dict] | None:
    """Submit ``pending`` as one job array per stage (split where the cluster's array size limit
    requires), each starting after the jobs of earlier stages end, then the collect job; record the
    ids and say how to follow them. ``config.wait``: block until the tables are written."""
    folder = sweep.jobs_dir / "slurm"
    submitted: dict[int, list[str]] = {}
    earlier = {records.entries[name]["id"].split("_")[0] for name in live}  # arrays still queued
    collect = next(job for job in jobs if job.kind == JobKind.COLLECT)
    stages = sorted({job.stage for job in pending})
    array_limit = slurm_array_limit()
    for stage in [*stages, collect.stage]:
        members = [job for job in pending if job.stage == stage] if stage != collect.stage else [collect]
        executor = submitit.SlurmExecutor(folder=folder / "%j", max_num_timeout=3)
        executor.update_parameters(**_slurm_parameters(config, f"sweep-{members[0].kind}", earlier))
        files = [str(job_file(sweep, job)) for job in members]
        if config.dry_run:  # no ids yet: the scripts name the stages they would wait for
            _write_batch_script(folder, stage, executor, len(files))
            earlier.add(f"<ids of stage {stage}>")
            continue
        ids = []
        for start in range(0, len(files), array_limit):
            chunk = members[start : start + array_limit]
            submissions = executor.map_array(SweepJob(), files[start : start + array_limit])
            for job, submission in zip(chunk, submissions):
                records.add(job.name, launcher="slurm", id=str(submission.job_id))
                ids.append(str(submission.job_id).split("_")[0])
        submitted[stage] = sorted(set(ids))
        earlier |= set(ids)
    if config.dry_run:
        say(f"dry run: batch scripts in {shown(folder / 'dry_run')}; nothing submitted")
        return None
    collect_id = records.entries["collect"]["id"]
    arrays = ", ".join(ids for stage in sorted(submitted) for ids in submitted[stage])
    say(
        f"submitted {len(pending)} job(s) and the collect job, in {len(submitted)} stage(s) that start one "
        f"after the other (SLURM ids {arrays}); "
        f"recorded in {shown(records.path)}. Follow: squeue -u {getpass.getuser()}; logs in {shown(folder)}. "
        f"Job {collect_id} writes {shown(sweep.output_dir / 'sweep.csv')} when the rest has ended; run the "
        "same command again to submit only what is missing"
    )
    if config.wait:
        return wait_for_slurm(sweep, jobs, records)
    return None


def _slurm_parameters(config: LaunchConfig, name: str, after: set[str]) -> dict:
    parameters = {
        "job_name": name,
        "time": config.time_limit,
        "cpus_per_task": config.cpus_per_job,
        "array_parallelism": config.max_parallel,
        "stderr_to_stdout": True,
        "setup": [f"export OMP_NUM_THREADS={config.cpus_per_job}", *(config.setup or ())],
    }
    optional = {"partition": config.partition, "account": config.account, "qos": config.qos,
                "gpus_per_node": config.gpus_per_job or None,
                "mem": f"{config.mem_per_job:g}GB" if config.mem_per_job else None,
                "dependency": f"afterany:{':'.join(sorted(after))}" if after else None}  # fmt: skip
    return {**parameters, **{key: value for key, value in optional.items() if value is not None}}


def _write_batch_script(folder: Path, stage: int, executor, count: int) -> None:
    """The batch script submitit would submit for one stage, written for a dry run."""
    from submitit.slurm.slurm import _make_sbatch_string  # tests/test_library_internals.py

    command = f"{sys.executable} -u -m submitit.core._submit {folder / '%j'}"
    script = folder / "dry_run" / f"stage{stage}.sh"
    script.parent.mkdir(parents=True, exist_ok=True)
    parameters = {**executor.parameters, "map_count": count} if count > 1 else executor.parameters
    script.write_text(_make_sbatch_string(command=command, folder=folder / "%j", **parameters))


def slurm_array_limit() -> int:
    """The largest job array the cluster takes (``MaxArraySize`` minus one: task ids start at 0)."""
    config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True).stdout
    for line in config.splitlines():
        if line.strip().startswith("MaxArraySize"):
            return max(1, int(line.split("=")[1]) - 1)
    return 1000


def wait_for_slurm(sweep: Sweep, jobs: list[Job], records: Records) -> list[dict]:
    """Block until every job of this sweep has left the queue (never on accounting, which a cluster
    may not have), then report what the collect job wrote."""
    ours = {entry["id"] for entry in records.entries.values() if entry["launcher"] == "slurm"}
    with tqdm(total=len(ours), desc="SLURM jobs ended", unit="job") as progress:
        while True:
            remaining = ours & set(slurm_queue())
            progress.update(len(ours) - len(remaining) - progress.n)
            if not remaining:
                break
            time.sleep(POLL_SECONDS)
    tables = sweep.output_dir / "sweep.json"
    if not tables.is_file():
        raise UserError(
            f"the collect job ended without writing {shown(tables)}: {records.ended().get('collect')}"
        )
    written = json.loads(tables.read_text())
    for line in written["sentences"]:
        log.info("%s", line)
    _refuse_unmeasured(written["unmeasured"])
    return written["rows"]


if __name__ == "__main__":
    try:
        run_job_file(Path(sys.argv[1]))
    except UserError as error:
        print(f"error: {failure_reason(error)}", file=sys.stderr)
        sys.exit(error.exit_code)
