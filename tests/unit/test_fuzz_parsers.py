"""Property-based fuzzing of every parser of input we do not control.

Each property: whatever the input, only the parser's own documented outcome comes out (a
value, a problem list, or its own error type), messages stay short enough for an Event, and
what the annotation parser accepts survives the trip into a Flavor and back. The inputs mix
near-valid sensor descriptions with hostile values: integers past float range and past
Python's 4300-digit limit, NaN and infinities, subnormal floats, control characters and lone
surrogates, non-ASCII digits, long text, and nesting far deeper than the recursion limit
(written as JSON text, or built as Python values without recursion).
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from fluidos_sensors.filters import FILTER_NAMES, FilterError, SensorFilter
from fluidos_sensors.flavor import (
    FlavorError,
    Price,
    ProviderConfig,
    SensorFlavor,
    build_flavor,
    is_sensor_flavor,
    sensor_from_flavor,
)
from fluidos_sensors.limits import TERM_MAX_LENGTH, TEXT_MAX_LENGTH
from fluidos_sensors.reading import Reading, ReadingError
from fluidos_sensors.sensor import (
    DeviceRef,
    SensorProblem,
    SensorSpec,
    parse_sensor_entry,
    parse_sensors_annotation,
)
from resource_manager.discovery import device_node, sensors_from_device_model
from resource_manager.reconcile import device_binding, device_outcome

EVENT_MESSAGE_MAX = 1000  # what the operator posts (the API server allows 1 KiB)
DEVICE = DeviceRef("fluidos", "stwin-01")
PROVIDER = ProviderConfig(
    node_id="provider-1",
    domain="fluidos.eu",
    ip="10.0.0.7",
    price=Price(amount="1", currency="EUR", period="hourly"),
)
EDGE = {
    "metadata": {"name": "edge-1", "uid": "u1", "labels": {"node-role.fluidos.eu/sensors": "true"}},
    "status": {"conditions": [{"type": "Ready", "status": "True"}]},
}


class Raw:
    """A JSON fragment written verbatim: what json.dumps cannot produce from Python values
    (5001-digit numbers, 100k-deep nesting) or refuses to (NaN where strict)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Raw({self.text[:60]!r}{'...' if len(self.text) > 60 else ''})"


def to_json(value: Any) -> str:
    """JSON text of ``value`` with Raw fragments inlined (values nest shallowly here)."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, list):
        return "[" + ", ".join(to_json(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {to_json(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


def nest(inner: Any, depth: int, kind: str) -> Any:
    """``inner`` wrapped ``depth`` times in arrays or objects, built without recursion."""
    for _ in range(depth):
        inner = [inner] if kind == "list" else {"a": inner}
    return inner


# ---------------------------------------------------------------------------------------
# Strategies

weird_strings = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "red\x1b[31m",
        "\ud800",
        "\u0661\u0662",  # Arabic-Indic digits
        "\U0001d7cf\U0001d7d0",  # mathematical bold digits
        "\u00bd",
        "NaN",
        "inf",
        "-Infinity",
        "1e999",
        "-1e-999",
        "1e-400",
        "0x10",
        "1_000",
        "15 ms",
        "1 kHz",
        "±0.5 °C",
        "80 µA",
        "2 W",
        "1e308 min",
        "1e-320 mHz",
        "9" * 400,
        "1" * 5001,
        "[" * 60,
        "\u202e",
    ]
)
long_strings = st.builds(
    lambda char, count: char * count, st.characters(), st.integers(TERM_MAX_LENGTH - 2, 5_000)
)
number_strings = st.from_regex(
    r"\A[+-]?(\d{1,6}(\.\d{0,4})?|\.\d{1,4})([eE][+-]?\d{1,4})? ?"
    r"(ms|s|us|µs|Hz|kHz|mHz|mW|W|mA|µA|%|°C|hPa)?\Z"
)
strings = st.one_of(st.text(max_size=20), weird_strings, long_strings, number_strings)
huge_ints = st.one_of(
    st.integers(min_value=-(10**400), max_value=10**400),
    st.sampled_from([2**63, -(2**63) - 1, 2**1024, 10**308 * 2]),
)
floats = st.one_of(
    st.floats(),  # includes NaN, infinities, subnormals
    st.sampled_from([5e-324, 1e-320, 1.7976931348623157e308, -0.0]),
)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), huge_ints, floats, strings)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
# What json.dumps cannot write: numbers past the 4300-digit limit, deep nesting, NaN tokens.
raw_fragments = st.one_of(
    st.integers(300, 6_000).map(lambda n: Raw("9" * n)),
    st.integers(300, 6_000).map(lambda n: Raw("-" + "1" * n + ".5e3")),
    st.sampled_from([Raw("NaN"), Raw("Infinity"), Raw("-Infinity"), Raw("1e999"), Raw("-0")]),
    st.builds(
        lambda depth, brackets: Raw(brackets[0] * depth + "1" + brackets[1] * depth),
        st.integers(20, 30_000),
        st.sampled_from([("[", "]"), ('{"a":', "}")]),
    ),
)
hostile = st.one_of(json_values, raw_fragments)
# Python values deeper than the recursion limit (for inputs that are objects, not text).
deep_values = st.builds(nest, scalars, st.integers(500, 5_000), st.sampled_from(["list", "dict"]))
hostile_objects = st.one_of(json_values, deep_values, huge_ints.map(lambda n: n * 10**4400))


def maybe(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a plausible value, sometimes a hostile one."""
    return st.one_of(good, good, hostile)


texts = maybe(st.text(min_size=1, max_size=12))
units = maybe(st.sampled_from(["°C", "%", "hPa", "mg", "Hz", "ms", "s", "kHz", "mW", "µA"]))
numbers = maybe(st.one_of(st.integers(0, 10_000), st.floats(0, 1e6), number_strings))
names = st.from_regex(r"\A[A-Za-z][A-Za-z0-9 ._-]{0,20}\Z")
positive = st.one_of(
    st.integers(1, 10_000),
    st.floats(1e-3, 1e6),
    st.from_regex(r"\A[1-9][0-9]{0,3}(\.[0-9]{1,3})?( ?(Hz|kHz))?\Z"),
)
ENTRY_PATHS = [
    "uid",
    "name",
    "model",
    "manufacturer",
    "market",
    "type",
    "type.sensorCategory",
    "type.sensorType",
    "samplingRate",
    "latency",
    "consumption",
    "accuracy",
    "properties",
    "properties.unit",
    "properties.unit.measurement",
    "properties.unit.latency",
    "access",
    "access.resource",
    "access.resource.node",
]


@st.composite
def sensor_entries(draw: st.DrawFn) -> dict[str, Any]:
    """A valid FLUIDOS sensor description, then 0 to 2 fields replaced by hostile values or
    removed: the parser's every branch, not only its first check, meets the hostile values."""
    count = draw(st.integers(1, 3))
    entry: dict[str, Any] = {
        "uid": draw(names),
        "name": draw(names),
        "model": draw(names),
        "manufacturer": draw(names),
        "market": draw(names),
        "type": {
            "sensorCategory": draw(names),
            "sensorType": draw(st.lists(names, min_size=count, max_size=count)),
        },
        "samplingRate": draw(positive),
        "latency": draw(st.one_of(positive, st.sampled_from(["0", 0, "0.1 s", "200us"]))),
        "consumption": draw(st.one_of(positive, st.sampled_from(["80 µA", "2 W"]))),
        "accuracy": draw(
            st.lists(st.one_of(positive, st.just("±0.5 °C")), min_size=count, max_size=count)
        ),
        "properties": {
            "unit": {
                "measurement": draw(
                    st.lists(
                        st.sampled_from(["°C", "%", "hPa", "mg"]), min_size=count, max_size=count
                    )
                ),
                "samplingRate": draw(st.sampled_from(["Hz", "kHz", "mHz"])),
                "latency": draw(st.sampled_from(["ms", "s", "us"])),
                "consumption": draw(st.sampled_from(["mW", "W", "µA", "mA"])),
            }
        },
        "access": {
            "type": "MQTT",
            "source": "mapper",
            "resource": {"topic": "t", "node": "edge-1"},
        },
    }
    mutations = draw(st.sampled_from([0, 0, 1, 2]))
    for path in draw(
        st.lists(st.sampled_from(ENTRY_PATHS), min_size=mutations, max_size=mutations)
    ):
        *parents, leaf = path.split(".")
        node: Any = entry
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            continue
        if draw(st.integers(0, 4)) == 0:
            node.pop(leaf, None)
        else:
            node[leaf] = draw(hostile)
    return entry


@st.composite
def sensor_annotations(draw: st.DrawFn) -> str:
    """A ``sensors`` annotation: JSON or base64, of entries, of junk, or junk itself."""
    entry = st.one_of(sensor_entries(), sensor_entries(), sensor_entries(), hostile)
    entries = st.lists(entry, min_size=1, max_size=4)
    body = draw(st.one_of(entries, entries, entries, st.just([]), hostile))
    text = to_json(body)
    form = draw(st.sampled_from(["json"] * 4 + ["base64"] * 4 + ["base64-wrapped", "garbage"]))
    if form == "json":
        return text
    if form == "garbage":
        return draw(st.one_of(st.text(), weird_strings, st.just(text[: len(text) // 2])))
    encoded = base64.b64encode(text.encode("utf-8", "surrogatepass")).decode()
    if form == "base64-wrapped":
        encoded = "\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
    return encoded


# ---------------------------------------------------------------------------------------
# Properties


def assert_sane(spec: SensorSpec) -> None:
    """What the parser accepted is bounded, finite and fit for a Flavor."""
    for text in (spec.name, spec.uid, spec.model, spec.manufacturer, spec.market):
        assert len(text) <= TEXT_MAX_LENGTH
    assert 0 < len(spec.key) <= 63
    assert all(0 < len(kind) <= TERM_MAX_LENGTH for kind in spec.types)
    for number in (spec.sampling_rate_hz, spec.latency_ms, spec.consumption):
        assert number is None or (math.isfinite(number) and number >= 0)
    assert all(math.isfinite(item.value) for item in spec.accuracy)


def assert_round_trips(spec: SensorSpec) -> None:
    body = json.loads(json.dumps(build_flavor(DEVICE, "edge-1", spec, PROVIDER, available=True)))
    view = sensor_from_flavor(body)
    assert view.sensor == spec.__class__(**{**spec.__dict__, "access": view.sensor.access})


def assert_problems_short(problems: list[SensorProblem] | list[str]) -> None:
    for problem in problems:
        assert len(str(problem)) <= EVENT_MESSAGE_MAX, str(problem)[:200]


@given(sensor_annotations())
def test_fuzz_annotation_gives_only_sensors_and_problems(raw: str) -> None:
    specs, problems = parse_sensors_annotation(raw, device=str(DEVICE))
    assert all(isinstance(problem, SensorProblem) for problem in problems)
    assert_problems_short(problems)
    for spec in specs:
        assert_sane(spec)
        assert_round_trips(spec)


@given(st.one_of(sensor_entries(), hostile_objects))
def test_fuzz_single_entry_is_a_spec_or_reasons(entry: Any) -> None:
    spec, errors = parse_sensor_entry(entry)
    assert (spec is None) == bool(errors)
    for error in errors:
        assert len(error.message) <= 400, error.message[:200]
    if spec is not None:
        assert_sane(spec)


filter_keys = st.one_of(
    st.tuples(
        st.sampled_from([*FILTER_NAMES, "colour", ""]),
        st.sampled_from(["", "[match]", "[exact]", "[range][min]", "[range][max]", "[x]"]),
    ).map(lambda pair: f"filter[{pair[0]}]{pair[1]}"),
    st.text(max_size=30).map(lambda text: "filter" + text),
    long_strings.map(lambda text: f"filter[{text}]"),
    st.text(max_size=10),
)
filter_values = st.one_of(strings, number_strings, weird_strings)


@given(st.lists(st.tuples(filter_keys, filter_values), max_size=5))
def test_fuzz_filter_query_gives_a_filter_or_filter_error(pairs: list[tuple[str, str]]) -> None:
    try:
        SensorFilter.from_query(pairs)
    except FilterError as err:
        assert len(str(err)) <= 400


option_names = st.sampled_from(
    [
        *FILTER_NAMES,
        *(f"{name}{suffix}" for name in FILTER_NAMES[6:] for suffix in ("_min", "_max")),
    ]
)


@given(st.dictionaries(option_names, st.one_of(scalars, st.lists(strings, max_size=2))))
def test_fuzz_filter_options_give_a_filter_or_filter_error(options: dict[str, Any]) -> None:
    try:
        SensorFilter.from_options(**options)
    except FilterError as err:
        assert len(str(err)) <= 400


reading_bodies = st.fixed_dictionaries(
    {},
    optional={
        "v": maybe(st.just(1)),
        "ns": texts,
        "device": texts,
        "sensor": texts,
        "quantity": texts,
        "unit": units,
        "values": maybe(st.dictionaries(st.sampled_from("xyz"), numbers, min_size=1)),
        "units": maybe(st.dictionaries(st.sampled_from("xyz"), units)),
        "node": texts,
        "seq": maybe(st.integers(0, 2**64)),
        "deviceTime": maybe(floats),
        "receivedAt": maybe(floats),
    },
)


@given(
    st.one_of(
        reading_bodies.map(lambda body: to_json(body).encode("utf-8", "surrogatepass")),
        reading_bodies.map(to_json),
        hostile.map(to_json),
        st.binary(max_size=64),
    )
)
def test_fuzz_reading_decode_gives_a_reading_or_reading_error(payload: bytes | str) -> None:
    try:
        reading = Reading.decode(payload)
    except ReadingError as err:
        assert len(str(err)) <= 400
    else:
        assert isinstance(reading, Reading)


# A valid reading with one to three keys set to an edge of what is valid, or past it.
edge_texts = st.one_of(
    st.text(min_size=1, max_size=12),
    st.sampled_from(["", "\ud800", "\x00", None, 1]),
    st.builds(
        lambda char, extra: char * (TEXT_MAX_LENGTH + extra),
        st.sampled_from(["d", "é", "€", "\U0001f600"]),
        st.integers(-1, 1),
    ),
)
edge_numbers = st.one_of(
    st.integers(-(2**64), 2**64),
    st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 10**308, 10**309, True]),
    floats,
    st.none(),
    st.text(max_size=3),
)
READING_EDGES: dict[str, st.SearchStrategy[Any]] = {
    "v": st.sampled_from([1, 0, 2, 1.0, True, "1", None]),
    "ns": edge_texts,
    "device": edge_texts,
    "sensor": edge_texts,
    "quantity": edge_texts,
    "unit": edge_texts,
    "node": edge_texts,
    "provider": edge_texts,
    "values": st.one_of(
        st.dictionaries(st.text(max_size=3), edge_numbers, min_size=1, max_size=4),
        st.sampled_from([{}, [], None]),
    ),
    "units": st.one_of(
        st.dictionaries(st.text(max_size=3), edge_texts, max_size=3), st.sampled_from([None, []])
    ),
    "seq": st.one_of(st.integers(-2, 2**64), st.sampled_from([1.0, True, None, "1"])),
    "deviceTime": st.one_of(floats, st.none(), st.integers(-(10**400), 10**400)),
    "receivedAt": st.one_of(floats, st.none(), st.integers(-(10**400), 10**400)),
    "later": json_values,
}
VALID_READING = {
    "v": 1,
    "ns": "default",
    "device": "stwin-1",
    "sensor": "acceleration",
    "quantity": "acceleration",
    "unit": "mg",
    "values": {"x": -3.0, "y": 12, "z": None},
    "node": "provider-1-edge",
    "seq": 41,
    "deviceTime": 12.34,
    "receivedAt": 1767225600.123456,
}


@st.composite
def edge_reading_bodies(draw: st.DrawFn) -> dict[str, Any]:
    body = dict(VALID_READING)
    for key in draw(st.lists(st.sampled_from(sorted(READING_EDGES)), min_size=1, max_size=3)):
        if draw(st.booleans()) and key in body:
            del body[key]
        else:
            body[key] = draw(READING_EDGES[key])
    return body


# Cheap (half a millisecond each), and an edge is one key among many: more examples.
@settings(max_examples=max(2_000, settings().max_examples))
@given(st.one_of(edge_reading_bodies(), reading_bodies).map(to_json))
def test_fuzz_fast_and_careful_reading_decoders_agree(payload: str) -> None:
    """What msgspec takes, the careful checks take too, as the same reading (the same types:
    1 == 1.0 would hide an int turned float)."""
    try:
        fast = Reading.decode_fast(payload.encode("utf-8", "surrogatepass"))
    except Exception:  # msgspec's errors: `decode` then asks the careful path
        return
    careful = Reading.decode_carefully(payload)
    assert fast == careful
    for field in fast.__struct_fields__:
        assert repr(getattr(fast, field)) == repr(getattr(careful, field)), field


FLAVOR_PATHS = [
    "metadata.name",
    "metadata.namespace",
    "metadata.annotations",
    "metadata.labels",
    "spec.providerID",
    "spec.price",
    "spec.availability",
    "spec.flavorType",
    "spec.flavorType.typeIdentifier",
    "spec.flavorType.typeData",
    "spec.flavorType.typeData.observed",
    "spec.flavorType.typeData.characteristics",
    *(
        f"spec.flavorType.typeData.characteristics.{key}"
        for key in ("name", "uid", "model", "node", "type", "latency", "accuracy", "properties")
    ),
]


def _good_spec() -> SensorSpec:
    spec = parse_sensor_entry(
        {
            "name": "HTS221",
            "model": "hts221",
            "manufacturer": "STMicroelectronics",
            "type": {"sensorCategory": "Environmental", "sensorType": ["Temperature", "Humidity"]},
            "accuracy": ["0.5", "3.5"],
            "latency": "15",
            "properties": {"unit": {"measurement": ["°C", "%"]}},
        }
    )[0]
    assert spec is not None
    return spec


GOOD_SPEC = _good_spec()


@st.composite
def flavor_bodies(draw: st.DrawFn) -> Any:
    """A good Flavor (Kubernetes or REAR form) with hostile values at a few paths, or junk."""
    if draw(st.integers(0, 9)) == 0:
        return draw(hostile_objects)
    body: Any = build_flavor(DEVICE, "edge-1", GOOD_SPEC, PROVIDER, available=True)
    for path in draw(st.lists(st.sampled_from(FLAVOR_PATHS), min_size=1, max_size=3)):
        *parents, leaf = path.split(".")
        node = body
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node[leaf] = draw(hostile_objects)
    if draw(st.booleans()):
        type_data = body["spec"].get("flavorType")
        body = {
            "flavorID": body["metadata"].get("name"),
            "providerID": body["spec"].get("providerID"),
            "type": {
                "name": draw(st.sampled_from(["Sensor", "sensor", "K8Slice"])),
                "data": type_data.get("typeData") if isinstance(type_data, dict) else type_data,
            },
            "price": body["spec"].get("price"),
            "availability": body["spec"].get("availability"),
        }
    return body


@given(flavor_bodies())
def test_fuzz_flavor_read_back_gives_a_view_or_flavor_error(body: Any) -> None:
    assert isinstance(is_sensor_flavor(body), bool)
    try:
        view = sensor_from_flavor(body)
    except FlavorError as err:
        assert len(str(err)) <= 600
    else:
        assert isinstance(view, SensorFlavor)
        assert_sane(view.sensor)


@st.composite
def devices(draw: st.DrawFn) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "board", "namespace": "ns", "uid": "dev-uid"}
    if draw(st.booleans()):
        metadata["annotations"] = {"sensors": draw(sensor_annotations())}
    if draw(st.booleans()):
        metadata["labels"] = draw(
            st.dictionaries(st.sampled_from(["manufacturer", "model", "category"]), strings)
        )
    expression = st.fixed_dictionaries(
        {},
        optional={
            "key": maybe(st.sampled_from(["", "kubernetes.io/hostname", "metadata.name"])),
            "operator": maybe(st.just("In")),
            "values": maybe(st.lists(st.sampled_from(["edge-1", "edge-2"]), max_size=2)),
        },
    )
    term = st.fixed_dictionaries(
        {},
        optional={
            "matchExpressions": maybe(st.lists(maybe(expression), max_size=2)),
            "matchFields": maybe(st.lists(maybe(expression), max_size=2)),
        },
    )
    visitor = st.fixed_dictionaries(
        {},
        optional={
            "name": maybe(st.just("temperature")),
            "propertyName": maybe(st.just("temperature")),
            "collectCycle": maybe(st.integers(1, 10**10)),
        },
    )
    spec = draw(
        maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "nodeName": maybe(st.sampled_from(["edge-1", "edge-2", ""])),
                    "nodeSelector": maybe(
                        st.fixed_dictionaries(
                            {}, optional={"nodeSelectorTerms": maybe(st.lists(maybe(term)))}
                        )
                    ),
                    "properties": maybe(st.lists(maybe(visitor), max_size=2)),
                    "propertyVisitors": maybe(st.lists(maybe(visitor), max_size=2)),
                },
            )
        )
    )
    api_version = draw(
        st.sampled_from(["devices.kubeedge.io/v1beta1", "devices.kubeedge.io/v1alpha2"])
    )
    return {"apiVersion": api_version, "kind": "Device", "metadata": metadata, "spec": spec}


model_properties = st.fixed_dictionaries(
    {},
    optional={
        "name": maybe(st.sampled_from(["temperature", "humidity", "t" * 64])),
        "type": maybe(
            st.one_of(
                st.sampled_from(["FLOAT", "INT", "STRING"]),
                st.dictionaries(st.sampled_from(["float", "int"]), json_values, max_size=1),
            )
        ),
        "unit": units,
        "accessMode": maybe(st.sampled_from(["ReadOnly", "ReadWrite"])),
    },
)
device_models = st.one_of(
    st.none(),
    st.builds(
        lambda props: {"metadata": {"name": "m", "namespace": "ns"}, "spec": {"properties": props}},
        maybe(st.lists(maybe(model_properties), max_size=4)),
    ),
)


@given(devices(), device_models)
def test_fuzz_device_decisions_never_raise(device: dict[str, Any], model: Any) -> None:
    node = device_node(device)
    assert node is None or isinstance(node, str)
    binding = device_binding(device)
    assert binding is None or isinstance(binding, str)
    outcome = device_outcome(device, {"edge-1": EDGE}, model, PROVIDER)
    assert_problems_short(outcome.problems)
    assert outcome.unbound is None or len(outcome.unbound.message) <= EVENT_MESSAGE_MAX
    for body in outcome.desired.values():
        view = sensor_from_flavor(json.loads(json.dumps(body)))
        assert_sane(view.sensor)
    if isinstance(model, dict):
        specs, problems = sensors_from_device_model(device, model)
        assert_problems_short(problems)
        for spec in specs:
            assert_sane(spec)
            assert_round_trips(spec)
