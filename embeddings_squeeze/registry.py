"""Classes found by the name a flag gives: built-in ones, ones registered in code, and entry points.

Backbones (``--model``), datasets (``--dataset``) and quantizers (``--quantizer_type``) are looked up
the same way, so a package can add any of them without changing this one (README, *Extending*).
"""

from __future__ import annotations

from importlib.metadata import entry_points

from embeddings_squeeze.errors import UserError


class Registry:
    """Classes by their ``name`` attribute, for one flag and one entry-point group."""

    def __init__(self, flag: str, group: str, builtin: tuple[type, ...], other_choices: str = ""):
        self.flag, self.group, self.other_choices = flag, group, other_choices
        self.entries: dict[str, type] = {cls.name: cls for cls in builtin}

    def __iter__(self):
        return iter(self.entries)

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def register(self, cls: type) -> type:
        """Make ``cls`` available as ``<flag> <cls.name>``; usable as a class decorator."""
        if not cls.name:
            raise ValueError(f"{cls.__name__}.name must be set")
        self.entries[cls.name] = cls
        return cls

    def load_installed(self) -> None:
        """Register every installed package's entry point of this group (e.g. to list their flags)."""
        for entry in entry_points(group=self.group):
            if entry.name not in self.entries:
                self.register(entry.load())

    def find(self, name: str) -> type:
        """The class called ``name``, loading an installed package's entry point of that name if needed."""
        if name not in self.entries:
            for entry in entry_points(group=self.group, name=name):
                self.register(entry.load())
        if name not in self.entries:
            raise UserError(
                f"unknown {self.flag} {name!r}; choose {', '.join(self.entries)}{self.other_choices}, "
                "or one registered as the README's 'Extending' shows"
            )
        return self.entries[name]
