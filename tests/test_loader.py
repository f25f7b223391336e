"""Loading the app: spec forms, factories, interface detection, ASGI 2 adapter, error messages."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from portico.errors import AppLoadError
from portico.gateways import demo
from portico.gateways.loader import LoadedApp, asgi2_to_asgi3, load_app

_names = count()


@pytest.fixture
def make_module(tmp_path: Path) -> Iterator[Any]:
    """Write a module into tmp_path under a fresh name; restore sys.path and sys.modules after."""
    saved_path = list(sys.path)
    saved_modules = set(sys.modules)

    def make(source: str, name: str | None = None) -> str:
        name = name or f"portico_test_app_{next(_names)}"
        target = tmp_path.joinpath(*name.split("."))
        for depth in range(1, len(name.split("."))):
            package = tmp_path.joinpath(*name.split(".")[:depth])
            package.mkdir(exist_ok=True)
            (package / "__init__.py").touch()
        target.with_suffix(".py").write_text(textwrap.dedent(source), encoding="utf-8")
        return name

    yield make
    sys.path[:] = saved_path
    for module in set(sys.modules) - saved_modules:
        del sys.modules[module]


def load(
    spec: str | None, tmp_path: Path, *, factory: bool = False, interface: str = "auto"
) -> LoadedApp:
    return load_app(spec, app_dir=str(tmp_path), factory=factory, interface=interface)


def load_error(spec: str | None, tmp_path: Path, **kwargs: Any) -> str:
    with pytest.raises(AppLoadError) as info:
        load(spec, tmp_path, **kwargs)
    assert info.value.exit_code == 4
    return str(info.value)


APPS = """
async def asgi3(scope, receive, send):
    pass

def wsgi(environ, start_response):
    return []

def asgi2(scope):
    async def instance(receive, send):
        await send({"type": "seen", "scope": scope})
    return instance

class ASGI3Class:
    async def __call__(self, scope, receive, send):
        pass

class ASGI2Class:
    def __init__(self, scope):
        self.scope = scope
    async def __call__(self, receive, send):
        await send({"type": "class", "scope": self.scope})

class WSGIClass:
    def __init__(self, environ, start_response):
        pass
    def __iter__(self):
        return iter([])

class Holder:
    asgi3_instance = ASGI3Class()

asgi3_instance = ASGI3Class()

def wsgi_defaults(environ, start_response, extra=None):
    return []

async def wrong_arity(scope):
    pass

def three_sync(a, b, c):
    pass

def star(*args):
    pass

def needs_keyword(environ, start_response, *, secret):
    pass

def factory():
    return asgi3

def zero():
    return asgi3

async def async_factory():
    return asgi3

def failing_factory():
    raise RuntimeError("no database")

def factory_of_nothing():
    return 42

not_callable = 42

class NoSignature:
    __signature__ = 42
    def __call__(self, *args):
        pass

no_signature = NoSignature()
"""


@pytest.mark.parametrize(
    ("attr", "interface"),
    [
        ("asgi3", "asgi3"),
        ("wsgi", "wsgi"),
        ("asgi2", "asgi2"),
        ("ASGI3Class", None),  # the class itself takes no scope: see test below
        ("asgi3_instance", "asgi3"),
        ("Holder.asgi3_instance", "asgi3"),
        ("ASGI2Class", "asgi2"),
        ("WSGIClass", "wsgi"),
        ("wsgi_defaults", "wsgi"),
    ],
)
def test_detection(make_module: Any, tmp_path: Path, attr: str, interface: str | None) -> None:
    name = make_module(APPS)
    if interface is None:
        assert "takes no arguments; if it is an app factory, pass --factory" in load_error(
            f"{name}:{attr}", tmp_path
        )
        return
    loaded = load(f"{name}:{attr}", tmp_path)
    assert loaded.interface == interface
    assert loaded.name == f"{name}:{attr}"
    if interface != "asgi2":
        assert loaded.app is eval(f"sys.modules[name].{attr}")


def test_asgi2_is_adapted_to_asgi3(make_module: Any, tmp_path: Path) -> None:
    name = make_module(APPS)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    for attr, kind in (("asgi2", "seen"), ("ASGI2Class", "class")):
        loaded = load(f"{name}:{attr}", tmp_path)
        assert loaded.interface == "asgi2"
        sent.clear()
        scope = {"type": "http"}
        asyncio.run(loaded.app(scope, receive, send))
        assert sent == [{"type": kind, "scope": scope}]


def test_asgi2_to_asgi3_directly() -> None:
    calls: list[object] = []

    def app(scope: Any) -> Any:
        async def instance(receive: Any, send: Any) -> None:
            calls.append((scope, await receive()))

        return instance

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    async def send(message: Any) -> None:
        raise AssertionError

    adapted = asgi2_to_asgi3(app)

    async def run() -> None:
        await adapted({"type": "http"}, receive, send)

    asyncio.run(run())
    assert calls == [({"type": "http"}, {"type": "http.request"})]


@pytest.mark.parametrize(
    ("attr", "message"),
    [
        (
            "wrong_arity",
            "is a coroutine function taking 1 argument; an ASGI 3 app takes (scope, receive, send)",
        ),
        (
            "three_sync",
            "cannot tell whether {}:three_sync is an ASGI or WSGI app: it takes "
            "3 arguments; pass --interface asgi3, asgi2 or wsgi to say which",
        ),
        ("star", "it takes 0 or more arguments"),
        ("needs_keyword", "it takes a required keyword-only argument"),
        ("zero", "{}:zero takes no arguments; if it is an app factory, pass --factory"),
        ("not_callable", "{}:not_callable is not a callable"),
    ],
)
def test_detection_errors(make_module: Any, tmp_path: Path, attr: str, message: str) -> None:
    name = make_module(APPS)
    assert message.format(name) in load_error(f"{name}:{attr}", tmp_path)


def test_builtin_without_signature_needs_interface(tmp_path: Path) -> None:
    message = load_error("builtins:print", tmp_path)
    assert message == (
        "cannot tell whether builtins:print is an ASGI or WSGI app: it takes 0 or more "
        "arguments; pass --interface asgi3, asgi2 or wsgi to say which"
    )


def test_unreadable_signature_needs_interface(make_module: Any, tmp_path: Path) -> None:
    name = make_module(APPS)
    assert load_error(f"{name}:no_signature", tmp_path) == (
        f"cannot read the signature of {name}:no_signature; "
        "pass --interface asgi3, asgi2 or wsgi to say which"
    )
    assert load(f"{name}:no_signature", tmp_path, interface="wsgi").interface == "wsgi"


@pytest.mark.parametrize("interface", ["asgi3", "wsgi"])
def test_interface_forced(make_module: Any, tmp_path: Path, interface: str) -> None:
    name = make_module(APPS)
    loaded = load(f"{name}:three_sync", tmp_path, interface=interface)
    assert loaded.interface == interface
    assert loaded.app is sys.modules[name].three_sync


def test_interface_forced_asgi2_adapts(make_module: Any, tmp_path: Path) -> None:
    name = make_module(APPS)
    loaded = load(f"{name}:star", tmp_path, interface="asgi2")
    assert loaded.interface == "asgi2"
    assert loaded.app is not sys.modules[name].star


def test_app_dir_must_exist(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing")
    with pytest.raises(AppLoadError) as info:
        load_app("x:app", app_dir=missing, factory=False, interface="auto")
    assert str(info.value) == f"--app-dir {missing!r} is not a directory"


def test_unknown_interface(tmp_path: Path) -> None:
    assert load_error(None, tmp_path, interface="asgi4") == (
        "unknown interface 'asgi4'; expected one of auto, asgi3, asgi2, wsgi"
    )


# -- spec forms --------------------------------------------------------------------------------


def test_module_alone_finds_app_then_application(make_module: Any, tmp_path: Path) -> None:
    both = make_module("async def app(s, r, w): pass\ndef application(e, s): pass\n")
    loaded = load(both, tmp_path)
    assert (loaded.name, loaded.interface) == (f"{both}:app", "asgi3")
    only = make_module("def application(e, s): pass\n")
    loaded = load(only, tmp_path)
    assert (loaded.name, loaded.interface) == (f"{only}:application", "wsgi")
    neither = make_module("x = 1\n")
    assert load_error(neither, tmp_path) == (
        f"module {neither!r} has no attribute 'app' or 'application'; "
        f"name the app as {neither}:attribute"
    )


def test_dotted_module_and_app_dir_first_on_path(make_module: Any, tmp_path: Path) -> None:
    name = make_module("async def app(s, r, w): pass\n", name=f"pkg{next(_names)}.web.main")
    loaded = load(f"{name}:app", tmp_path)
    assert loaded.interface == "asgi3"
    assert sys.path[0] == str(tmp_path)


def test_none_is_the_demo_app(tmp_path: Path) -> None:
    loaded = load(None, tmp_path)
    assert loaded == LoadedApp(demo.app, "asgi3", "portico.gateways.demo:app")


@pytest.mark.parametrize(
    "spec", ["", ":app", "x:", "x:y:z", "my-app:app", "x:1app", "x..y:a", "x:a b"]
)
def test_invalid_spec(tmp_path: Path, spec: str) -> None:
    assert load_error(spec, tmp_path) == (
        f"{spec!r} is not a valid app spec, expected module:attribute"
    )


def test_missing_attribute_suggests(make_module: Any, tmp_path: Path) -> None:
    name = make_module("async def app(s, r, w): pass\n")
    assert load_error(f"{name}:ap", tmp_path) == (
        f"module {name!r} has no attribute 'ap'; did you mean 'app'?"
    )
    assert load_error(f"{name}:zzz", tmp_path) == f"module {name!r} has no attribute 'zzz'"
    holder = make_module(APPS)
    assert load_error(f"{holder}:Holder.asgi3_instanc", tmp_path) == (
        f"{holder}:Holder has no attribute 'asgi3_instanc'; did you mean 'asgi3_instance'?"
    )


def test_missing_module(tmp_path: Path) -> None:
    assert load_error("portico_no_such_module:app", tmp_path) == (
        "could not import module 'portico_no_such_module': ModuleNotFoundError: "
        "No module named 'portico_no_such_module'"
    )
    assert load_error("portico.no_such:app", tmp_path) == (
        "could not import module 'portico.no_such': ModuleNotFoundError: "
        "No module named 'portico.no_such'"
    )


def test_module_raising_on_import_shows_its_traceback(make_module: Any, tmp_path: Path) -> None:
    name = make_module(
        "import os\n\ndef helper():\n    raise ValueError('bad setting')\n\nhelper()\n"
    )
    message = load_error(f"{name}:app", tmp_path)
    first, _, rest = message.partition("\n\n")
    assert first == f"could not import module {name!r}: ValueError: bad setting"
    assert rest.startswith("Traceback (most recent call last):")
    assert f'{name}.py", line 6, in <module>' in rest
    assert "line 4, in helper" in rest
    assert "importlib" not in rest
    assert rest.endswith("ValueError: bad setting")


def test_module_with_missing_dependency_shows_its_traceback(
    make_module: Any, tmp_path: Path
) -> None:
    name = make_module("import portico_missing_dependency\n")
    message = load_error(name, tmp_path)
    assert message.startswith(
        f"could not import module {name!r}: ModuleNotFoundError: "
        "No module named 'portico_missing_dependency'\n\nTraceback"
    )


def test_module_with_syntax_error_or_sys_exit(make_module: Any, tmp_path: Path) -> None:
    broken = make_module("def app(:\n")
    message = load_error(broken, tmp_path)
    assert message.startswith(f"could not import module {broken!r}: SyntaxError: ")
    assert "def app(:" in message
    exits = make_module("raise SystemExit(3)\n")
    assert load_error(exits, tmp_path).startswith(
        f"could not import module {exits!r}: SystemExit: 3"
    )


# -- factories ---------------------------------------------------------------------------------


def test_factory(make_module: Any, tmp_path: Path) -> None:
    name = make_module(APPS)
    loaded = load(f"{name}:factory", tmp_path, factory=True)
    assert loaded.app is sys.modules[name].asgi3
    assert loaded.interface == "asgi3"
    assert loaded.name == f"{name}:factory"


@pytest.mark.parametrize(
    ("attr", "message"),
    [
        ("not_callable", "{}:not_callable is not a callable, so it cannot be used with --factory"),
        (
            "failing_factory",
            "factory {}:failing_factory raised RuntimeError: no database\n\nTraceback",
        ),
        (
            "factory_of_nothing",
            "factory {}:factory_of_nothing returned 42, which is not a callable",
        ),
        (
            "async_factory",
            "factory {}:async_factory is a coroutine function; --factory needs a plain function",
        ),
    ],
)
def test_factory_errors(make_module: Any, tmp_path: Path, attr: str, message: str) -> None:
    name = make_module(APPS)
    assert load_error(f"{name}:{attr}", tmp_path, factory=True).startswith(message.format(name))


def test_loader_imports_no_io_modules() -> None:
    code = (
        "import sys, portico.gateways.loader, portico.gateways.demo\n"
        "bad = {'asyncio', 'socket', 'ssl', 'signal', 'subprocess'} & set(sys.modules)\n"
        "print(sorted(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
