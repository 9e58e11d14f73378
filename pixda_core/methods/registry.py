"""Where methods are found by name: the kit's own, those registered in Python
(:func:`register_method`), those that installed packages announce in the entry-point group
``pixda_core.methods``, and a class named by where it is defined (``module:Class`` or
``path/to/file.py:Class``: what a sweep passes to every job).

A method is checked once, when it is registered: a subclass of :class:`Method` with a name,
a title, something to train on and hooks that fit what it declares. An unknown, unimportable
or malformed method is a :class:`~pixda_core.errors.ConfigError` naming it and what is
expected."""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import sys
from pathlib import Path

from ..errors import ConfigError
from .base import Method

#: the entry-point group through which a package adds methods (name = "module:Class")
ENTRY_POINTS = "pixda_core.methods"

_REGISTRY: dict[str, type[Method]] = {}
#: where each registered class came from, when named by a spec (for messages)
_SPECS: dict[str, str] = {}


def register_method(cls: type[Method] | None = None, *, replace: bool = False):
    """Register a method class under its ``name``: ``@register_method`` on the class, or
    ``register_method(MyMethod)``. The newest class under a name is the one used (a notebook
    cell run again, the same method saved to a file and named by its spec); the kit's own
    methods are never replaced unless ``replace=True``."""

    def add(c: type[Method]) -> type[Method]:
        check_method(c)
        old = _REGISTRY.get(c.name)
        if old is not None and old is not c and not replace and _is_builtin(old):
            raise ConfigError(
                f"method {c.name!r} is the kit's own ({_where(old)}); give {c.__qualname__} "
                "another name"
            )
        if old is not c:  # a spec named the class it replaces, not this one
            _SPECS.pop(c.name, None)
        _REGISTRY[c.name] = c
        return c

    return add if cls is None else add(cls)


def _is_builtin(c: type) -> bool:
    from . import BUILTIN

    return c in BUILTIN


def _where(c: type) -> str:
    return f"{c.__module__}.{c.__qualname__}"


def check_method(c) -> None:
    """Refuse a class that is not a usable method, naming what is wrong."""
    what = getattr(c, "__qualname__", repr(c))
    if not (isinstance(c, type) and issubclass(c, Method)) or c is Method:
        raise ConfigError(
            f"{what} is not a method: expected a subclass of pixda_core.methods.Method"
        )
    problems = []
    if not (isinstance(c.name, str) and c.name.isidentifier() and c.name == c.name.lower()):
        problems.append(f"name {c.name!r} is not a lower-case Python identifier")
    if not (isinstance(c.title, str) and c.title.strip()):
        problems.append("it has no title (how tables name it)")
    if not (c.source or c.target):
        problems.append("it trains on nothing (set source and/or target to True)")
    if c.all_target and not c.target:
        problems.append("all_target needs target = True")
    if c.schedule not in ("adapt", "pretrain"):
        problems.append(f"schedule {c.schedule!r} is not 'adapt' or 'pretrain'")
    if not all(isinstance(n, str) and n.startswith("loss_") for n in c.losses):
        problems.append(f"losses {c.losses!r} are not names starting 'loss_'")
    elif len(set(c.losses)) != len(c.losses):
        problems.append(f"losses {c.losses!r} name a column twice")
    if not all(isinstance(k, str) and k.count(".") == 1 for k in c.options):
        problems.append(f"options {c.options!r} are not config keys 'section.key'")
    if problems:
        raise ConfigError(f"method {what} ({c.__module__}): {'; '.join(problems)}")


def builtin_names() -> tuple[str, ...]:
    from . import BUILTIN

    return tuple(c.name for c in BUILTIN)


def _entry_points() -> dict:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINTS)}


def registered() -> dict[str, type[Method]]:
    """Every method registered in this process, the kit's first (in their order)."""
    return dict(_REGISTRY)


def available() -> list[str]:
    """The names a run can use without a spec: registered ones and those of entry points."""
    return list(dict.fromkeys([*_REGISTRY, *_entry_points()]))


def is_spec(name: str) -> bool:
    """``module:Class`` or ``path/to/file.py:Class``."""
    return ":" in name


def method_class(name) -> type[Method]:
    """The method class that ``name`` stands for: a class (registered now), a registered
    name, an entry point's name (loaded and registered), or a spec ``module:Class`` /
    ``path/to/file.py:Class`` (imported and registered)."""
    if isinstance(name, type):
        return register_method(name)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"method {name!r}: expected a method's name or 'module:Class'")
    if name in _REGISTRY:
        return _REGISTRY[name]
    if is_spec(name):
        return _from_spec(name)
    found = _entry_points().get(name)
    if found is not None:
        try:
            cls = found.load()
        except Exception as exc:  # a plug-in package's own failure, named
            raise ConfigError(
                f"method {name!r} (entry point {found.value} of group {ENTRY_POINTS}) cannot be "
                f"loaded: {type(exc).__name__}: {exc}"
            ) from None
        if getattr(cls, "name", None) != name:
            raise ConfigError(
                f"entry point {name!r} of group {ENTRY_POINTS} gives {found.value}, whose name "
                f"is {getattr(cls, 'name', None)!r}: the two must be the same"
            )
        return register_method(cls)
    raise ConfigError(
        f"unknown method {name!r}: expected one of {', '.join(available())}, or a class named "
        "as 'module:Class' or 'path/to/file.py:Class' (a method defined in a notebook is "
        "known in that notebook's kernel only)"
    )


def _from_spec(spec: str) -> type[Method]:
    where, _, attr = spec.rpartition(":")
    if not where or not attr.isidentifier():
        raise ConfigError(f"method {spec!r}: expected 'module:Class' or 'path/to/file.py:Class'")
    if where.endswith(".py"):
        path = Path(where).expanduser()
        if not path.is_file():
            raise ConfigError(f"method {spec!r}: the file {path} does not exist")
        digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
        module_name = f"pixda_user_methods.{path.stem}_{digest}"
        module = sys.modules.get(module_name)
        if module is None:
            try:
                loader = importlib.util.spec_from_file_location(module_name, path)
                module = importlib.util.module_from_spec(loader)
                sys.modules[module_name] = module
                loader.loader.exec_module(module)
            except Exception as exc:
                sys.modules.pop(module_name, None)
                raise ConfigError(
                    f"method {spec!r}: {path} cannot be run: {type(exc).__name__}: {exc}"
                ) from None
    else:
        try:
            module = importlib.import_module(where)
        except Exception as exc:
            raise ConfigError(
                f"method {spec!r}: the module {where} cannot be imported: "
                f"{type(exc).__name__}: {exc}"
            ) from None
    cls = getattr(module, attr, None)
    if cls is None:
        raise ConfigError(f"method {spec!r}: {where} has no {attr}")
    cls = register_method(cls)
    _SPECS[cls.name] = spec
    return cls


def spec_of(cls: type[Method]) -> str:
    """How another process finds ``cls``: its name when that is enough (the kit's, an entry
    point's), else the spec it was loaded from, else ``module:Class`` when its module can be
    imported by name; a class defined in a notebook or a script has no such name."""
    if cls.name in builtin_names() or cls.name in _entry_points():
        return cls.name
    if cls.name in _SPECS:
        return _SPECS[cls.name]
    module, qualname = cls.__module__, cls.__qualname__
    importable = module not in ("__main__", "builtins") and not module.startswith(
        "pixda_user_methods"
    )
    if importable and qualname.isidentifier():  # (not a class made inside a function)
        return f"{module}:{qualname}"
    return cls.name


def portable(method):
    """``method`` as another process finds it: a class as :func:`spec_of` names it (registered
    here first), a file named in a spec made absolute (jobs and kernels run in other
    folders), anything else as it is."""
    if isinstance(method, type):
        return spec_of(register_method(method))
    if isinstance(method, str) and is_spec(method):
        where, _, attr = method.rpartition(":")
        if where.endswith(".py"):
            return f"{Path(where).expanduser().resolve()}:{attr}"
    return method
