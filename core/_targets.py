"""Turning what the user wrote into validated :class:`~anyprobe.Target` objects.

One parser for target URLs, one for ``--set KEY=VALUE``, one way to validate
options against a probe's model: the CLI, the config file and the embedding
API all go through here, so they accept and reject exactly the same input.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple, overload
from urllib.parse import SplitResult, urlsplit

from ._defaults import DEFAULT_TIMEOUT
from ._errors import OptionsError, TargetError, UsageError, did_you_mean
from ._inputs import MAX_TOML_DEPTH, TomlLimitError, find_control, host_problem, loads_toml
from ._manager import PluginManager
from ._model import Target
from ._option_defaults import DefaultOptions
from ._probe import Probe, port_or_default

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError

    from ._reporter import Reporter

# The one URL redactor lives in anyprobe.masking; the name stays importable here.
from .masking import redact_url as redact_url

#: Per-check settings that core handles itself, next to the probe's options.
CHECK_FIELDS = ("name", "url", "timeout", "retries", "labels")


_SPACE = re.compile(r"\s")
#: What Python makes of bytes that are not UTF-8 in a command line argument.
_SURROGATE = re.compile("[\ud800-\udfff]")
#: Anything split_url refuses wherever it is: one scan for the common case.
_REFUSED = re.compile(
    "[\\s\x00-\x1f\x7f-\x9f\u200b\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff\ud800-\udfff]"
)


#: The common shape of a target, ``scheme://host[:port][/path][?query][#fragment]``
#: with an ASCII host name (or IPv4 address) that host_problem accepts as it
#: is: no user, no brackets, no percent sign, labels of 1 to 63 characters, at
#: most 253 characters in all. What it matches, urlsplit splits the same way
#: and host_problem accepts; anything else goes the long way.
_WELL_FORMED = re.compile(
    r"([A-Za-z][A-Za-z0-9+.-]*)://"
    r"(((?![A-Za-z0-9_.-]{254})[A-Za-z0-9_-]{1,63}(?:\.[A-Za-z0-9_-]{1,63})*\.?)"
    r"(?::([0-9]{1,5}))?)"
    r"(/[^?#]*)?(?:\?([^#]*))?(?:#(.*))?",
    re.DOTALL,
)


#: SplitResult(...) without the frame of its generated __new__.
_new_split = tuple.__new__


class PlainUrl(NamedTuple):
    """A target URL of the common shape (see :data:`_WELL_FORMED`), split by
    one regular expression: its parts as :func:`split_url` gives them, and
    its host and port as ``SplitResult.hostname`` and ``.port`` would."""

    scheme: str
    netloc: str
    path: str
    query: str
    fragment: str
    hostname: str
    port: int | None

    def split(self) -> SplitResult:
        """The URL as :func:`split_url` gives it."""
        return _new_split(SplitResult, self[:5])


def split_plain_url(text: str) -> PlainUrl | None:
    """``text`` split, when it has the common shape that needs no more checks
    (``scheme://host[:port][/path][?query][#fragment]``, an ASCII host name or
    IPv4 address, no user, a port up to 65535); else None, and
    :func:`split_url` is the way to split it (or refuse it)."""
    if text and not _REFUSED.search(text):
        match = _WELL_FORMED.fullmatch(text)
        if match is not None:
            scheme, netloc, host, port, path, query, fragment = match.groups("")
            number = int(port) if port else None
            if number is None or number <= 65535:
                return PlainUrl(scheme.lower(), netloc, path, query, fragment, host.lower(), number)
    return None


def split_url(text: str) -> SplitResult:
    """Split a target URL, with one clear error for anything unparseable.

    Control characters are refused in every part of the URL (and, decoded, in
    its user and password), and so is a host that can never resolve: see
    :func:`~anyprobe._inputs.host_problem`.
    """
    if text and not _REFUSED.search(text):
        match = _WELL_FORMED.fullmatch(text)
        if match is not None:
            scheme, netloc, _host, port, path, query, fragment = match.groups("")
            if not port or int(port) <= 65535:
                return _new_split(SplitResult, (scheme.lower(), netloc, path, query, fragment))
    return _split_url_slowly(text)


def _split_url_slowly(text: str) -> SplitResult:
    """:func:`split_url` for any input: urlsplit, then every check of the parts."""
    if not text or _REFUSED.search(text):
        control = find_control(text)
        if control is not None:
            raise TargetError(f"{redact_url(text)}: a control character ({control}) in the target")
        if _SURROGATE.search(text):
            raise TargetError(f"{redact_url(text)}: bytes that are not UTF-8 in the target")
        raise TargetError(f"{text!r}: a target is a URL without spaces, like tcp://host:port")
    if "://" not in text:
        raise TargetError(
            f"{redact_url(text)}: not a URL (expected SCHEME://HOST..., like tcp://{text})"
        )
    try:
        url = urlsplit(text)
        url.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise TargetError(f"{redact_url(text)}: {exc}") from None
    problem = _authority_problem(url)
    if problem is not None:
        raise TargetError(f"{redact_url(text)}: {problem}")
    return url


def _authority_problem(url: SplitResult) -> str | None:
    """What is wrong with the user, password and host of ``url``, or None."""
    netloc = url.netloc
    if "@" in netloc:
        from urllib.parse import unquote

        for part in (url.username, url.password):
            if part and find_control(unquote(part)) is not None:
                return "a control character in the user or password"
    host = url.hostname
    if not host:
        return None
    return host_problem(host, bracketed=netloc.rpartition("@")[2].startswith("["))


def parse_value(text: str) -> Any:
    """A ``--set`` value: a TOML value when it parses as one, else the string itself.

    ``5`` is an int, ``1.5`` a float, ``true`` a bool, ``[200, 301]`` a list,
    ``"a b"`` a string; anything else (``UP``, ``/health``) is taken as written.
    Raises :class:`~anyprobe._inputs.TomlLimitError` for a value nested too
    deep or a number too long.
    """
    import tomllib

    try:
        return loads_toml(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


class SetValue(NamedTuple):
    """A ``--set`` value: the text as typed, and its TOML reading.

    The reading is used, except for an option that only takes text: there,
    ``--set expect=220`` means the text ``220``, not the number.
    """

    text: str
    value: Any


def parse_set(assignments: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Parse repeated ``--set KEY=VALUE`` into a dict of :class:`SetValue`
    (dotted keys make tables)."""
    values: dict[str, Any] = {}
    for item in assignments:
        key, eq, raw = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise OptionsError(f"--set {item!r}: expected KEY=VALUE")
        parts = key.split(".")
        if len(parts) > MAX_TOML_DEPTH:
            raise OptionsError(f"--set {key[:40]}...: nested deeper than {MAX_TOML_DEPTH} levels")
        if not all(p.isidentifier() or p.replace("-", "_").isidentifier() for p in parts):
            raise OptionsError(f"--set {item!r}: {key!r} is not an option name")
        table = values
        for part in parts[:-1]:
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise OptionsError(f"--set {item!r}: {part!r} is set as a value and a table")
        try:
            value = parse_value(raw)
        except TomlLimitError as exc:
            raise OptionsError(f"--set {key}=...: {exc}") from None
        table[parts[-1]] = SetValue(raw, value)
    return values


def _takes_text_only(annotation: Any) -> bool:
    """True for ``str``, ``str | None``, a Literal of strings (Annotated or not)."""
    import typing

    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _takes_text_only(typing.get_args(annotation)[0])
    if origin is typing.Literal:
        return all(isinstance(arg, str) for arg in typing.get_args(annotation))
    if origin is not None and typing.get_args(annotation) and origin not in (list, dict, tuple):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return bool(args) and all(_takes_text_only(a) for a in args)
    return annotation is str


def _plain(value: Any, annotation: Any = None) -> Any:
    """A --set value as the option should get it (see :class:`SetValue`)."""
    if isinstance(value, SetValue):
        if not isinstance(value.value, str) and _takes_text_only(annotation):
            return value.text
        return _plain(value.value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def validate_options(model: type[BaseModel], raw: Mapping[str, Any], *, what: str) -> BaseModel:
    """Validate ``raw`` against ``model``; the first problem becomes an OptionsError."""
    from pydantic import ValidationError

    try:
        return model.model_validate(dict(raw))
    except ValidationError as exc:
        raise options_error(exc, model, what=what) from None
    except Exception as exc:  # a validator's bug (TypeError, KeyError): name the plugin
        raise OptionsError(
            f"{what}: options validation raised {type(exc).__name__}: {exc}"
        ) from None


def options_error(exc: ValidationError, model: type[BaseModel], *, what: str) -> OptionsError:
    """One line for the first error of a pydantic ValidationError."""
    error = exc.errors(include_url=False)[0]
    location = ".".join(str(p) for p in error["loc"]) or None
    if error["type"] == "extra_forbidden" and location:
        hint = did_you_mean(str(error["loc"][-1]), model.model_fields)
        message = f"unknown option for {what}{hint}"
    else:
        # A validator's own ValueError already says what is wrong: drop pydantic's prefix.
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] not in ("missing",) and _may_show_input(model, error):
            message += f" (got {_short(error['input'])})"
    return OptionsError(message, field=location)


_SECRET_WORDS = ("password", "token", "secret", "key", "auth", "cookie", "header", "url", "proxy")


def _may_show_input(model: type[BaseModel], error: Any) -> bool:
    """Whether an error line may repeat the bad value: a scalar of a field that
    cannot hold a secret (a model-wide error's input is every option at once)."""
    if "input" not in error or not error["loc"]:
        return False
    if not isinstance(error["input"], str | int | float | bool | None):
        return False
    names = [str(part).lower() for part in error["loc"]]
    if any(word in name for name in names for word in _SECRET_WORDS):
        return False
    field = model.model_fields.get(str(error["loc"][0]))
    return field is None or "Secret" not in str(field.annotation)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class TargetFactory:
    """Builds targets for one manager; validated options are shared between
    targets with the same probe and the same options, so a 100,000-line target
    list costs one options object, not 100,000."""

    def __init__(self, manager: PluginManager) -> None:
        self.manager = manager
        self._options_cache: dict[tuple[str, str], Any] = {}
        self._probes: dict[str, Probe[Any]] = {}  # by scheme, as the manager gave them

    def options_for(self, probe_name: str, raw: Mapping[str, Any]) -> Any:
        """``raw`` validated by the probe's model; equal inputs give the same object."""
        key = (probe_name, repr(sorted(raw.items())) if raw else "")
        options = self._options_cache.get(key)
        if options is None:
            probe_type = type(self.manager.probes[probe_name])
            if not raw and probe_type.option_defaults is not None:
                # Nothing to validate: pydantic and the model are left unbuilt.
                options = DefaultOptions(probe_type, probe_type.option_defaults)
            else:
                options = validate_options(probe_type.Options, raw, what=f"probe {probe_name}")
            self._options_cache[key] = options
        return options

    def build(
        self,
        text: str,
        *,
        name: str | None = None,
        options: Mapping[str, Any] | None = None,
        labels: Mapping[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = 0,
    ) -> Target:
        """A validated target for URL ``text``; raises TargetError or OptionsError.

        ``options`` must only hold options the target's probe knows (see
        :func:`options_for_probe` to pick them out of a shared set).
        """
        plain = split_plain_url(text)
        url = plain.split() if plain is not None else _split_url_slowly(text)
        display = text if "@" not in text else redact_url(text)
        scheme = url.scheme
        probe = self._probes.get(scheme)
        if probe is None:
            probe = self.manager.probe_for_scheme(scheme)
            if probe is None:
                known = ", ".join(sorted(self.manager.schemes)) or "none"
                raise TargetError(
                    f"{display}: unknown scheme {scheme!r}"
                    f"{did_you_mean(scheme, self.manager.schemes)} (known: {known})"
                )
            self._probes[scheme] = probe
        port: int | None
        try:
            if plain is not None and type(probe).validate_url is Probe.validate_url:
                # What the default validate_url reads, without urlsplit's
                # properties: the regex has split the host and port already.
                host, port = plain.hostname, port_or_default(probe, scheme, plain.port, display)
            else:
                host, port = probe.validate_url(url, display)
        except ValueError as exc:
            raise TargetError(f"{display}: {exc}") from None
        except TargetError as exc:
            if exc.message.startswith(display):
                raise
            raise TargetError(f"{display}: {exc.message}") from None
        except Exception as exc:  # a plugin's bug: one line naming it, not a traceback
            raise TargetError(
                f"{display}: probe {probe.name} validate_url raised {type(exc).__name__}: {exc}"
            ) from None
        validated = self.options_for(probe.name, options if options is not None else _EMPTY)
        # By position (name, url, display_url, probe, host, port, options,
        # labels, timeout, retries): cheaper than keywords, once per target.
        return Target(
            name or display,
            text,
            display,
            probe.name,
            host.lower(),
            port,
            validated,
            labels if labels is not None else _EMPTY_LABELS,
            timeout,
            retries,
        )


_EMPTY: Mapping[str, Any] = {}
_EMPTY_LABELS: Mapping[str, str] = {}


def options_for_probe(
    manager: PluginManager, probe_name: str, shared: Mapping[str, Any]
) -> Mapping[str, Any]:
    """The subset of ``shared`` options (``--set``, ``[defaults]``) a probe knows."""
    fields = manager.probes[probe_name].Options.model_fields
    return {k: _plain(v, fields[k].annotation) for k, v in shared.items() if k in fields}


def check_shared_options(
    manager: PluginManager, shared: Mapping[str, Any], probes: set[str], *, what: str
) -> None:
    """Fail on a shared option that none of ``probes`` knows, with a did-you-mean."""
    known: set[str] = set()
    for probe_name in probes:
        known.update(manager.probes[probe_name].Options.model_fields)
    for key in shared:
        if key not in known:
            names = ", ".join(sorted(probes)) or "no probe"
            raise OptionsError(
                f"unknown option for {names}{did_you_mean(key, known)}", field=key, source=what
            )


def make_reporter(
    manager: PluginManager, name: str, options: Mapping[str, Any]
) -> tuple[str, Reporter[Any]]:
    """An instance of reporter ``name`` with validated ``options``."""
    reporter_type = manager.reporter_type(name)
    if reporter_type is None:
        known = ", ".join(sorted(manager.reporters)) or "none"
        raise OptionsError(
            f"unknown reporter {name!r}{did_you_mean(name, manager.reporters)} (known: {known})"
        )
    if not options and reporter_type.option_defaults is not None:
        return name, reporter_type(DefaultOptions(reporter_type, reporter_type.option_defaults))
    validated = validate_options(reporter_type.Options, options, what=f"reporter {name}")
    return name, reporter_type(validated)


_COMMENT = re.compile(r"\s#")

#: The longest line a targets file may have, in bytes.
MAX_TARGET_LINE = 64 * 1024
#: The most lines read from a targets file (blank lines and comments included).
MAX_TARGET_LINES = 10_000_000


def read_target_lines(text: str) -> list[tuple[int, str]]:
    """Targets from a file's text: one per line; blank lines and ``#`` comments skipped."""
    return [entry for entry in _targets_of(enumerate(text.splitlines(), start=1))]


def _targets_of(lines: Iterable[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    for number, line in lines:
        if number == 1:
            line = line.removeprefix("\ufeff")
        stripped = line.strip()
        if stripped.startswith("#"):
            continue
        # A trailing comment starts after a space or a tab; a '#' inside a URL is its fragment.
        stripped = _COMMENT.split(stripped, maxsplit=1)[0].strip()
        if stripped:
            yield number, stripped


def read_target_file(stream: BinaryIO, source: str) -> list[tuple[str, int | None]]:
    """``(url, line)`` for each target of an open targets file, read line by line.

    A line longer than :data:`MAX_TARGET_LINE` bytes, more than
    :data:`MAX_TARGET_LINES` lines or text that is not UTF-8 is a
    :class:`~anyprobe.UsageError` naming ``source`` and the line: a device
    such as ``/dev/zero`` is never read whole into memory. A UTF-8 byte order
    mark at the start is skipped.
    """

    def lines() -> Iterator[tuple[int, str]]:
        for number in range(1, MAX_TARGET_LINES + 2):
            try:
                raw = stream.readline(MAX_TARGET_LINE + 1)
            except OSError as exc:
                raise UsageError(
                    f"cannot read targets: {exc.strerror or exc}", source=source
                ) from None
            if not raw:
                return
            if number > MAX_TARGET_LINES:
                raise UsageError(f"more than {MAX_TARGET_LINES:,} lines of targets", source=source)
            if len(raw) > MAX_TARGET_LINE and not raw.endswith(b"\n"):
                raise UsageError(
                    f"line longer than {MAX_TARGET_LINE:,} bytes", source=source, line=number
                )
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise UsageError("not UTF-8 text", source=source, line=number) from None
            yield number, text

    return [(url, number) for number, url in _targets_of(lines())]


class TargetList(Sequence[Target]):
    """Validated targets that share their settings.

    Up to :data:`KEEP_TARGETS` of them are kept as the :class:`Target` objects
    validation built. Past that, a target is kept as its URL plus a few bytes
    (where its host lies in the URL, its port, which probe) and made again
    when the scheduler reaches it, without parsing anything: a run over a
    million URLs holds a million strings, not a million objects (about 80
    bytes a target instead of 300).
    """

    def __init__(self) -> None:
        self._urls: list[str] = []
        self._built: list[Target] | None = []
        self._templates: list[Target] = []  # one validated target per probe
        self._template_index: dict[str, int] = {}
        self._probe = array("B")
        self._host_start = array("I")
        self._host_end = array("I")
        self._port = array("H")  # 0: no port
        self._odd_hosts: dict[int, str] = {}  # hosts that are not a slice of the URL

    def _add(self, target: Target, keep: int) -> None:
        index = len(self._urls)
        self._urls.append(target.url)
        built = self._built
        if built is None:
            self._compact(target, index)
            return
        built.append(target)
        if len(built) > keep:
            # Compacted only now: a list that stays short never pays for it.
            for index, kept in enumerate(built):
                self._compact(kept, index)
            self._built = None

    def _compact(self, target: Target, index: int) -> None:
        template = self._template_index.get(target.probe)
        if template is None:
            template = self._template_index[target.probe] = len(self._templates)
            self._templates.append(target)
        self._probe.append(template)
        start = -1
        if target.host:
            # Any place where the URL spells the host does: _make lowers the slice.
            start = target.url.find(target.host)
            if start < 0:
                start = target.url.lower().find(target.host)
        if start < 0:
            self._odd_hosts[index] = target.host
            start = 0
        self._host_start.append(start)
        self._host_end.append(start + len(target.host))
        self._port.append(target.port or 0)

    def _make(self, index: int) -> Target:
        url = self._urls[index]
        template = self._templates[self._probe[index]]
        host = self._odd_hosts.get(index)
        if host is None:
            host = url[self._host_start[index] : self._host_end[index]].lower()
        display = redact_url(url)
        return Target(
            display,  # name
            url,
            display,  # display_url
            template.probe,
            host,
            self._port[index] or None,
            template.options,
            template.labels,
            template.timeout,
            template.retries,
        )

    def __len__(self) -> int:
        return len(self._urls)

    @overload
    def __getitem__(self, index: int) -> Target: ...
    @overload
    def __getitem__(self, index: slice) -> list[Target]: ...
    def __getitem__(self, index: int | slice) -> Target | list[Target]:
        if self._built is not None:
            return self._built[index]
        if isinstance(index, slice):
            return [self._make(i) for i in range(len(self._urls))[index]]
        return self._make(range(len(self._urls))[index])

    def __iter__(self) -> Iterator[Target]:
        if self._built is not None:
            return iter(self._built)
        return map(self._make, range(len(self._urls)))


#: Up to this many targets, a run keeps the objects it validated (fast);
#: past it, their URLs only (small).
KEEP_TARGETS = 20_000


def build_targets(
    manager: PluginManager,
    urls: Iterable[str | tuple[str, int | None]],
    *,
    options: Mapping[str, Any] | None = None,
    labels: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = 0,
    source: str | None = None,
    options_source: str = "--set",
    keep: int | None = None,
) -> TargetList:
    """Validated targets for URLs sharing one set of options (``--set``, the API).

    ``urls`` are strings, or ``(url, line)`` pairs read from ``source`` so that
    an error names the file and line. An option none of the targets' probes
    knows is an error; one that only some know applies to those. Every URL is
    validated here, before anything runs. ``keep`` overrides :data:`KEEP_TARGETS`.
    """
    if keep is None:
        keep = KEEP_TARGETS
    factory = TargetFactory(manager)
    shared = dict(options or {})
    per_probe: dict[str, Mapping[str, Any]] = {}
    probes_used: set[str] = set()
    labels = dict(labels) if labels else _EMPTY_LABELS

    def build(text: str) -> Target:
        raw = _EMPTY
        probe = manager.probe_for_scheme(text.partition(":")[0]) if shared else None
        if probe is not None:
            raw = per_probe.get(probe.name)  # type: ignore[assignment]
            if raw is None:
                raw = per_probe[probe.name] = options_for_probe(manager, probe.name, shared)
        return factory.build(text, options=raw, labels=labels, timeout=timeout, retries=retries)

    targets = TargetList()
    for entry in urls:
        text, line = (entry, None) if isinstance(entry, str) else entry
        try:
            target = build(text)
        except TargetError as exc:
            raise exc.located(source=source, line=line) from None
        except OptionsError as exc:
            raise exc.located(source=options_source, check=redact_url(text)) from None
        probes_used.add(target.probe)
        targets._add(target, keep)
    if shared:
        check_shared_options(manager, shared, probes_used, what=options_source)
    return targets
