"""Run anything as on a CPU without bf16 matrix units, to check that the test suite's outcomes do not
depend on the CPU: ``PYTHONPATH=benchmarks/no_bf16 python -m pytest``.

Python imports ``sitecustomize`` at start-up from ``PYTHONPATH``, so every process the tests start (CLI
runs, DDP workers, SLURM jobs) sees it too. Once ``models/backbones/precision.py`` is imported, its
``cpu_flags()`` answers this CPU's flags without bf16 (an empty set), so ``--feature_precision auto``
resolves as it would on such a CPU; a cpuinfo file a test names is still read as it is.
"""

import importlib.abc
import importlib.machinery
import sys

TARGET = "embeddings_squeeze.models.backbones.precision"


class WithoutBf16(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            read, own = module.cpu_flags, module.Path("/proc/cpuinfo")
            module.cpu_flags = lambda cpuinfo=own: frozenset() if cpuinfo == own else read(cpuinfo)

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, WithoutBf16())
