"""Sweeps as local processes and as SLURM jobs on a real cluster (one node, started by
scripts/local_slurm.sh where none is up): the same tables as a serial sweep, whatever happens to the
jobs on the way (killed, requeued, signalled at their time limit, failing, resubmitted)."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import TINY, one_line_error, run_cli, tiny_datamodule

from embeddings_squeeze.config import (
    DataConfig,
    ModelConfig,
    OptimizerConfig,
    QuantizerConfig,
    RuntimeConfig,
    TrainingConfig,
)
from embeddings_squeeze.engine.sweep import JobKind, Plan, SweepSpec
from embeddings_squeeze.engine.sweep.estimate import Costs, stage_seconds, training_key
from embeddings_squeeze.models.quantizers import QUANTIZERS
from embeddings_squeeze.utils.input_compression import codecs

COMMAND = [sys.executable, "-m", "embeddings_squeeze", "sweep"]
# vq_K100000 fails at once: far more codes than the training split has vectors
GRID = ["--epochs", 8, "--quantizer_type", "vq", "--num_vectors", 4, 100000, "--jpeg_qualities", 50]
THREADS = max(1, (os.cpu_count() or 1) // 2)  # float sums depend on the threads: every run uses as many
NOT_COMPARED = ("training_seconds", "checkpoint")  # wall time; paths differ by output folder
FAILED = "vq_K100000_seed42"
REQUEUE_PAUSE = 5  # seconds a requeued job waits before the tests let it start


def grid(pet_root, output_dir, *extra) -> list[str]:
    return [str(a) for a in [*TINY, "--data_path", pet_root, "--output_dir", output_dir, *GRID, *extra]]


def table(output_dir: Path) -> dict[str, dict]:
    with open(output_dir / "sweep.csv") as handle:
        return {
            row["name"]: {k: v for k, v in row.items() if k not in NOT_COMPARED}
            for row in csv.DictReader(handle)
        }


def launched(output_dir: Path) -> dict[str, dict]:
    return json.loads((output_dir / "jobs" / "launched.json").read_text())


# -- SLURM ------------------------------------------------------------------------------------------


def queue() -> dict[str, str]:
    listing = subprocess.run(["squeue", "-h", "-r", "-o", "%i %T %r"], capture_output=True, text=True).stdout
    return {line.split()[0]: line.split(maxsplit=1)[1] for line in listing.splitlines() if line.strip()}


def job_process(job_id: str) -> int:
    """The pid of the Python process a SLURM job (or array task, '12_3') runs."""
    array, _, task = job_id.partition("_")
    wanted = {"SLURM_ARRAY_JOB_ID": array, "SLURM_ARRAY_TASK_ID": task} if task else {"SLURM_JOB_ID": array}
    for proc in Path("/proc").iterdir():
        try:
            command = (proc / "cmdline").read_bytes()
            environment = dict(
                item.split("=", 1) for item in (proc / "environ").read_text().split("\0") if "=" in item
            )
        except OSError:
            continue
        if b"submitit.core._submit" in command and all(environment.get(k) == v for k, v in wanted.items()):
            return int(proc.name)
    raise AssertionError(f"no process of SLURM job {job_id}")


def trained_an_epoch(output_dir: Path, run: str) -> bool:
    return (output_dir / "runs" / run / "version_0" / "last.ckpt").is_file()


def finished(output_dir: Path, run: str) -> bool:
    return (output_dir / "runs" / run / "version_0" / "rate.json").is_file()


def run_until_queue_empty(ids: set[str], actions: dict, timeout: float = 600) -> None:
    """Poll until none of ``ids`` is queued; meanwhile fire each action (condition -> act) once, and
    let a requeued job start a few seconds after its old run has ended (SLURM holds requeued jobs for
    minutes; starting one at once can meet its old run's revoked credential and fail it)."""
    deadline = time.monotonic() + timeout
    held_since: dict[str, float] = {}
    while time.monotonic() < deadline:
        queued = queue()
        for job_id, state in queued.items():
            if job_id in ids and state == "PENDING BeginTime":
                if time.monotonic() - held_since.setdefault(job_id, time.monotonic()) > REQUEUE_PAUSE:
                    subprocess.run(
                        ["scontrol", "update", f"JobId={job_id}", "StartTime=now"], capture_output=True
                    )
        for condition, act in list(actions.items()):
            if condition():
                act()
                del actions[condition]
        if not actions and not ids & set(queued):
            return
        time.sleep(0.05)
    raise AssertionError(f"SLURM jobs did not end in {timeout} s; actions left: {list(actions)}")


@pytest.fixture(scope="module")
def launched_at_once(slurm_cluster, pet_root, tmp_path_factory) -> dict:
    """Three sweeps of one grid started at once: ``serial`` (the reference, with its own cache), and,
    on one cache folder, ``slurm`` on the cluster and ``local`` as processes here; every job runs on
    as many threads (float sums depend on them). In the SLURM sweep the baseline gets SIGUSR2 as at
    its time limit (submitit checkpoints and requeues it), the reference is requeued by `scontrol
    requeue`, and vq_K4's process is killed with SIGKILL (the job fails), each after its first epoch.
    Then the SLURM sweep's command runs again."""
    base = tmp_path_factory.mktemp("launchers")
    folders = {"serial": base / "serial", "slurm": base / "slurm", "local": base / "local"}
    cache = ("--cache_dir", base / "cache")
    serial = [*COMMAND, *grid(pet_root, folders["serial"])]
    slurm = [
        *COMMAND,
        *grid(pet_root, folders["slurm"], "--launcher", "slurm", "--cpus_per_job", THREADS, *cache),
    ]
    local = [*COMMAND, *grid(pet_root, folders["local"], "--launcher", "local", "--max_parallel", 2, *cache)]
    runs = {
        name: subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": str(THREADS)})
        for name, argv in (("serial", serial), ("local", local))
    }  # fmt: skip
    submitted = subprocess.run(slurm, capture_output=True, text=True, timeout=300)
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    sweep_dir = folders["slurm"]
    first = launched(sweep_dir)
    interrupted = []

    def interrupt(run, act):
        def fire():
            assert not finished(sweep_dir, run), f"{run} finished before it could be interrupted"
            act(first[run]["id"])
            interrupted.append(run)

        return fire

    # scancel may answer "can not be altered now" once the first step it signals requeues the job
    actions = {
        (lambda: trained_an_epoch(sweep_dir, "baseline_seed42")): interrupt(
            "baseline_seed42",
            lambda job: subprocess.run(["scancel", "--signal=USR2", job], capture_output=True),
        ),
        (lambda: trained_an_epoch(sweep_dir, "none_D64_seed42")): interrupt(
            "none_D64_seed42", lambda job: subprocess.run(["scontrol", "requeue", job], check=True)
        ),
        (lambda: trained_an_epoch(sweep_dir, "vq_K4_seed42")): interrupt(
            "vq_K4_seed42", lambda job: os.kill(job_process(job), signal.SIGKILL)
        ),
    }
    run_until_queue_empty({entry["id"] for entry in first.values()}, actions)
    first_pass = table(sweep_dir)
    ended = {name: (run.communicate(timeout=600)[1], run.returncode) for name, run in runs.items()}
    again = subprocess.run(slurm, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    second = launched(sweep_dir)
    resubmitted = {name for name in second if second[name]["id"] != first[name]["id"]}
    run_until_queue_empty({second[name]["id"] for name in resubmitted}, {})
    return {"folders": folders, "printed": submitted.stdout, "again": again.stdout, "first_pass": first_pass,
            "resubmitted": resubmitted, "interrupted": interrupted, "ended": ended}  # fmt: skip


@pytest.mark.slurm
def test_slurm_and_local_sweeps_equal_the_serial_one(launched_at_once):
    folders = launched_at_once["folders"]
    assert launched_at_once["printed"].startswith("submitted 7 job(s) and the collect job, in 4 stage(s) ")
    for name in ("serial", "local"):  # both end by naming the row that failed
        errors, code = launched_at_once["ended"][name]
        last = errors.strip().splitlines()[-1]
        assert code == 2 and last.startswith(f"error: 1 row(s) have no result (first: {FAILED}: ")
    serial = table(folders["serial"])
    assert serial["vq_K4_seed42"]["kind"] == "squeezed" and serial[FAILED]["kind"] == "failed"
    assert table(folders["slurm"]) == serial  # after its killed job was submitted again
    assert table(folders["local"]) == serial
    assert len(list((folders["local"] / "jobs" / "logs").glob("*.log"))) == 7  # features, 6 measuring jobs


@pytest.mark.slurm
def test_a_failed_job_is_a_row_with_its_reason_and_the_others_finish(launched_at_once):
    sweep_dir = launched_at_once["folders"]["slurm"]
    rows = json.loads((sweep_dir / "sweep.json").read_text())
    (failed,) = rows["unmeasured"]
    assert failed["name"] == FAILED and failed["kind"] == "failed"
    assert failed["reason"].startswith("the training split has ") and "--num_vectors" in failed["reason"]
    assert {row["name"] for row in rows["rows"]} >= {"baseline_seed42", "none_D64_seed42", "vq_K4_seed42"}
    assert "<h2>Not measured</h2>" in (sweep_dir / "report.html").read_text()


@pytest.mark.slurm
def test_a_killed_job_is_missing_then_resubmitted_alone_and_resumes(launched_at_once):
    assert "vq_K4_seed42" in launched_at_once["interrupted"]
    killed = launched_at_once["first_pass"]["vq_K4_seed42"]
    assert killed["kind"] == "missing" and killed["reason"].startswith("SLURM job ")
    assert "ended FAILED" in killed["reason"]
    # the same command again submits only what has no result: the killed job, the one that fails, the
    # feature job they start from (it finds the cache), and the collect job
    assert launched_at_once["resubmitted"] == {"features", "vq_K4_seed42", FAILED, "collect"}
    assert launched_at_once["again"].startswith("submitted 3 job(s) and the collect job")
    run_dir = launched_at_once["folders"]["slurm"] / "runs" / "vq_K4_seed42"
    assert [p.name for p in run_dir.iterdir()] == ["version_0"]  # resumed in its own run folder


@pytest.mark.slurm
def test_requeued_jobs_resume_from_their_last_epoch(launched_at_once):
    assert {"baseline_seed42", "none_D64_seed42"} <= set(launched_at_once["interrupted"])
    sweep_dir = launched_at_once["folders"]["slurm"]
    for run in ("baseline_seed42", "none_D64_seed42"):
        assert [p.name for p in (sweep_dir / "runs" / run).iterdir()] == ["version_0"]
    logs = "".join(p.read_text() for p in (sweep_dir / "jobs" / "slurm").rglob("*.out"))
    assert (
        logs.count("from its last completed epoch") == 3
    )  # the two requeued, and the killed one resubmitted
    assert "this job is preempted" in logs  # submitit's handler of SIGUSR2: checkpointed and requeued


@pytest.mark.slurm
def test_two_sweeps_at_once_build_each_cache_entry_once(launched_at_once):
    folders = launched_at_once["folders"]
    logs = [p.read_text() for p in (folders["slurm"] / "jobs" / "slurm").rglob("*.out")]
    logs += [p.read_text() for p in (folders["local"] / "jobs" / "logs").glob("*.log")]
    built = [line for log in logs for line in log.splitlines() if "building the feature cache entry" in line]
    entries = sorted(p.name for p in (folders["slurm"].parent / "cache").iterdir())
    assert len(built) == 3 and len(entries) == 3  # train, val, test once each: no second build, no leftovers
    assert sorted(line.split("/")[-1].split()[0] for line in built) == entries


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--partition", "gpu"],
            "error: --partition is for --launcher slurm (this sweep runs with --launcher serial)",
        ),
        (
            ["--launcher", "local", "--devices", "2"],
            "error: each job of a --launcher local sweep trains on one device",
        ),
        (
            ["--launcher", "slurm", "--accelerator", "gpu"],
            "error: --accelerator gpu on SLURM needs GPUs for the jobs",
        ),
    ],
)
def test_launch_flags_that_cannot_work_are_refused_before_anything_runs(flags, message, tmp_path, capsys):
    assert run_cli("sweep", "--output_dir", tmp_path / "sweep", *flags) == 2
    assert one_line_error(capsys).startswith(message)
    assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize("launcher, batch_size", [("serial", 4), ("local", 1)])
def test_a_dry_run_prints_the_plan_and_its_cost_and_runs_nothing(
    launcher, batch_size, pet_root, tmp_path, capsys
):
    """Any launcher, any batch size (the probe's batches are of the sweep's size, its comparison of four
    images); nothing is written, not even the sweep's folders."""
    output_dir = tmp_path / "sweep"
    flags = ("--launcher", launcher, "--batch_size", batch_size, "--dry_run")
    assert run_cli("sweep", *grid(pet_root, output_dir, *flags)) == 0
    printed = capsys.readouterr().out.splitlines()
    jobs = ["features", "baseline_seed42", "none_D64_seed42", "vq_K4_seed42", "vq_K100000_seed42",
            "jpeg_q50", *(["webp_q50"] if len(codecs()) == 2 else [])]  # fmt: skip
    assert printed[0] == f"dry run: {len(jobs)} job(s) would run; nothing runs now"
    assert printed[1 : 1 + len(jobs)] == [
        f"  job {i} of {len(jobs)}: {name} ({kind})"
        for i, (name, kind) in enumerate(zip(jobs, ["features", "baseline", *["squeezed"] * 3,
                                                    *["input"] * (len(jobs) - 5)]), 1)
    ]  # fmt: skip
    data = tiny_datamodule(pet_root)
    data.setup()
    # a cached image: ViT-Ti's 192 float16 channels on a 4 x 4 grid, and 64 x 64 uint8 labels
    per_image = 192 * 4 * 4 * 2 + 64 * 64
    splits = ", ".join(f"{name} {len(files)} images, {per_image * len(files) / 1e6:.1f} MB"
                       for name, files in data.files.items())  # fmt: skip
    expected = f"backbone: one pass per split where the feature cache lacks it ({splits})"
    assert printed[1 + len(jobs)] == expected
    assert printed[2 + len(jobs)].startswith("estimated compute time on this machine (cpu; per-image costs")
    assert not output_dir.exists()


def test_the_dry_runs_estimate_adds_up_the_stages_by_hand():
    """Two seeds, one quantizer (and its reference), one codec quality: 3 + 5 + 7 images per split."""
    plan = Plan(ModelConfig(), DataConfig(), OptimizerConfig(), TrainingConfig(epochs=4), RuntimeConfig())
    spec = SweepSpec(plan, (QuantizerConfig(num_vectors=8),), (42, 43), (50,), {}, (), baseline_epochs=6)
    pending = [job for job in spec.jobs() if job.kind != JobKind.COLLECT]
    trained = [job for job in pending if job.kind in (JobKind.BASELINE, JobKind.SQUEEZED)]
    assert {training_key(job) for job in trained} == {"baseline", "vq_K8", "none_D64"}
    costs = Costs(loading=0.5, backbone=1.0, training={"baseline": 0.1, "vq_K8": 0.3, "none_D64": 0.2},
                  comparison=0.01, squeezed_comparison=0.004, codec={"JPEG": 0.25, "WEBP": 0.75},
                  cache_bytes=100)  # fmt: skip
    images = {"train": 3, "val": 5, "test": 7}
    # per seed: the baseline's 6 epochs, vq and none_D64 at 4 epochs + the coder's pass, on 3 + 5 images
    training = 2 * 8 * (6 * 0.1 + 5 * 0.3 + 5 * 0.2)
    assert stage_seconds(spec, images, pending, costs, cached=True) == pytest.approx({
        "features": 15 * (0.5 + 1.0),
        "training": training,
        "scoring": (2 * 0.01 + 4 * 0.004) * 7,  # a live comparison per baseline, a reading one per squeezed
        # one pass per codec quality: read, its codec's round trip, encode, and every seed's baseline scored
        "anchors": 7 * sum(0.5 + costs.codec[codec] + 1.0 + 2 * 0.01 / 2 for codec in codecs()),
    })  # fmt: skip
    live = stage_seconds(spec, images, pending, costs, cached=False)
    assert live["features"] == 0
    assert live["training"] == pytest.approx(training + 2 * 8 * (6 + 5 + 5) * (0.5 + 1.0))
    assert live["scoring"] == pytest.approx((2 * 0.01 + 4 * 0.004) * 7 + 6 * 7 * (0.5 + 1.0))


def test_a_dry_run_measures_every_quantizer_type_and_says_how_many_images(pet_root, tmp_path, capsys):
    """Each type's own training step and a comparison are timed (every registered type, on a test split
    of two images: the probe times the images there are)."""
    types = [name for name in QUANTIZERS if name != "none"]  # the references come with them
    argv = [*TINY, "--data_path", pet_root, "--output_dir", tmp_path / "sweep", "--subset_size", 4,
            "--quantizer_type", *types, "--num_vectors", 8, "--jpeg_qualities", 50, "--dry_run"]  # fmt: skip
    assert run_cli("sweep", *argv) == 0
    printed = capsys.readouterr().out.splitlines()
    data = tiny_datamodule(pet_root, subset_size=4)
    data.setup()
    probes = min(4, len(data.files["test"]))
    assert printed[-1].startswith(
        f"estimated compute time on this machine (cpu; per-image costs measured on {probes} "
    )
    assert all(f"job {i} of " in line for i, line in enumerate(printed[1:-2], 1))  # every job planned


@pytest.mark.slurm
def test_a_dry_run_writes_the_batch_scripts_and_submits_nothing(slurm_cluster, pet_root, tmp_path):
    before = queue()
    flags = ("--launcher", "slurm", "--dry_run", "--partition", "local", "--time_limit", 30,
             "--setup", "module load cuda", "--setup", "echo ready")  # fmt: skip
    done = subprocess.run(
        [*COMMAND, *grid(pet_root, tmp_path, *flags)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    scripts = tmp_path / "jobs" / "slurm" / "dry_run"
    assert done.stdout.strip().splitlines()[-1] == f"dry run: batch scripts in {scripts}; nothing submitted"
    assert sorted(p.name for p in scripts.iterdir()) == [f"stage{n}.sh" for n in range(4)]
    squeezed = (scripts / "stage2.sh").read_text().splitlines()
    expected = ("#SBATCH --partition=local", "#SBATCH --time=30", "#SBATCH --array=0-4%2",
                "module load cuda", "echo ready",
                "#SBATCH --dependency='afterany:<ids of stage 0>:<ids of stage 1>'")  # fmt: skip
    for line in expected:
        assert line in squeezed, line
    assert queue() == before and not (tmp_path / "jobs" / "launched.json").exists()
