"""Finding methods (pixda_core.methods.registry): registered classes, names, specs, entry
points, and the one-line errors for what cannot be used."""

from __future__ import annotations

import textwrap

import pytest

from pixda_core.config import preset
from pixda_core.errors import ConfigError
from pixda_core.methods import Method, available, method_class, portable, register_method, spec_of
from pixda_core.methods.registry import _REGISTRY

pytestmark = pytest.mark.unit


@pytest.fixture
def registry():
    """The registry as it was before the test."""
    before = dict(_REGISTRY)
    yield
    _REGISTRY.clear()
    _REGISTRY.update(before)


def test_a_registered_class_is_found_by_name_and_configs_take_it(registry):
    @register_method
    class Mine(Method):
        name, title, source, target = "mine", "mine (test)", True, True

    assert method_class("mine") is Mine and "mine" in available()
    assert register_method(Mine) is Mine  # again: nothing changes
    cfg = preset("toy").override(method={"name": "mine"})  # the config's check finds it
    assert cfg.method.name == "mine" and spec_of(Mine) == "mine"  # defined here: its name

    class Other(Method):  # the same name again (a cell run again): the newest is used
        name, title, target = "mine", "another", True

    assert register_method(Other) is method_class("mine") is Other

    class Mine2(Method):  # the kit's own are never replaced by accident
        name, title, target = "pixda", "mine", True

    with pytest.raises(ConfigError, match="method 'pixda' is the kit's own"):
        register_method(Mine2)


@pytest.mark.parametrize(
    "attrs, said",
    [
        ({"name": "Bad-Name"}, "is not a lower-case Python identifier"),
        ({"title": ""}, "it has no title"),
        ({"source": False, "target": False}, "it trains on nothing"),
        ({"target": False, "all_target": True}, "all_target needs target = True"),
        ({"schedule": "long"}, "schedule 'long' is not 'adapt' or 'pretrain'"),
        ({"losses": ("seg",)}, "are not names starting 'loss_'"),
        ({"options": ("lambda",)}, "are not config keys 'section.key'"),
    ],
)
def test_a_malformed_method_is_refused_naming_what_is_wrong(registry, attrs, said):
    base = {"name": "ok", "title": "ok", "source": True, "target": True}
    cls = type("Broken", (Method,), {**base, **attrs})
    with pytest.raises(ConfigError, match="method Broken .*" + said):
        register_method(cls)
    with pytest.raises(ConfigError, match="is not a method: expected a subclass"):
        register_method(dict)


def test_a_method_named_by_its_file_or_module(registry, tmp_path, monkeypatch):
    file = tmp_path / "my_methods.py"
    file.write_text(textwrap.dedent('''
        from pixda_core.methods import Method

        class Plain(Method):
            name, title, source, target = "plain_file", "plain", True, True
    '''))  # fmt: skip
    cls = method_class(f"{file}:Plain")
    assert cls.name == "plain_file" and method_class("plain_file") is cls
    assert spec_of(cls) == f"{file}:Plain"  # how jobs find it
    monkeypatch.chdir(tmp_path)
    assert portable("my_methods.py:Plain") == f"{file}:Plain"  # made absolute for jobs
    (tmp_path / "mod_methods.py").write_text(
        file.read_text().replace("Plain", "Mod").replace("plain_file", "plain_module")
    )
    monkeypatch.syspath_prepend(tmp_path)
    assert method_class("mod_methods:Mod").name == "plain_module"  # the module, imported
    assert spec_of(method_class("plain_module")) == "mod_methods:Mod"
    # the same name from another file: that class from here on
    (tmp_path / "again.py").write_text(file.read_text())
    again = method_class(f"{tmp_path / 'again.py'}:Plain")
    assert again is not cls and method_class("plain_file") is again
    assert spec_of(again) == f"{tmp_path / 'again.py'}:Plain"

    class Here(Method):  # then a class of that name defined here: no file names it
        name, title, source, target = "plain_file", "here", True, True

    assert spec_of(register_method(Here)) == "plain_file" and method_class("plain_file") is Here


@pytest.mark.parametrize(
    "spec, said",
    [
        ("nope", "unknown method 'nope': expected one of source_only, finetune"),
        ("{tmp}/none.py:X", "the file {tmp}/none.py does not exist"),
        ("{tmp}/broken.py:X", "broken.py cannot be run: ZeroDivisionError"),
        ("{tmp}/empty.py:X", "empty.py has no X"),
        ("no_such_module_xyz:X", "the module no_such_module_xyz cannot be imported"),
        ("{tmp}/empty.py:", "expected 'module:Class' or 'path/to/file.py:Class'"),
        ("{tmp}/notamethod.py:X", "X is not a method"),
    ],
)
def test_what_cannot_be_used_is_one_line_naming_it(registry, tmp_path, spec, said):
    (tmp_path / "broken.py").write_text("1 / 0\n")
    (tmp_path / "empty.py").write_text("")
    (tmp_path / "notamethod.py").write_text("class X:\n    pass\n")
    spec, said = spec.format(tmp=tmp_path), said.format(tmp=tmp_path)
    with pytest.raises(ConfigError) as err:
        method_class(spec)
    assert said in str(err.value) and "\n" not in str(err.value)
    # the config's check says the same, naming the key
    with pytest.raises(
        ConfigError, match=r"config method.name = .*" + ".*".join(said.split()[:2])
    ):
        preset("toy").override(method={"name": spec})


def test_a_sweep_refuses_an_unknown_method_before_writing(tmp_path, capsys):
    from pixda_core.sweep_cli import main

    out = tmp_path / "sweep"
    assert main(["--methods", "source_only", "dann", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "error: --methods 'dann': unknown method 'dann': expected one of" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())
