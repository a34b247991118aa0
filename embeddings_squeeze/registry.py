"""Classes found by the name a flag gives: built-in ones, ones registered in code, and entry points.

Backbones (``--model``), datasets (``--dataset``) and quantizers (``--quantizer_type``) are looked up
the same way, so a package can add any of them without changing this one (README, *Extending*).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points

from embeddings_squeeze.errors import UserError


class Registry:
    """Classes by their ``name`` attribute, for one flag and one entry-point group."""

    def __init__(
        self,
        flag: str,
        group: str,
        builtin: tuple[type, ...],
        other_choices: str = "",
        check: Callable[[type, dict[str, type]], None] | None = None,
    ):
        """``check(cls, entries)`` refuses a class that cannot join the registered ones (an error)."""
        self.flag, self.group, self.other_choices = flag, group, other_choices
        self.check = check
        self.entries: dict[str, type] = {}
        for cls in builtin:
            self.register(cls)

    def __iter__(self):
        return iter(self.entries)

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def register(self, cls: type) -> type:
        """Make ``cls`` available as ``<flag> <cls.name>``; usable as a class decorator."""
        if not cls.name:
            raise ValueError(f"{cls.__name__}.name must be set")
        if self.check is not None:
            self.check(cls, self.entries)
        self.entries[cls.name] = cls
        return cls

    def load_installed(self) -> None:
        """Register every installed package's entry point of this group (e.g. to list their flags)."""
        for entry in entry_points(group=self.group):
            if entry.name not in self.entries:
                self._load(entry)

    def find(self, name: str) -> type:
        """The class called ``name``, loading an installed package's entry point of that name if needed."""
        if name not in self.entries:
            for entry in entry_points(group=self.group, name=name):
                self._load(entry)
        if name not in self.entries:
            raise UserError(
                f"unknown {self.flag} {name!r}; choose {', '.join(self.entries)}{self.other_choices}, "
                "or one registered as the README's 'Extending' shows"
            )
        return self.entries[name]

    def _load(self, entry) -> None:
        """Import and register an entry point; a plugin that fails to import is named as such."""
        try:
            cls = entry.load()
        except Exception as error:  # any error in a plugin's code: say whose it is, then stop
            raise UserError(
                f"the plugin {entry.value!r} (entry point {entry.name!r} of {self.group}) failed to load: "
                f"{type(error).__name__}: {error}; fix or uninstall that package"
            ) from error
        self.register(cls)
