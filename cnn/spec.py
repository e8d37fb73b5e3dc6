"""A model as data: a small versioned JSON layer list, validated and measured before Keras ever sees it.

A spec is `{"version": 1, "layers": [{"type": "conv2d", "filters": 32, "kernel": 4, ...}, ...]}`:
Conv2D, max/average pooling, dropout, batch normalization, ReLU, Flatten, global
average pooling and Dense layers, on 32x32 RGB images; the softmax output over
the 10 classes is always appended (it is not part of the list). No code and no
Lambda: only the layer types below, each with known settings in known ranges.

Everything a user can get wrong (text too large or too deeply nested, unknown
types or settings, a feature map shrinking to nothing, a Dense before Flatten,
too many parameters) becomes one `SpecError` naming the layer and the fix,
found by the shape inference here, with the same output-size formula as the
Learn pages (`cnn.ops`) and the same parameter formulas as Inspect
(`cnn.explain`). Only a valid spec reaches `build_model`, the one place that
imports Keras. The report's six models are specs too (`REPORT_SPECS`): the zoo
builds them from here (`cnn.zoo`). No Streamlit, no TensorFlow at import.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cnn.errors import UserError
from cnn.explain import NO_WEIGHTS_FORMULA, batchnorm_parameter_formula, conv_parameter_formula, dense_parameter_formula
from cnn.ops import ConvSpec, output_size, output_size_formula, padding_amounts

SPEC_VERSION = 1
INPUT_SHAPE = (32, 32, 3)
NUM_CLASSES = 10
INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"

# Guard rails. The JSON text limits hold for every spec; the classroom limits are defaults that
# the teacher raises with the environment variables of `classroom_limits`.
MAX_SPEC_BYTES = 64 * 1024  # a 60-layer spec is about 6 KB
MAX_JSON_DEPTH = 3  # spec object > layers list > layer object; no setting is a list or object
MAX_LAYERS = 60
MAX_PARAMETERS = 2_000_000  # the report's largest model has 815,466
MAX_MULTIPLY_ADDS = 400_000_000  # per image; the report's models 3-6 need about 39 million
NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,39}")  # a layer's optional name
MODEL_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")  # the same rule as cnn.jobs.output_path
RESERVED_SUFFIX = "_classroom"  # the Train page's scratch outputs of zoo models

# Seconds per training image on this project's machine (AMD EPYC, 2 cores, bf16, no GPU): a fixed
# cost per image plus a cost per multiply-add of the forward pass (training is about 3x that).
# Fitted to the wall times in the report models' sidecars by `python benchmarks/build_estimate.py`.
SECONDS_PER_IMAGE = 2.27e-4  # data pipeline, optimizer step and Python overhead, per image
SECONDS_PER_MULTIPLY_ADD = 6.35e-12  # per forward multiply-add of one training image
VALIDATION_SHARE = 1 / 3  # a validation image costs a forward pass only
BATCHNORM_SLOWDOWN = 2.4  # memory-bound on a CPU: model 5's measured time over the estimate without it (2-core Xeon)


class SpecError(UserError):
    """A model spec that cannot be built: the message names the layer and the fix."""


@dataclass(frozen=True)
class Limits:
    """The classroom's guard rails for models built from specs."""

    max_parameters: int = MAX_PARAMETERS
    max_multiply_adds: int = MAX_MULTIPLY_ADDS  # per image, forward pass
    max_layers: int = MAX_LAYERS


LIMIT_VARIABLES = {"max_parameters": "CNN_MAX_PARAMETERS", "max_multiply_adds": "CNN_MAX_MULTIPLY_ADDS"}


def classroom_limits(environ=None) -> Limits:
    """The limits in force: the defaults, raised (or lowered) by the teacher's environment variables.

    CNN_MAX_PARAMETERS and CNN_MAX_MULTIPLY_ADDS, each a whole number >= 1 (epochs and images are
    the classroom's limits, cnn.classroom.limits, the same for every page).
    """
    environ = os.environ if environ is None else environ
    values = {}
    for field_name, variable in LIMIT_VARIABLES.items():
        text = environ.get(variable)
        if text is None:
            continue
        try:
            values[field_name] = int(text.replace("_", ""))
        except ValueError:
            raise UserError(f"{variable} must be a whole number, not {text[:40]!r}.") from None
        if values[field_name] < 1:
            raise UserError(f"{variable} must be at least 1, not {values[field_name]}.")
    return Limits(**values)


# ---------------------------------------------------------------- the layer types and their settings


@dataclass(frozen=True)
class Number:
    """A number setting in [low, high], a whole one unless `whole` is False; `default` None: required."""

    low: float
    high: float
    default: float | None = None
    whole: bool = True

    def check(self, value) -> int | float:
        kinds = int if self.whole else (int, float)
        if (
            isinstance(value, bool)
            or not isinstance(value, kinds)
            or not math.isfinite(value)
            or not self.low <= value <= self.high
        ):
            kind = "a whole number" if self.whole else "a number"
            raise ValueError(f"must be {kind} {self.low:g}-{self.high:g}")
        return value if self.whole else float(value)


@dataclass(frozen=True)
class Choice:
    """One of a few words."""

    options: tuple[str, ...]
    default: str | None = None

    def check(self, value) -> str:
        if value not in self.options or not isinstance(value, str):
            raise ValueError(f"must be one of {', '.join(self.options)}")
        return value


@dataclass(frozen=True)
class Flag:
    """true or false."""

    default: bool | None = None

    def check(self, value) -> bool:
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value


ACTIVATIONS = ("relu", "linear", "gelu", "elu", "tanh", "sigmoid")  # "linear": no activation
LAYER_TYPES = {
    "conv2d": {
        "filters": Number(1, 512),
        "kernel": Number(1, 11),
        "stride": Number(1, 4, 1),
        "padding": Choice(("valid", "same"), "valid"),
        "activation": Choice(ACTIVATIONS, "relu"),
        "use_bias": Flag(True),
    },
    "maxpool": {"size": Number(2, 8, 2)},
    "avgpool": {"size": Number(2, 8, 2)},
    "dropout": {"rate": Number(0.0, 0.9, whole=False)},
    "batchnorm": {},
    "relu": {},
    "flatten": {},
    "global_avgpool": {},
    "dense": {"units": Number(1, 4096), "activation": Choice(ACTIVATIONS, "relu"), "use_bias": Flag(True)},
}
LAYER_LABELS = {
    "conv2d": "Conv2D (convolution)",
    "maxpool": "MaxPooling2D",
    "avgpool": "AveragePooling2D",
    "dropout": "Dropout",
    "batchnorm": "BatchNormalization",
    "relu": "ReLU (activation layer)",
    "flatten": "Flatten",
    "global_avgpool": "GlobalAveragePooling2D",
    "dense": "Dense (fully connected)",
}
# A new layer of each type, as the Build page adds it.
NEW_LAYERS = {
    "conv2d": {
        "type": "conv2d",
        "filters": 32,
        "kernel": 3,
        "stride": 1,
        "padding": "same",
        "activation": "relu",
        "use_bias": True,
    },
    "maxpool": {"type": "maxpool", "size": 2},
    "avgpool": {"type": "avgpool", "size": 2},
    "dropout": {"type": "dropout", "rate": 0.25},
    "batchnorm": {"type": "batchnorm"},
    "relu": {"type": "relu"},
    "flatten": {"type": "flatten"},
    "global_avgpool": {"type": "global_avgpool"},
    "dense": {"type": "dense", "units": 128, "activation": "relu", "use_bias": True},
}
FLATTENING = ("flatten", "global_avgpool")
POOLING = ("maxpool", "avgpool")
# TrainConfig settings of a built model (cnn.training.TrainConfig.for_model with a spec).
BUILD_RECIPE = {"epochs": 5, "batch_size": 64, "learning_rate": 1e-3}


def describe_layer(layer: dict) -> str:
    """A short label of a layer, e.g. "conv2d 32 filters 4x4", "maxpool 2x2", "dense 256"."""
    kind = layer.get("type")
    if kind == "conv2d" and {"filters", "kernel"} <= layer.keys():
        stride = layer.get("stride", 1)
        return f"conv2d {layer['filters']} filters {layer['kernel']}x{layer['kernel']}" + (
            f" stride {stride}" if stride != 1 else ""
        )
    if kind in POOLING and "size" in layer:
        return f"{kind} {layer['size']}x{layer['size']}"
    if kind == "dropout" and "rate" in layer:
        return f"dropout {layer['rate']:g}"
    if kind == "dense" and "units" in layer:
        return f"dense {layer['units']}"
    return kind if kind in LAYER_TYPES else "layer"


# ---------------------------------------------------------------- the table of a spec


@dataclass(frozen=True)
class LayerRow:
    """One layer of a spec with what it does to the data, as the Build page lists it."""

    index: int  # 1-based position in the list; the fixed output is len(layers) + 1
    name: str  # the Keras layer name
    layer: str  # describe_layer
    output_shape: tuple[int, ...]  # without the batch dimension
    parameters: int
    parameter_formula: str  # as Inspect writes it
    shape_formula: str  # how the output shape comes about
    multiply_adds: int  # per image, forward pass


@dataclass(frozen=True)
class Analysis:
    """A spec's layer table, as far as it is valid, and the first problem (None when it builds)."""

    rows: tuple[LayerRow, ...]
    error: str | None
    spec: dict | None  # the canonical spec (every setting filled in) when valid

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def parameters(self) -> int:
        return sum(row.parameters for row in self.rows)

    @property
    def multiply_adds(self) -> int:
        return sum(row.multiply_adds for row in self.rows)


class _Problem(Exception):
    """Internal: the first problem found; analyze() turns it into Analysis.error."""


def analyze(spec, limits: Limits | None = None) -> Analysis:
    """Check `spec` (a parsed JSON object) and infer every layer's output shape and parameter count.

    Never raises for a bad spec: the first problem is `Analysis.error`, the rows
    cover the layers before it. Nothing here imports Keras.
    """
    limits = limits or classroom_limits()
    rows: list[LayerRow] = []
    try:
        layers = _top_level(spec, limits)
        canonical = [_walk(index, raw, rows, limits) for index, raw in enumerate(layers, start=1)]
        _output_row(len(layers) + 1, rows, limits)
        if not any(layer["type"] == "conv2d" for layer in canonical):
            raise _Problem("The stack has no conv2d layer: a CNN needs at least one; add a conv2d layer first.")
    except _Problem as problem:
        return Analysis(tuple(rows), str(problem), None)
    return Analysis(tuple(rows), None, {"version": SPEC_VERSION, "layers": canonical})


def check_spec(spec, limits: Limits | None = None) -> dict:
    """The canonical form of a valid spec (every setting filled in); SpecError with the first problem."""
    analysis = analyze(spec, limits)
    if not analysis.ok:
        raise SpecError(analysis.error)
    return analysis.spec


def _top_level(spec, limits: Limits) -> list:
    if not isinstance(spec, dict):
        raise _Problem('A spec is a JSON object like {"version": 1, "layers": [...]}.')
    unknown = sorted(str(key)[:40] for key in spec if key not in ("version", "layers"))
    if unknown:
        raise _Problem(f'Unknown top-level key {unknown[0]!r}: a spec has only "version" and "layers".')
    version = spec.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version != SPEC_VERSION:
        raise _Problem(
            f"Spec version {_shown(version)!r} is not supported: this dashboard reads version {SPEC_VERSION}."
        )
    layers = spec.get("layers")
    if not isinstance(layers, list):
        raise _Problem('"layers" must be a list of layer objects.')
    if len(layers) > limits.max_layers:  # checked before looking at any layer
        raise _Problem(f"The stack has {len(layers):,} layers; at most {limits.max_layers} are allowed.")
    return layers


def _layer_label(index: int, layer: dict) -> str:
    return f"Layer {index} ({describe_layer(layer)})"


def _canonical_layer(index: int, raw, used_names: dict[str, int]) -> dict:
    """The layer with every setting checked and defaults filled in."""
    if not isinstance(raw, dict):
        raise _Problem(f'Layer {index}: must be an object like {{"type": "conv2d", ...}}.')
    kind = raw.get("type")
    if not isinstance(kind, str) or kind not in LAYER_TYPES:
        shown = repr(kind[:30]) if isinstance(kind, str) else "missing"
        raise _Problem(f"Layer {index}: unknown layer type {shown}; use one of {', '.join(LAYER_TYPES)}.")
    fields = LAYER_TYPES[kind]
    label = f"Layer {index} ({kind})"  # the settings are not checked yet: they stay out of the label
    for key in raw:
        if key not in fields and key not in ("type", "name"):
            allowed = ", ".join(fields) or "no settings"
            raise _Problem(
                f"{label}: unknown setting {str(key)[:30]!r}; a {kind} layer takes {allowed} (and an optional name)."
            )
    layer = {"type": kind}
    for key, rule in fields.items():
        if key not in raw:
            if rule.default is None:
                raise _Problem(f"{label}: the setting {key!r} is missing.")
            layer[key] = rule.default
            continue
        try:
            layer[key] = rule.check(raw[key])
        except ValueError as problem:
            raise _Problem(f"{label}: {key} {problem}, not {_shown(raw[key])}.") from None
    if "name" in raw:
        name = raw["name"]
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            raise _Problem(
                f"{label}: a layer name starts with a letter and has only letters, digits and _ "
                "(at most 40); or leave it out."
            )
        layer["name"] = name
    name = layer_name(index, layer)
    if name in used_names or name in (INPUT_NAME, OUTPUT_NAME):
        where = f"layer {used_names[name]}" if name in used_names else "the model's input or output"
        raise _Problem(
            f"{label}: the name {name!r} is already used by {where}; names must be unique (or leave the name out)."
        )
    used_names[name] = index
    return layer


def _shown(value) -> str:
    """A user's value as a message shows it: scalars cut to 30 characters, containers by their kind only
    (printing a deeply nested list would recurse)."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return str(value)[:30]
    return f"a {type(value).__name__}"


def layer_name(index: int, layer: dict) -> str:
    """The Keras name of the layer at 1-based `index`: its own name, else `TYPE_INDEX`."""
    return layer.get("name") or f"{layer['type']}_{index}"


def _walk(index: int, raw, rows: list[LayerRow], limits: Limits) -> dict:
    """Check one layer, append its row (shape, parameters) and check the running limits."""
    used_names = {row.name: row.index for row in rows}
    layer = _canonical_layer(index, raw, used_names)
    shape = rows[-1].output_shape if rows else INPUT_SHAPE
    label = _layer_label(index, layer)
    output_shape, parameters, formula, shape_formula, multiply_adds = _SHAPERS[layer["type"]](layer, shape, label)
    rows.append(
        LayerRow(
            index,
            layer_name(index, layer),
            describe_layer(layer),
            output_shape,
            parameters,
            formula,
            shape_formula,
            multiply_adds,
        )
    )
    _check_running_totals(rows, label, limits)
    return layer


@dataclass(frozen=True)
class _RunningTotal:
    """A total over the layers that a classroom limit caps, and what its message says."""

    row_field: str  # the LayerRow field summed over the layers
    limit_field: str  # the Limits field it may not exceed (a teacher's variable in LIMIT_VARIABLES)
    reached: str  # "brings ..." with {total}
    advice: str  # how to bring it down


_RUNNING_TOTALS = (
    _RunningTotal(
        "parameters",
        "max_parameters",
        "the parameter count to {total:,}",
        "use fewer filters or units, or add pooling (or GlobalAveragePooling) before Flatten",
    ),
    _RunningTotal(
        "multiply_adds",
        "max_multiply_adds",
        "the work per image to {total:,} multiply-adds",
        "use fewer filters, a stride of 2, or pool earlier",
    ),
)


def _check_running_totals(rows: list[LayerRow], label: str, limits: Limits) -> None:
    """A _Problem at the layer (`label`) that takes a running total over its classroom limit."""
    for running in _RUNNING_TOTALS:
        total = sum(getattr(row, running.row_field) for row in rows)
        limit = getattr(limits, running.limit_field)
        if total > limit:
            raise _Problem(
                f"{label}: brings {running.reached.format(total=total)}, over the classroom limit of {limit:,}; "
                f"{running.advice}. The teacher can raise the limit ({LIMIT_VARIABLES[running.limit_field]})."
            )


def _output_row(index: int, rows: list[LayerRow], limits: Limits) -> None:
    """The fixed softmax output over the 10 classes."""
    label = f"The output layer (dense {NUM_CLASSES}, softmax)"
    shape = rows[-1].output_shape if rows else INPUT_SHAPE
    if len(shape) != 1:
        raise _Problem(f"{label} needs a flat input; end the stack with Flatten or GlobalAveragePooling.")
    parameters = (shape[0] + 1) * NUM_CLASSES
    rows.append(
        LayerRow(
            index,
            OUTPUT_NAME,
            f"dense {NUM_CLASSES} + softmax (output)",
            (NUM_CLASSES,),
            parameters,
            dense_parameter_formula(shape[0], NUM_CLASSES, True),
            "one probability per class",
            shape[0] * NUM_CLASSES,
        )
    )
    _check_running_totals(rows, label, limits)


# ---------------------------------------------------------------- shape inference, one function per type


def _needs_map(shape, label: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise _Problem(
            f"{label}: needs a 2-D feature map but gets a flat vector of {shape[0]:,} values; "
            "move it before the Flatten (or GlobalAveragePooling)."
        )
    return shape


def _conv_shape(layer, shape, label):
    height, width, channels = _needs_map(shape, label)
    kernel, stride, filters = layer["kernel"], layer["stride"], layer["filters"]
    if layer["padding"] == "valid" and kernel > min(height, width):
        raise _Problem(
            f"{label}: the {kernel}x{kernel} kernel does not fit in the {height}x{width} feature map; "
            "use a smaller kernel, padding='same', or remove a pooling layer before it."
        )
    settings = ConvSpec(stride=stride, padding=layer["padding"])
    sides = [(side, padding_amounts(side, kernel, settings)) for side in (height, width)]
    out_height, out_width = (output_size(side, kernel, padding, stride) for side, padding in sides)
    formulas = [output_size_formula(side, kernel, padding, stride) for side, padding in sides]
    parameters = (kernel * kernel * channels + (1 if layer["use_bias"] else 0)) * filters
    return (
        (out_height, out_width, filters),
        parameters,
        conv_parameter_formula(kernel, kernel, channels, filters, layer["use_bias"]),
        _shape_text(formulas, filters, "filters"),
        out_height * out_width * kernel * kernel * channels * filters,
    )


def _pool_shape(layer, shape, label):
    height, width, channels = _needs_map(shape, label)
    size = layer["size"]
    if size > min(height, width):
        raise _Problem(
            f"{label}: the feature map would shrink to 0x0 (it is {height}x{width}); remove this pooling "
            "layer or use padding='same' in the convolutions before it."
        )
    formulas = [output_size_formula(side, size, 0, size) for side in (height, width)]
    out_height, out_width = (output_size(side, size, 0, size) for side in (height, width))
    return ((out_height, out_width, channels), 0, NO_WEIGHTS_FORMULA, _shape_text(formulas, channels, "channels"), 0)


def _shape_text(formulas: list[str], depth: int, depth_name: str) -> str:
    """'rows and columns: FORMULA; 32 filters' (one formula when both sides agree)."""
    if formulas[0] == formulas[1]:
        return f"rows and columns: {formulas[0]}; {depth} {depth_name}"
    return f"rows: {formulas[0]}; columns: {formulas[1]}; {depth} {depth_name}"


def _same_shape(layer, shape, label):
    return shape, 0, NO_WEIGHTS_FORMULA, "same shape as its input", 0


def _batchnorm_shape(layer, shape, label):
    channels = shape[-1]
    return shape, 4 * channels, batchnorm_parameter_formula(channels), "same shape as its input", 0


def _flatten_shape(layer, shape, label):
    if len(shape) != 3:
        raise _Problem(f"{label}: the input is already flat ({shape[0]:,} values); remove this layer.")
    height, width, channels = shape
    if layer["type"] == "flatten":
        return (
            (height * width * channels,),
            0,
            NO_WEIGHTS_FORMULA,
            f"{height}·{width}·{channels} = {height * width * channels:,} values in a row",
            0,
        )
    return (channels,), 0, NO_WEIGHTS_FORMULA, f"one mean per channel of the {height}x{width} maps: {channels}", 0


def _dense_shape(layer, shape, label):
    if len(shape) != 1:
        raise _Problem(f"{label}: needs a flat input; add Flatten or GlobalAveragePooling before it.")
    units_in, units = shape[0], layer["units"]
    parameters = (units_in + (1 if layer["use_bias"] else 0)) * units
    return (
        (units,),
        parameters,
        dense_parameter_formula(units_in, units, layer["use_bias"]),
        f"{units} units",
        units_in * units,
    )


_SHAPERS = {
    "conv2d": _conv_shape,
    "maxpool": _pool_shape,
    "avgpool": _pool_shape,
    "dropout": _same_shape,
    "relu": _same_shape,
    "batchnorm": _batchnorm_shape,
    "flatten": _flatten_shape,
    "global_avgpool": _flatten_shape,
    "dense": _dense_shape,
}


# ---------------------------------------------------------------- JSON text in and out


def parse_spec_text(text: str | bytes, limits: Limits | None = None) -> dict:
    """A canonical spec from JSON text (an uploaded file): size and depth are checked before parsing.

    Raises:
        SpecError: one plain line saying what is wrong.
    """
    size = len(text)  # characters or bytes: both at most the UTF-8 size, so this bounds the work
    if size > MAX_SPEC_BYTES:
        raise SpecError(f"The spec is {size:,} bytes; at most {MAX_SPEC_BYTES:,} are allowed.")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise SpecError("The spec is not UTF-8 text: export it from the Build page, or write it as JSON.") from None
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise SpecError(f"The spec's JSON is nested {depth:,} levels deep; a spec needs at most {MAX_JSON_DEPTH}.")
    try:
        spec = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        where = f"line {error.lineno}, column {error.colno}"
        raise SpecError(f"The spec is not valid JSON ({where}: {error.msg}).") from None
    except ValueError as error:  # NaN/Infinity, or an integer of thousands of digits
        raise SpecError(f"The spec is not valid JSON ({str(error)[:80]}).") from None
    return check_spec(spec, limits)


def read_spec_file(path: str | os.PathLike, limits: Limits | None = None) -> dict:
    """A canonical spec from a JSON file (its size is checked before it is read)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise SpecError(f"The spec {path.name} is {size:,} bytes; at most {MAX_SPEC_BYTES:,} are allowed.")
        with path.open("rb") as handle:
            text = handle.read(MAX_SPEC_BYTES + 1)  # a file growing meanwhile is still cut at the limit
    except OSError as error:
        raise SpecError(f"The spec file {path} cannot be read ({error.strerror or type(error).__name__}).") from None
    return parse_spec_text(text, limits)


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a number a spec may use")


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def json_depth(text: str) -> int:
    """The deepest nesting of objects and arrays in JSON text (strings skipped), without parsing it."""
    depth = deepest = 0
    for character in _STRING.sub("", text):
        if character in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif character in "]}":
            depth -= 1
    return deepest


def spec_to_text(spec: dict) -> str:
    """The spec as the JSON a user downloads: one layer per line."""
    layers = ",\n".join("  " + json.dumps(layer) for layer in spec["layers"])
    return f'{{"version": {spec["version"]}, "layers": [\n{layers}\n]}}\n'


# ---------------------------------------------------------------- names, sidecars, estimates


def check_model_name(name: str) -> str:
    """A student's model name: letters, digits, _ and -; not a zoo model's name or a Train-page output."""
    from cnn.zoo import ZOO

    if not isinstance(name, str) or not MODEL_NAME_PATTERN.fullmatch(name):
        raise SpecError(
            f"The model name {str(name)[:70]!r} may use only letters, digits, _ and - "
            "(at most 64 characters, not starting with _ or -)."
        )
    if name in ZOO or name.endswith(RESERVED_SUFFIX):
        raise SpecError(f"{name!r} is the name of a zoo model or of its Train-page run; choose another name.")
    return name


def existing_model(name: str, models_dir: Path | None = None) -> dict | None:
    """The sidecar of a saved model called `name`; SpecError when that model was not built from a spec
    (shipped models are never replaced from the Build page)."""
    from cnn.artifacts import default_models_dir, read_sidecar

    path = Path(models_dir or default_models_dir()) / f"{check_model_name(name)}.keras"
    if not path.exists():
        return None
    try:
        record = read_sidecar(path)
    except UserError:
        record = {}
    if spec_of(record) is None:
        raise SpecError(f"models/{name}.keras exists and was not built on the Build page; choose another name.")
    return record


def spec_of(record: dict) -> dict | None:
    """The spec stored in a model's sidecar (in its training config), or None for zoo models."""
    config = record.get("config") if isinstance(record, dict) else None
    spec = config.get("spec") if isinstance(config, dict) else None
    return spec if isinstance(spec, dict) else None


def describe_spec(spec: dict) -> str:
    """What a built model is, in a few words (its zoo entry's summary, cnn.zoo.spec_entry)."""
    counts: dict[str, int] = {}
    for layer in spec["layers"]:
        counts[layer["type"]] = counts.get(layer["type"], 0) + 1
    parts = ", ".join(f"{count} {kind}" for kind, count in counts.items())
    return f"{len(spec['layers'])} layers ({parts}) + softmax output"


def minutes_per_epoch(spec: dict, multiply_adds: int, train_images: int, val_images: int) -> float:
    """Estimated minutes of one epoch of a canonical spec on this project's machine (see SECONDS_PER_IMAGE)."""
    per_image = SECONDS_PER_IMAGE + SECONDS_PER_MULTIPLY_ADD * multiply_adds
    if any(layer["type"] == "batchnorm" for layer in spec["layers"]):
        per_image *= BATCHNORM_SLOWDOWN
    return (train_images + VALIDATION_SHARE * val_images) * per_image / 60


# ---------------------------------------------------------------- Keras


def build_model(spec, *, name: str = "built", limits: Limits | None = None):
    """The uncompiled Functional keras.Model of a spec (checked first: SpecError when invalid).

    Args:
        spec: a spec object (parsed JSON).
        name: the Keras model's name.
        limits: the guard rails; default: `classroom_limits()`.
    """
    return _construct(check_spec(spec, limits), name)


def _construct(spec: dict, name: str):
    """Keras layers for a canonical spec, in order, then the float32 softmax output."""
    import keras
    from keras import layers as keras_layers

    def make(index: int, layer: dict):
        kind, layer_name_ = layer["type"], layer_name(index, layer)
        if kind == "conv2d":
            return keras_layers.Conv2D(
                layer["filters"],
                layer["kernel"],
                strides=layer["stride"],
                padding=layer["padding"],
                use_bias=layer["use_bias"],
                activation=layer["activation"],
                name=layer_name_,
            )
        if kind == "maxpool":
            return keras_layers.MaxPooling2D(layer["size"], name=layer_name_)
        if kind == "avgpool":
            return keras_layers.AveragePooling2D(layer["size"], name=layer_name_)
        if kind == "dropout":
            return keras_layers.Dropout(layer["rate"], name=layer_name_)
        if kind == "dense":
            return keras_layers.Dense(
                layer["units"], activation=layer["activation"], use_bias=layer["use_bias"], name=layer_name_
            )
        return {
            "batchnorm": keras_layers.BatchNormalization,
            "relu": keras_layers.ReLU,
            "flatten": keras_layers.Flatten,
            "global_avgpool": keras_layers.GlobalAveragePooling2D,
        }[kind](name=layer_name_)

    inputs = keras.Input(shape=INPUT_SHAPE, name=INPUT_NAME)
    features = inputs
    for index, layer in enumerate(spec["layers"], start=1):
        features = make(index, layer)(features)
    # Float32 at the end, so mixed-precision training still gives float32 probabilities.
    outputs = keras_layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32", name=OUTPUT_NAME)(features)
    return keras.Model(inputs, outputs, name=name)


# ---------------------------------------------------------------- the report's models (chapter III)


def _conv(filters: int, kernel: int, name: str, *, padding="valid", activation="relu", use_bias=True) -> dict:
    return {
        "type": "conv2d",
        "filters": filters,
        "kernel": kernel,
        "stride": 1,
        "padding": padding,
        "activation": activation,
        "use_bias": use_bias,
        "name": name,
    }


def _head(dropout_rate: float) -> list[dict]:
    """Flatten -> Dense 256 (relu) [-> Dropout]; the softmax output is appended by the builder."""
    head = [
        {"type": "flatten", "name": "flatten"},
        {"type": "dense", "units": 256, "activation": "relu", "use_bias": True, "name": "dense"},
    ]
    if dropout_rate:
        head.append({"type": "dropout", "rate": dropout_rate, "name": "dropout_dense"})
    return head


def _two_conv_spec(dropout_rate: float = 0.0, dense_dropout: float = 0.0) -> dict:
    """Models 1-2: two Conv2D(32, 4x4, relu) + MaxPool(2) [+ Dropout], Dense 256."""
    layers = []
    for index in (1, 2):
        layers += [_conv(32, 4, f"conv{index}"), {"type": "maxpool", "size": 2, "name": f"pool{index}"}]
        if dropout_rate:
            layers.append({"type": "dropout", "rate": dropout_rate, "name": f"dropout{index}"})
    return {"version": SPEC_VERSION, "layers": layers + _head(dense_dropout)}


def _vgg_spec(dropout_rates=(0, 0, 0, 0), batch_norm: bool = False) -> dict:
    """Models 3-6: three blocks of two 3x3 convolutions (32, 64, 128 filters) + MaxPool, Dense 256.

    `dropout_rates` gives the rate after each block and before the output; with batch
    normalization, each convolution is linear without bias, then BatchNormalization, then ReLU.
    """
    layers = []
    for block, filters in enumerate((32, 64, 128), start=1):
        for index in (1, 2):
            suffix = f"{block}_{index}"
            if batch_norm:
                layers += [
                    _conv(filters, 3, f"conv{suffix}", padding="same", activation="linear", use_bias=False),
                    {"type": "batchnorm", "name": f"bn{suffix}"},
                    {"type": "relu", "name": f"relu{suffix}"},
                ]
            else:
                layers.append(_conv(filters, 3, f"conv{suffix}", padding="same"))
        layers.append({"type": "maxpool", "size": 2, "name": f"pool{block}"})
        if dropout_rates[block - 1]:
            layers.append({"type": "dropout", "rate": dropout_rates[block - 1], "name": f"dropout{block}"})
    return {"version": SPEC_VERSION, "layers": layers + _head(dropout_rates[3])}


GROWING_DROPOUT = (0.2, 0.3, 0.4, 0.5)
# The report's six models; `augmented` is model 5's network (its augmentation is in its training recipe).
REPORT_SPECS: dict[str, dict] = {
    "base": _two_conv_spec(),
    "dropout": _two_conv_spec(dropout_rate=0.25, dense_dropout=0.5),
    "deeper": _vgg_spec(),
    "deeper_dropout": _vgg_spec(GROWING_DROPOUT),
    "batchnorm": _vgg_spec(GROWING_DROPOUT, batch_norm=True),
    "augmented": _vgg_spec(GROWING_DROPOUT, batch_norm=True),
}
