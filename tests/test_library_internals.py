"""The library internals the tool relies on: ``models/quantizers/library.py`` (vector-quantize-pytorch's
EMA codebooks), the eb file's CompressAI tables and submitit's batch-script writer (the sweep's
``--dry_run``). These fail when a release changes them; pyproject.toml admits only the release
ranges they ran against."""

import copy
import inspect
import pickle

import torch
from compressai.entropy_models import EntropyBottleneck
from helpers import vq_module
from submitit.slurm.slurm import SlurmExecutor, _make_sbatch_string
from vector_quantize_pytorch import VectorQuantize

from embeddings_squeeze.config import QuantizerConfig
from embeddings_squeeze.models.quantizers import build_quantizer, library
from embeddings_squeeze.models.quantizers.eb import CODING_TABLES
from embeddings_squeeze.models.quantizers.vq import CodebookSettings


def codebook(**options):
    quantizer = VectorQuantize(dim=2, codebook_size=8, threshold_ema_dead_code=0, **options).train()
    (book,) = library.codebooks(quantizer)
    return quantizer, book


def test_dead_code_rule_replaces_and_counts():
    quantizer, book = codebook()
    counted = []
    library.on_replace(book, counted.append)
    quantizer(torch.randn(1, 16, 2))
    assert counted == []  # the rule is off
    library.set_dead_code_rule(book, threshold=1000.0, reset_usage=3.0)  # every code is dead
    before = library.codes(book).clone()
    quantizer(torch.randn(1, 16, 2))
    assert counted == [8]
    assert torch.all(book.cluster_size == 3.0)  # re-seeded codes restart at the usage given
    assert not torch.equal(library.codes(book), before)


def test_a_squeezed_module_pickles_and_its_deep_copy_counts_its_own_replacements():
    module = vq_module(QuantizerConfig(num_vectors=8, settings=CodebookSettings(dead_code_threshold=1000.0)))
    restored = pickle.loads(pickle.dumps(module))  # as --strategy ddp_spawn sends it to its processes
    assert restored.bottleneck.quantizer._codebook.replace.book is restored.bottleneck.quantizer._codebook
    quantizer = module.bottleneck.train()
    (book,) = library.codebooks(quantizer.quantizer)
    library.set_dead_code_rule(book, threshold=1000.0, reset_usage=1.0)  # every code is dead
    twin = copy.deepcopy(quantizer)  # as Lightning's weight averaging copies a model
    twin.quantize(torch.randn(1, 64, 4, 4))
    assert twin.record(None, None)["replaced"] == 8  # the copy counts into its own counter ...
    assert quantizer.record(None, None)["replaced"] == 0  # ... not into the original's


def test_kmeans_start_from_a_pool_with_usage_per_step():
    torch.manual_seed(0)  # k-means draws its first means from the pool
    quantizer, book = codebook(kmeans_init=True)
    assert not library.is_started(book)
    centres = torch.tensor([[5.0, 5.0], [-5.0, -5.0], [5.0, -5.0], [-5.0, 5.0]]).repeat(2, 1)
    vectors = centres.repeat_interleave(10, dim=0) + 0.01 * torch.randn(80, 2)
    library.kmeans_start(book, vectors, usage_scale=0.5)
    assert library.is_started(book)
    codes, used = library.codes(book), book.cluster_size[0] > 0
    distances = torch.cdist(codes[used], centres[:4])
    assert distances.min(dim=1).values.max() < 0.1  # every code k-means kept sits on a cluster
    assert distances.min(dim=0).values.max() < 0.1  # and every cluster has one
    assert book.cluster_size.sum().item() == 40  # 80 vectors, half a step's worth each
    assert torch.allclose(book.embed_avg[0], codes * book.cluster_size[0].unsqueeze(-1))


def test_synchronised_codebooks_reduce_through_the_functions_set():
    quantizer, book = codebook(kmeans_init=True)
    library.synchronize(book)
    assert book.use_ddp
    reduced = []
    # stand-ins for torch.distributed (no process group here): the library must call what is set
    book.all_reduce_fn = book.kmeans_all_reduce_fn = lambda tensor: reduced.append(tuple(tensor.shape))
    book.sample_fn = book.replace_sample_fn = lambda samples, num: samples[:, :num]
    quantizer(torch.randn(1, 16, 2))  # the first training batch starts the codebook by k-means
    assert (1, 8) in reduced and (1, 8, 2) in reduced  # cluster sizes and sums, across processes


def test_compressai_tables_and_medians():
    layer = EntropyBottleneck(3)
    assert torch.equal(layer._get_medians().reshape(-1), layer.quantiles[:, 0, 1])
    config = QuantizerConfig("eb", bottleneck_dim=3)
    trained, fresh = (build_quantizer(8, config, input_pixels=64) for _ in range(2))
    trained.prepare_coder([])
    assert all(getattr(trained.entropy_bottleneck, name).numel() > 0 for name in CODING_TABLES)
    # a checkpoint's coding tables replace the empty ones a fresh quantizer starts with
    fresh.load_state_dict(trained.state_dict())
    for name in CODING_TABLES:
        assert torch.equal(getattr(fresh.entropy_bottleneck, name), getattr(trained.entropy_bottleneck, name))


def test_submitit_writes_the_batch_script_a_dry_run_shows():
    # the dry run writes what submitit's executor would submit, from the executor's parameters
    parameters = {
        "job_name": "sweep-baseline", "time": 30, "cpus_per_task": 2, "partition": "gpu", "qos": "high",
        "account": "lab", "mem": "8GB", "gpus_per_node": 1, "array_parallelism": 3,
        "dependency": "afterany:12:13", "setup": ["module load cuda"], "stderr_to_stdout": True,
    }  # fmt: skip
    assert set(parameters) <= set(inspect.signature(_make_sbatch_string).parameters)
    assert set(parameters) <= SlurmExecutor._valid_parameters()
    script = _make_sbatch_string(command="python -m job", folder="/runs/%j", map_count=4, **parameters)
    expected = ("#SBATCH --partition=gpu", "#SBATCH --qos=high", "#SBATCH --account=lab", "#SBATCH --time=30",
                "#SBATCH --dependency=afterany:12:13", "#SBATCH --array=0-3%3", "#SBATCH --gpus-per-node=1",
                "#SBATCH --signal=USR2@90", "module load cuda")  # fmt: skip
    for line in expected:
        assert line in script.splitlines(), line


def test_rich_keeps_its_live_display_where_the_log_handler_looks():
    """``embeddings_squeeze.console`` tells a live bar by rich's private record of it (``_live_stack``
    since rich 14.1, ``_live`` before), as Lightning's own bar does: a live display must show there,
    and nothing once it stops."""
    import io

    from rich.console import Console
    from rich.progress import Progress

    console = Console(file=io.StringIO(), force_terminal=True)

    def live():
        return getattr(console, "_live_stack", None) or getattr(console, "_live", None)

    with Progress(console=console):
        assert live()
    assert not live()
