"""Finding the app: import ``module:attribute``, call a factory, tell ASGI 3, ASGI 2 and WSGI apart.

Detection reads the callable's signature, never calls it:

- a coroutine function (or an object whose ``__call__`` is one) taking three arguments is ASGI 3;
- a class whose constructor takes one argument (``scope``) is ASGI 2, two (``environ``,
  ``start_response``) is WSGI (PEP 3333 allows a class as the app);
- any other callable taking two arguments is WSGI, one argument ASGI 2.

Anything else is refused with a hint (``--factory``, ``--interface``) rather than guessed.
This module imports neither asyncio nor sockets: it is the gateway layer, and the CLI's
``--check-config`` uses it without starting a runtime.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import sys
import traceback
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from portico.errors import AppLoadError

__all__ = ["DEMO_APP", "Interface", "LoadedApp", "asgi2_to_asgi3", "load_app", "loaded_app"]

Interface = Literal["asgi3", "asgi2", "wsgi"]

_Scope = MutableMapping[str, Any]
_Message = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[_Message]]
_Send = Callable[[_Message], Awaitable[None]]
ASGI3App = Callable[[_Scope, _Receive, _Send], Awaitable[None]]
ASGI2App = Callable[[_Scope], Callable[[_Receive, _Send], Awaitable[None]]]

#: The app served when no APP is given.
DEMO_APP = "portico.gateways.demo:app"

_INTERFACES = ("asgi3", "asgi2", "wsgi")


@dataclass(frozen=True, slots=True)
class LoadedApp:
    """An app ready to serve. For ASGI 2, ``app`` is already adapted to ASGI 3."""

    app: Callable[..., Any]
    interface: Interface
    #: ``module:attribute`` as found, for log lines
    name: str


def asgi2_to_asgi3(app: ASGI2App) -> ASGI3App:
    """Wrap an ASGI 2 app (``app(scope)`` returns ``instance(receive, send)``) as ASGI 3."""

    async def asgi3(scope: _Scope, receive: _Receive, send: _Send) -> None:
        instance = app(scope)
        await instance(receive, send)

    asgi3.__qualname__ = f"asgi2_to_asgi3({getattr(app, '__qualname__', repr(app))})"
    return asgi3


def load_app(spec: str | None, *, app_dir: str, factory: bool, interface: str) -> LoadedApp:
    """Import and check the app named by ``spec``; ``AppLoadError`` says what is wrong.

    ``spec`` is ``module:attr``, ``module:attr.sub``, ``module`` (which looks for ``app``, then
    ``application``) or None for the demo app. ``app_dir`` goes first on ``sys.path``.
    ``interface`` is ``auto`` or forces one of ``asgi3``, ``asgi2``, ``wsgi``.
    """
    _check_interface(interface)
    module_name, attr_path = _parse_spec(DEMO_APP if spec is None else spec)
    _put_first_on_path(app_dir)
    module = _import(module_name)
    if attr_path is None:
        for candidate in ("app", "application"):
            if hasattr(module, candidate):
                attr_path = candidate
                break
        else:
            raise AppLoadError(
                f"module {module_name!r} has no attribute 'app' or 'application'; "
                f"name the app as {module_name}:attribute"
            )
    name = f"{module_name}:{attr_path}"
    app = _lookup(module, module_name, attr_path)
    if factory:
        app = _call_factory(app, name)
    elif not callable(app):
        raise AppLoadError(f"{name} is not a callable")
    return loaded_app(app, name, interface)


def loaded_app(app: Callable[..., Any], name: str, interface: str = "auto") -> LoadedApp:
    """An app object as ``load_app`` would serve it: its interface detected (or forced), an
    ASGI 2 app adapted (``portico.testing`` takes app objects this way)."""
    _check_interface(interface)
    kind = _detect(app, name) if interface == "auto" else cast(Interface, interface)
    if kind == "asgi2":
        return LoadedApp(asgi2_to_asgi3(app), "asgi2", name)
    return LoadedApp(app, kind, name)


def _check_interface(interface: str) -> None:
    if interface != "auto" and interface not in _INTERFACES:
        expected = ", ".join(("auto", *_INTERFACES))
        raise AppLoadError(f"unknown interface {interface!r}; expected one of {expected}")


def _is_dotted_name(text: str) -> bool:
    return bool(text) and all(part.isidentifier() for part in text.split("."))


def _parse_spec(spec: str) -> tuple[str, str | None]:
    module_name, sep, attr_path = spec.partition(":")
    if not _is_dotted_name(module_name) or (sep and not _is_dotted_name(attr_path)):
        raise AppLoadError(f"{spec!r} is not a valid app spec, expected module:attribute")
    return module_name, attr_path if sep else None


def _put_first_on_path(app_dir: str) -> None:
    path = os.path.abspath(app_dir)
    if not os.path.isdir(path):
        raise AppLoadError(f"--app-dir {app_dir!r} is not a directory")
    if sys.path[:1] != [path]:
        sys.path.insert(0, path)
        importlib.invalidate_caches()


def _is_importlib_frame(frame: traceback.FrameSummary) -> bool:
    return frame.filename.startswith("<frozen importlib") or frame.filename in (
        importlib.__file__,
        __file__,
    )


def _format_import_error(exc: BaseException) -> str:
    """The traceback of an error raised by the app's own import, without importlib's frames."""
    report = traceback.TracebackException.from_exception(exc)
    report.stack = traceback.StackSummary.from_list(
        [frame for frame in report.stack if not _is_importlib_frame(frame)]
    )
    return "".join(report.format()).rstrip()


def _import(module_name: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            # The app's module itself (or its package) is missing: one line says it all.
            raise AppLoadError(
                f"could not import module {module_name!r}: ModuleNotFoundError: {exc}"
            ) from None
        raise AppLoadError(_import_failure(module_name, exc)) from exc
    except (Exception, SystemExit) as exc:
        raise AppLoadError(_import_failure(module_name, exc)) from exc


def _import_failure(module_name: str, exc: BaseException) -> str:
    return (
        f"could not import module {module_name!r}: {type(exc).__name__}: {exc}\n\n"
        + _format_import_error(exc)
    )


def _lookup(module: Any, module_name: str, attr_path: str) -> Any:
    obj = module
    owner = f"module {module_name!r}"
    for depth, part in enumerate(attr_path.split(".")):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            message = f"{owner} has no attribute {part!r}"
            public = [name for name in dir(obj) if not name.startswith("_")]
            close = difflib.get_close_matches(part, public, n=1)
            if close:
                message += f"; did you mean {close[0]!r}?"
            raise AppLoadError(message) from None
        owner = f"{module_name}:{'.'.join(attr_path.split('.')[: depth + 1])}"
    return obj


def _call_factory(factory: Any, name: str) -> Any:
    if not callable(factory):
        raise AppLoadError(f"{name} is not a callable, so it cannot be used with --factory")
    try:
        app = factory()
    except Exception as exc:
        raise AppLoadError(
            f"factory {name} raised {type(exc).__name__}: {exc}\n\n{_format_import_error(exc)}"
        ) from exc
    if inspect.iscoroutine(app):
        app.close()  # never awaited on purpose: say so instead of warning
        raise AppLoadError(
            f"factory {name} is a coroutine function; --factory needs a plain function"
        )
    if not callable(app):
        raise AppLoadError(f"factory {name} returned {app!r}, which is not a callable")
    return app


def _positional_range(signature: inspect.Signature) -> tuple[int, float]:
    """How many positional arguments a call may pass: (required, maximum)."""
    required, maximum = 0, 0.0
    for parameter in signature.parameters.values():
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            maximum = float("inf")
        elif parameter.kind in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            maximum += 1
            if parameter.default is inspect.Parameter.empty:
                required += 1
        elif (
            parameter.kind is inspect.Parameter.KEYWORD_ONLY
            and parameter.default is inspect.Parameter.empty
        ):
            return required, -1.0  # a required keyword-only argument: no server call fits
    return required, maximum


def _accepts(signature: inspect.Signature, count: int) -> bool:
    required, maximum = _positional_range(signature)
    return required <= count <= maximum


def _detect(app: Any, name: str) -> Interface:
    hint = "; pass --interface asgi3, asgi2 or wsgi to say which"
    is_class = inspect.isclass(app)
    is_async = not is_class and (
        inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(type(app).__call__)
    )
    try:
        signature = inspect.signature(app)
    except (TypeError, ValueError):
        raise AppLoadError(f"cannot read the signature of {name}" + hint) from None
    if is_async:
        if _accepts(signature, 3):
            return "asgi3"
        raise AppLoadError(
            f"{name} is a coroutine function taking {_describe(signature)}; "
            "an ASGI 3 app takes (scope, receive, send)"
        )
    two, one = _accepts(signature, 2), _accepts(signature, 1)
    if two and not one:
        return "wsgi"
    if one and not two:
        return "asgi2"
    if _accepts(signature, 0) and not (one or two):
        raise AppLoadError(f"{name} takes no arguments; if it is an app factory, pass --factory")
    raise AppLoadError(
        f"cannot tell whether {name} is an ASGI or WSGI app: it takes {_describe(signature)}" + hint
    )


def _describe(signature: inspect.Signature) -> str:
    required, maximum = _positional_range(signature)
    if maximum < 0:
        return "a required keyword-only argument"
    if maximum == float("inf"):
        return f"{required} or more arguments"
    if required == maximum:
        return f"{required} argument" + ("" if required == 1 else "s")
    return f"{required} to {int(maximum)} arguments"
