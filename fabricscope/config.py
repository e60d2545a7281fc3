"""The configuration of one run: `--config FILE` read once (pipeline.yamlfile, which keeps line numbers)
into a typed Config, one attribute per section, each a component's frozen config dataclass.

    kafka:      kafka-python security options, passed through        (fabricscope.services)
    detectors:  thresholds and windows                                (pipeline.detect.config.DetectorConfig)
    alerts:     webhooks incidents go to (`ingest`, `replay`, `demo`) (pipeline.alerts.config.AlertsConfig)
    capture:    CaptureConfig      sflow: SflowConfig                 (collectors.*, beside each source)
    recorder:   RecorderConfig     (`capture`, `demo`)                (collectors.recorder)
    second_opinion: SecondOpinionConfig (`capture`, `demo`, `replay`) (collectors.second_opinion)
    snmp:       SnmpConfig         gnmi:  GnmiConfig
    sink:       SinkConfig         (`ingest`)                         (pipeline.sink)
    dashboard:  DashboardConfig    (`dashboard`, `demo`)              (dashboards.server)
    service:    ServiceConfig      (every long-running command)       (fabricscope.source_service)
    jobs:       scheduler job name → hosts or prefixes, or
    jobs_file:  a YAML/JSON file of that mapping, re-read on change   (collectors.job_names)

Precedence: a flag given on the command line wins over the file, which wins over the dataclass defaults
(the ones --help shows). A live source's own section may also hold the service's keys and `topology`
(deploy/fabricscope.yaml does); they win over the `service:` section. Every section present in the file
is checked, whichever command runs: an unknown section or key, or a value of the wrong type, is an
InputError naming `file:line`; the sections the command uses are then validated (`validate(origin)`).
A section's class is imported only when the file or the command uses it, so short commands stay quick.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline.errors import InputError
from pipeline.settings import Origin
from pipeline.yamlfile import LineDict, LineList, line_of, load_yaml

if TYPE_CHECKING:
    from collectors.capture_source import CaptureConfig
    from collectors.gnmi import GnmiConfig
    from collectors.job_names import JobNameSource
    from collectors.recorder import RecorderConfig
    from collectors.second_opinion import SecondOpinionConfig
    from collectors.sflow_source import SflowConfig
    from collectors.snmp import SnmpConfig
    from dashboards.server import DashboardConfig
    from fabricscope.source_service import ServiceConfig
    from pipeline.alerts.config import AlertsConfig
    from pipeline.detect.config import DetectorConfig
    from pipeline.sink import SinkConfig

# section → its config dataclass, imported when used
SECTIONS: dict[str, str] = {
    "capture": "collectors.capture_source:CaptureConfig",
    "sflow": "collectors.sflow_source:SflowConfig",
    "snmp": "collectors.snmp:SnmpConfig",
    "gnmi": "collectors.gnmi:GnmiConfig",
    "sink": "pipeline.sink:SinkConfig",
    "dashboard": "dashboards.server:DashboardConfig",
    "service": "fabricscope.source_service:ServiceConfig",
    "recorder": "collectors.recorder:RecorderConfig",
    "second_opinion": "collectors.second_opinion:SecondOpinionConfig",
}
KAFKA, DETECTORS, SERVICE, ALERTS = "kafka", "detectors", "service", "alerts"
JOBS, JOBS_FILE = "jobs", "jobs_file"
KNOWN_SECTIONS = (KAFKA, DETECTORS, ALERTS, *SECTIONS, JOBS, JOBS_FILE)
# the command → the section of its own component
COMMAND_SECTIONS = {"capture": "capture", "sflow": "sflow", "snmp": "snmp", "gnmi": "gnmi", "ingest": "sink",
                    "dashboard": "dashboard", "demo": "dashboard"}
FLAG_SECTIONS = {"capture": ("recorder", "second_opinion"), "demo": ("recorder", "second_opinion"),
                 "replay": ("second_opinion",)}  # other sections whose flags a command takes
SOURCE_COMMANDS = ("capture", "sflow", "snmp", "gnmi")  # their sections also take the service's keys, topology
SERVICE_COMMANDS = (*SOURCE_COMMANDS, "ingest", "dashboard")  # they take the service's flags
TOPOLOGY = "topology"
FLAG_NAMES = {"targets": "--target", "batch_wait_s": "--batch-wait"}  # the flags not named `--` + the key
SECURITY_PREFIXES = ("security_protocol", "sasl_", "ssl_")
TARGET_PORTS = {"snmp": 161, "gnmi": 6030}
# no setting is larger: socket buffers and ports are C ints, and Event.wait refuses timeouts past ~9.2e9 s
MAX_SETTING = 2**31 - 1


def section_class(name: str) -> type:
    module, _, attribute = SECTIONS[name].partition(":")
    cls: type = getattr(importlib.import_module(module), attribute)
    return cls


@dataclass(frozen=True, kw_only=True)
class Config:
    """Every setting of one run. A section the file did not give and the command does not use is its
    dataclass's defaults, built when first read."""

    file: str | None = None
    topology: str | None = None
    kafka: Mapping[str, Any] = field(default_factory=dict)
    sections: Mapping[str, Any] = field(default_factory=dict)
    jobs: JobNameSource | None = None  # the scheduler's names for DFI's jobs, when the file gives them

    def _section(self, name: str) -> Any:
        if name in self.sections:
            return self.sections[name]
        if name == DETECTORS:
            from pipeline.detect.config import DetectorConfig

            return DetectorConfig()
        if name == ALERTS:
            from pipeline.alerts.config import AlertsConfig

            return AlertsConfig()
        return section_class(name)()

    @property
    def capture(self) -> CaptureConfig:
        return typing.cast("CaptureConfig", self._section("capture"))

    @property
    def sflow(self) -> SflowConfig:
        return typing.cast("SflowConfig", self._section("sflow"))

    @property
    def snmp(self) -> SnmpConfig:
        return typing.cast("SnmpConfig", self._section("snmp"))

    @property
    def gnmi(self) -> GnmiConfig:
        return typing.cast("GnmiConfig", self._section("gnmi"))

    @property
    def sink(self) -> SinkConfig:
        return typing.cast("SinkConfig", self._section("sink"))

    @property
    def detectors(self) -> DetectorConfig:
        return typing.cast("DetectorConfig", self._section(DETECTORS))

    @property
    def alerts(self) -> AlertsConfig:
        return typing.cast("AlertsConfig", self._section(ALERTS))

    @property
    def dashboard(self) -> DashboardConfig:
        return typing.cast("DashboardConfig", self._section("dashboard"))

    @property
    def recorder(self) -> RecorderConfig:
        return typing.cast("RecorderConfig", self._section("recorder"))

    @property
    def second_opinion(self) -> SecondOpinionConfig:
        return typing.cast("SecondOpinionConfig", self._section("second_opinion"))

    @property
    def service(self) -> ServiceConfig:
        return typing.cast("ServiceConfig", self._section(SERVICE))

    def required_topology(self) -> str:
        if not self.topology:
            raise InputError("--topology", "required (on the command line, in --config or FABRICSCOPE_TOPOLOGY)")
        return self.topology


def load_config(args: argparse.Namespace) -> Config:
    """The Config of the command `args` runs: its `--config` file (read here, once), its flags on top."""
    command = getattr(args, "command_name", None)
    file = getattr(args, "config", None)
    document = load_yaml(file) if file else LineDict()
    source = str(file)
    for name in document:
        if name not in KNOWN_SECTIONS:
            raise InputError(source, f"{name}: unknown section (known: {', '.join(KNOWN_SECTIONS)})",
                             line=line_of(document, name))
    own = COMMAND_SECTIONS.get(command or "")
    serving = command in SERVICE_COMMANDS
    sections: dict[str, Any] = {}
    if DETECTORS in document:
        from pipeline.detect.config import detector_config

        sections[DETECTORS] = detector_config(document, source)
    if ALERTS in document:
        from pipeline.alerts.config import alerts_config

        sections[ALERTS] = alerts_config(document, source)
    carried: _Written = _Written()  # the service's keys and topology written in the source's own section
    flagged = (own, *FLAG_SECTIONS.get(command or "", ()))
    for name in SECTIONS:
        if name == SERVICE or (name not in flagged and name not in document):
            continue
        extra = (*_fields(section_class(SERVICE)), TOPOLOGY) if name in SOURCE_COMMANDS else ()
        written = _written(document, name, source, section_class(name), extra)
        extra_written = written.pop_extra(name)
        if name == own:
            carried = extra_written
        sections[name] = _build(name, written, args if name in flagged else None, file, validate=name in flagged)
    if serving or SERVICE in document:
        written = _written(document, SERVICE, source, section_class(SERVICE), ())
        written.merge(carried.without(TOPOLOGY))
        service = _build(SERVICE, written, args if serving else None, file, validate=False)
        if service.metrics is None and getattr(args, "metrics_port", None):
            from fabricscope.source_service import default_metrics

            service = dataclasses.replace(service, metrics=default_metrics(args.metrics_port))
        if serving:
            service.validate(written.origin(SERVICE, file, _given(args, service)))
        sections[SERVICE] = service
    topology = getattr(args, TOPOLOGY, None)
    if not topology and TOPOLOGY in carried.values:
        topology = _typed(carried.values[TOPOLOGY], str, source, carried.lines[TOPOLOGY], f"{own}.{TOPOLOGY}")
    topology = topology or os.environ.get("FABRICSCOPE_TOPOLOGY")
    if command in SOURCE_COMMANDS and not topology:
        raise InputError("--topology", f"required (on the command line or as {own}.topology in --config)")
    kafka = kafka_section(document, source) if file else {}
    jobs = None
    if JOBS in document or JOBS_FILE in document:
        from collectors.job_names import job_names_config

        jobs = job_names_config(document, source, JOBS, JOBS_FILE)
    return Config(file=file, topology=topology, kafka=kafka, sections=sections, jobs=jobs)


def kafka_section(document: LineDict, source: str) -> dict[str, Any]:
    """The `kafka:` section: kafka-python security options, passed through; anything else is refused."""
    section = document.get(KAFKA, {})
    if not isinstance(section, dict):
        raise InputError(source, "kafka: must be a mapping of security options", line=line_of(document, KAFKA))
    for key in section:
        if not str(key).startswith(SECURITY_PREFIXES):
            raise InputError(source, f"kafka.{key}: not a Kafka security option (security_protocol, sasl_*, ssl_*)",
                             line=line_of(section, key) if isinstance(section, LineDict) else None)
    return {str(key): value for key, value in section.items()}


# -- building one section --------------------------------------------------------------------------------
@dataclass
class _Written:
    """Settings of one section as written in the file (typed), with their lines; `extra` keys belong to
    another section (a source's section holding the service's keys)."""

    values: dict[str, Any] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    item_lines: dict[str, list[int]] = field(default_factory=dict)
    sections: dict[str, str] = field(default_factory=dict)
    extra: set[str] = field(default_factory=set)

    def pop_extra(self, section: str) -> _Written:
        popped = _Written(sections={key: section for key in self.extra})
        for key in self.extra:
            popped.values[key] = self.values.pop(key)
            popped.lines[key] = self.lines.pop(key)
        self.extra = set()
        return popped

    def without(self, key: str) -> _Written:
        return _Written({k: v for k, v in self.values.items() if k != key},
                        {k: v for k, v in self.lines.items() if k != key}, {}, dict(self.sections))

    def merge(self, other: _Written) -> None:
        self.values.update(other.values)
        self.lines.update(other.lines)
        self.sections.update(other.sections)

    def origin(self, section: str, file: str | None, flags: frozenset[str] = frozenset()) -> Origin:
        return Origin(section=section, file=file, lines=dict(self.lines), flags=flags, flag_names=FLAG_NAMES,
                      sections=dict(self.sections))


def _given(args: argparse.Namespace, config: Any) -> frozenset[str]:
    return frozenset(key for key in _fields(type(config)) if getattr(args, key, None) is not None)


def _fields(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _written(document: LineDict, name: str, source: str, cls: type, extra: tuple[str, ...]) -> _Written:
    section = document.get(name)
    written = _Written()
    if section is None:
        return written
    if not isinstance(section, LineDict):
        raise InputError(source, f"'{name}' must be a mapping of settings", line=line_of(document, name))
    hints = {**_fields(cls), **{key: _fields(section_class(SERVICE)).get(key, str) for key in extra}}
    for key, value in section.items():
        dest = str(key).replace("-", "_")
        line = line_of(section, key)
        if dest not in hints:
            raise InputError(source, f"{name}.{key}: unknown setting (known: {', '.join(hints)})", line=line)
        written.values[dest] = _typed(value, hints[dest], source, line, f"{name}.{key}")
        written.lines[dest] = line
        if isinstance(value, LineList):
            written.item_lines[dest] = value.item_lines
        if dest in extra:
            written.extra.add(dest)
    return written


def _build(name: str, written: _Written, args: argparse.Namespace | None, file: str | None, *, validate: bool) -> Any:
    """The section's dataclass: defaults, then what the file wrote, then (for the command's own section)
    the flags given; targets given as DEVICE=HOST[:PORT] or mappings become the source's target objects."""
    cls = section_class(name)
    values = dict(written.values)
    flags: set[str] = set()
    if args is not None:
        for key in _fields(cls):
            given = getattr(args, key, None)
            if given is not None:
                values[key] = tuple(given) if isinstance(given, list) else given
                flags.add(key)
    origin = written.origin(name, file, frozenset(flags))
    built = cls(**{key: value for key, value in values.items() if key != "targets"})
    if "targets" in values:
        built = dataclasses.replace(built, targets=_targets(name, built, values["targets"], origin,
                                                            written.item_lines.get("targets", [])))
    if validate:
        built.validate(origin)
    return built


def _typed(value: Any, hint: Any, source: str, line: int, name: str) -> Any:
    """A value from the file as the field's type (int, float, str, bool, optional, tuple); InputError naming
    file:line otherwise. Items of a tuple of objects (targets) pass as written and are built later."""
    kind = typing.get_origin(hint)
    if kind in (typing.Union, types.UnionType):
        options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if value is None:
            return None
        hint = options[0] if len(options) == 1 else Any
        kind = typing.get_origin(hint)
    if hint is Any:
        return value
    if kind is tuple:
        if not isinstance(value, list | tuple):
            raise InputError(source, f"{name}: expected a list, got {value!r}", line=line)
        item = typing.get_args(hint)[0]
        if item in (int, float, str):
            return tuple(_typed(part, item, source, line, name) for part in value)
        return tuple(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise InputError(source, f"{name}: expected true or false, got {value!r}", line=line)
        return value
    if hint in (int, float) and not isinstance(value, bool):
        number = _number(value, hint)
        if number is not None:
            if not -MAX_SETTING <= number <= MAX_SETTING:  # NaN fails this too
                raise InputError(source, f"{name}: expected a finite number in -{MAX_SETTING:,}..{MAX_SETTING:,}, "
                                 f"got {value!r}", line=line)
            return number
    if hint is str and isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)
    what = getattr(hint, "__name__", str(hint))
    raise InputError(source, f"{name}: expected {what}, got {value!r}", line=line)


def _number(value: Any, hint: type) -> int | float | None:
    """`value` as an int or float setting (a number, or a string of one), None if it is not one."""
    if isinstance(value, int) or (hint is float and isinstance(value, float)):
        return typing.cast(int | float, hint(value))
    if isinstance(value, str):
        try:
            return typing.cast(int | float, hint(value))
        except ValueError:
            return None
    return None


def _targets(section: str, config: Any, items: tuple[Any, ...], origin: Origin, lines: list[int]) -> tuple[Any, ...]:
    """The switches to poll or subscribe to: DEVICE=HOST[:PORT] from a flag (IPv6 as [addr]:port), or a mapping
    of the target class's fields from the file; the section's community / credentials fill what neither gives."""
    from_flag = "targets" in origin.flags
    if section == "snmp":
        from collectors.snmp import SnmpTarget

        kind: Callable[..., Any] = SnmpTarget
        defaults: dict[str, Any] = {"community": config.community}
    else:
        from collectors.gnmi import GnmiTarget

        kind = GnmiTarget
        defaults = {"username": config.username, "password": config.password, "insecure": config.insecure,
                    "skip_verify": config.skip_verify, "path_root": config.root_cert}
    built = []
    for index, item in enumerate(items):
        def error(reason: str, index: int = index) -> InputError:
            if from_flag or origin.file is None:
                return InputError("--target", reason)
            line = lines[index] if index < len(lines) else origin.lines.get("targets")
            return InputError(origin.file, f"{section}.targets: {reason}", line=line)

        built.append(device_target(item, kind, defaults, error, default_port=TARGET_PORTS[section]))
    return tuple(built)


def device_target(item: Any, kind: Callable[..., Any], defaults: Mapping[str, Any],
                  error: Callable[[str], InputError], *, default_port: int) -> Any:
    """One target from DEVICE=HOST[:PORT] or a mapping with device and host; `defaults` fill the rest."""
    if isinstance(item, str):
        device, sep, address = item.partition("=")
        if address.startswith("[") or address.count(":") == 1:
            host, _, port = address.rpartition(":")
        else:  # a bare name, IPv4 or IPv6 address
            host, port = address, str(default_port)
        host = host.strip("[]")
        if not sep or not device or not host or not port.isdigit():
            raise error(f"'{item}' is not DEVICE=HOST[:PORT]")
        fields: Mapping[str, Any] = {"device": device, "host": host, "port": int(port)}
    elif isinstance(item, dict) and {"device", "host"} <= set(item):
        fields = {str(key): value for key, value in item.items()}
    else:
        raise error(f"a target is DEVICE=HOST[:PORT] or a mapping with device and host, not {item!r}")
    fields = _typed_target(fields, kind, error)
    try:
        return kind(**{**defaults, **fields})
    except (TypeError, ValueError) as exc:
        raise error(f"target {fields.get('device')}: {exc}") from exc


def _typed_target(fields: Mapping[str, Any], kind: Callable[..., Any],
                  error: Callable[[str], InputError]) -> dict[str, Any]:
    """A target's fields as its class types them, the port a port; a bad one is named with the target."""
    hints = typing.get_type_hints(kind)
    typed: dict[str, Any] = {}
    for key, value in fields.items():
        if key not in hints:
            typed[key] = value  # the class refuses it, by name
            continue
        try:
            typed[key] = _typed(value, hints[key], "", 0, key)
        except InputError as exc:
            raise error(f"target {fields.get('device')}: {exc.reason}") from None
    if not typed.get("device") or not typed.get("host"):
        raise error(f"a target's device and host must not be empty, not {dict(fields)!r}")
    if "port" in typed and not 0 < typed["port"] < 2**16:
        raise error(f"target {fields.get('device')}: port must be in 1..65535, not {typed['port']}")
    return typed
