"""Builds the plugin manager and looks plugins up by family and name."""

from __future__ import annotations

import importlib.metadata
import logging
from dataclasses import dataclass
from typing import Any

import pluggy

from harness import hookspecs
from harness.errors import HarnessError
from harness.plugin_types import Activation, DataModel, Executor, Optimizer, Predictor

log = logging.getLogger(__name__)

#: family name -> hook that returns its members
FAMILIES = {
    "activation": "harness_activations",
    "data_model": "harness_data_models",
    "optimizer": "harness_optimizers",
    "predictor": "harness_predictors",
    "executor": "harness_executors",
}


FAMILY_TYPES = {
    "activation": Activation,
    "data_model": DataModel,
    "optimizer": Optimizer,
    "predictor": Predictor,
    "executor": Executor,
}


@dataclass(frozen=True)
class Listing:
    """One plugin as ``harness plugins`` shows it."""

    family: str
    name: str
    description: str
    distribution: str


class HarnessPluginManager(pluggy.PluginManager):
    """A plugin manager that remembers which distribution gave each plugin."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.distributions: dict[str, str] = {}


def build_plugin_manager(load_entry_points: bool = True) -> HarnessPluginManager:
    """Return a manager with every installed ``harness`` entry point loaded.

    The built-ins are registered through the same entry points a third-party
    package uses, so an installed project is needed; tests may pass
    ``load_entry_points=False`` and register plugins by hand.
    """
    pm = HarnessPluginManager()
    if load_entry_points:
        _load_entry_points(pm)
    return pm


def _load_entry_points(pm: HarnessPluginManager) -> None:
    for ep in importlib.metadata.entry_points(group=hookspecs.PROJECT):
        dist = ep.dist.name if ep.dist else "(unknown distribution)"
        if pm.get_plugin(ep.name) is not None:
            other = pm.distributions.get(ep.name, "another package")
            raise HarnessError(
                f"two installed packages register the plugin {ep.name!r}: {other} and {dist}; "
                "uninstall one of them"
            )
        try:
            plugin = ep.load()
        except Exception as exc:
            raise HarnessError(
                f"plugin entry point {ep.name!r} from {dist} failed to load: {exc}; "
                f"fix or uninstall that package"
            ) from exc
        try:
            pm.register(plugin, name=ep.name)
        except pluggy.PluginValidationError as exc:
            raise HarnessError(f"plugin {ep.name!r} from {dist} is malformed: {exc}; fix or uninstall it") from exc
        pm.distributions[ep.name] = dist
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise HarnessError(f"{exc}: a plugin implements a hook that does not exist (misspelt?)") from exc


class Registry:
    """Name lookups over one plugin manager, with errors that list the choices."""

    def __init__(self, pm: HarnessPluginManager | None = None) -> None:
        self.pm = pm if pm is not None else build_plugin_manager()
        self._members: dict[str, dict[str, tuple[Any, str]]] = {}
        for family, hook in FAMILIES.items():
            self._members[family] = self._collect(family, hook)

    def _collect(self, family: str, hook_name: str) -> dict[str, tuple[Any, str]]:
        members: dict[str, tuple[Any, str]] = {}
        hook = getattr(self.pm.hook, hook_name)
        kind = FAMILY_TYPES[family]
        for impl in hook.get_hookimpls():
            distribution = self.pm.distributions.get(impl.plugin_name, "(registered by hand)")
            try:
                provided = list(impl.function() or [])
            except Exception as exc:
                raise HarnessError(
                    f"plugin {impl.plugin_name!r} ({distribution}) failed in {hook_name}: {exc!r}; fix or uninstall it"
                ) from exc
            for obj in provided:
                if not isinstance(obj, kind):
                    raise HarnessError(
                        f"plugin {impl.plugin_name!r} ({distribution}) returned {obj!r} from {hook_name}; "
                        f"it must return {kind.__name__} objects"
                    )
                if obj.name in members:
                    other = members[obj.name][1]
                    raise HarnessError(
                        f"duplicate {family} {obj.name!r}: provided by both {other} "
                        f"and {distribution}; uninstall one of them"
                    )
                members[obj.name] = (obj, distribution)
        return members

    def get(self, family: str, name: str) -> Any:
        members = self._members[family]
        if name not in members:
            choices = ", ".join(sorted(members)) or "none installed"
            raise HarnessError(
                f"unknown {family.replace('_', ' ')} {name!r}; available: {choices}"
            )
        return members[name][0]

    def names(self, family: str) -> list[str]:
        return sorted(self._members[family])

    def all(self, family: str) -> list[Any]:
        return [self._members[family][n][0] for n in self.names(family)]

    def listings(self) -> list[Listing]:
        return [
            Listing(family, name, obj.description, dist)
            for family, members in self._members.items()
            for name, (obj, dist) in sorted(members.items())
        ]
