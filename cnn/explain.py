"""Look inside a model: layer table with parameter formulas, filters, feature maps and Grad-CAM.

Works for every zoo model. The report's models are flat Functional models;
our `fast` model as shipped is a wrapper (six shifted and mirrored views of
the image through one nested trunk, averaged), so everything here is computed on the *trunk*: the
Functional model that holds the convolutions. Inputs always go through
`cnn.inference.preprocess`, the one preprocessing of training and prediction,
and every call of a model holds its `cnn.inference.model_lock`, the lock the
`Predictor` of the same model holds. Pictures of the results (mosaics, the
viridis overlay) are drawn by `cnn.pictures`. No Streamlit here.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from cnn import IMAGE_SIZE, NUM_CLASSES
from cnn.errors import UserError
from cnn.inference import model_lock, preprocess, to_model_input, top_k

LOW_CONFIDENCE = 0.5  # below this top probability, the page warns that the model may be guessing
TOP_K = 3

# Layers that follow a convolution and change its maps element-wise or by pooling.
_FOLLOWER_TYPES = (
    "Activation",
    "ReLU",
    "BatchNormalization",
    "BatchNormBias",
    "ScaledBias",
    "MaxPooling2D",
    "AveragePooling2D",
)
_POOLING_TYPES = ("MaxPooling2D", "AveragePooling2D")
_NO_WEIGHT_TYPES = (
    "InputLayer",
    "MaxPooling2D",
    "AveragePooling2D",
    "GlobalMaxPooling2D",
    "GlobalAveragePooling2D",
    "Flatten",
    "Dropout",
    "Activation",
    "ReLU",
    "Rescaling",
    "Average",
    "TestTimeViews",
    "MeanOverViews",
)

# Sub-models (trunk input -> inner layers' outputs), built once per trunk and reused.
_SUBMODELS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


# ---------------------------------------------------------------- the graph that holds the convolutions


def conv_trunk(model):
    """The Functional model that holds the convolutions: `model` itself, or its nested trunk.

    The shipped `fast` model is Input -> views -> trunk -> view average;
    its trunk is the nested model. Flat models are their own trunk.
    """
    import keras

    if _conv_layers(model):
        return model
    for layer in model.layers:
        if isinstance(layer, keras.Model) and _conv_layers(layer):
            return layer
    raise UserError(f"The model {model.name!r} has no convolution layer to inspect.")


def is_view_averaging_wrapper(model) -> bool:
    """True for a model that averages a nested trunk over views of the image (our `fast`)."""
    return conv_trunk(model) is not model and any(type(layer).__name__ == "TestTimeViews" for layer in model.layers)


def _conv_layers(model) -> list:
    return [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]


def conv_layer_names(model) -> list[str]:
    """Names of the Conv2D layers of the (inner) model, input side first."""
    return [layer.name for layer in _conv_layers(conv_trunk(model))]


# ---------------------------------------------------------------- layer table


@dataclass(frozen=True)
class LayerRow:
    """One row of the layer table."""

    name: str  # nested layers are written "trunk / layer"
    layer_type: str
    output_shape: str  # without the batch dimension, e.g. "(29, 29, 32)"
    parameters: int
    formula: str  # how the parameter count comes about
    trainable: str  # which of the parameters training changes
    depth: int = 0  # 1 for the layers of a nested model


def layer_table(model) -> list[LayerRow]:
    """Every layer with its output shape, parameter count and the formula that gives it.

    A nested model (the `fast` trunk) gets one summary row followed by its own
    layers (depth 1). The parameters of the top-level rows add up to
    `model.count_params()`.
    """
    import keras

    rows = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            rows.append(
                LayerRow(
                    layer.name,
                    "nested model",
                    _shape_text(layer.output_shape),
                    layer.count_params(),
                    f"sum of its {len(layer.layers)} layers below = {layer.count_params():,}",
                    _trainable_text(layer),
                )
            )
            rows.extend(_row(inner, prefix=f"{layer.name} / ", depth=1) for inner in layer.layers)
        else:
            rows.append(_row(layer))
    return rows


def _row(layer, prefix: str = "", depth: int = 0) -> LayerRow:
    layer_type = type(layer).__name__
    activation = getattr(layer, "activation", None)
    activation_name = getattr(activation, "__name__", "")
    if layer_type in ("Conv2D", "Dense") and activation_name not in ("", "linear"):
        layer_type = f"{layer_type} + {activation_name}"
    return LayerRow(
        prefix + layer.name,
        layer_type,
        _shape_text(_output_shape(layer)),
        layer.count_params(),
        _formula(layer),
        _trainable_text(layer),
        depth,
    )


def _output_shape(layer):
    try:
        return tuple(layer.output.shape)
    except (AttributeError, ValueError):  # a layer called on several inputs: all its outputs share a shape
        return tuple(layer._inbound_nodes[0].outputs[0].shape)


def _shape_text(shape) -> str:
    return "(" + ", ".join(str(size) for size in tuple(shape)[1:]) + ")"


def _trainable_text(layer) -> str:
    weights = layer.weights
    if not weights:
        return "-"
    trainable = sum(int(np.prod(weight.shape)) for weight in weights if weight.trainable)
    total = sum(int(np.prod(weight.shape)) for weight in weights)
    if trainable == total:
        return "all trainable"
    if trainable == 0:
        return "frozen (not trained)" if not layer.trainable else "none (running statistics)"
    return f"{trainable:,} trainable, {total - trainable:,} not"


NO_WEIGHTS_FORMULA = "0 (no weights)"


def conv_parameter_formula(
    kernel_height: int, kernel_width: int, channels_in: int, filters: int, use_bias: bool
) -> str:
    """A Conv2D layer's parameter count written out: (kh*kw*C_in+1)*filters = total."""
    if use_bias:
        total = (kernel_height * kernel_width * channels_in + 1) * filters
        return f"({kernel_height}*{kernel_width}*{channels_in}+1)*{filters} = {total:,}"
    total = kernel_height * kernel_width * channels_in * filters
    return f"{kernel_height}*{kernel_width}*{channels_in}*{filters} = {total:,} (no bias)"


def dense_parameter_formula(units_in: int, units: int, use_bias: bool) -> str:
    """A Dense layer's parameter count written out: (inputs+1)*units = total."""
    if use_bias:
        return f"({units_in}+1)*{units} = {(units_in + 1) * units:,}"
    return f"{units_in}*{units} = {units_in * units:,} (no bias)"


def batchnorm_parameter_formula(channels: int, learned: tuple[str, ...] = ("gamma", "beta")) -> str:
    """A BatchNormalization layer's parameter count: the learned scale/offset plus two running statistics."""
    count = len(learned) + 2
    learned_text = ", ".join(learned) + " learned; " if learned else "nothing learned; "
    return (
        f"{count}*C = {count}*{channels} = {count * channels:,} ({learned_text}"
        "moving mean and variance are running statistics, not trained)"
    )


def _formula(layer) -> str:
    """The arithmetic behind `layer.count_params()`, written out."""
    layer_type = type(layer).__name__
    total = layer.count_params()
    if layer_type == "Conv2D":
        return conv_parameter_formula(*layer.kernel.shape, layer.use_bias)
    if layer_type == "Dense":
        return dense_parameter_formula(*layer.kernel.shape, layer.use_bias)
    if layer_type == "BatchNormalization":
        learned = tuple(name for name, used in (("gamma", layer.scale), ("beta", layer.center)) if used)
        return batchnorm_parameter_formula(int(layer.moving_mean.shape[0]), learned)
    if layer_type == "BatchNormBias":
        return batchnorm_parameter_formula(int(layer.moving_mean.shape[0]), ("bias",))
    if layer_type == "ScaledBias":
        return f"C = {total:,} (one bias per channel)"
    if layer_type == "Normalization":
        return "0 (fixed CIFAR-10 mean and variance, stored in the config)" if total == 0 else f"{total:,}"
    if layer_type in _NO_WEIGHT_TYPES:
        return NO_WEIGHTS_FORMULA
    return f"{total:,}"


# ---------------------------------------------------------------- filters


@dataclass(frozen=True)
class Filters:
    """The first convolution's kernels as RGB pictures."""

    layer_name: str
    images: np.ndarray  # (filters, kernel height, kernel width, 3) float in [0, 1]
    note: str


def first_conv_filters(model) -> Filters:
    """The kernels of the first conv layer (the one that reads RGB), each scaled to [0, 1] for display.

    Each filter is stretched on its own from its minimum (black) to its
    maximum (full colour), so the picture shows its pattern, not its size.
    """
    trunk = conv_trunk(model)
    layer = _conv_layers(trunk)[0]
    kernel = np.asarray(layer.kernel.numpy(), dtype=np.float32)  # (height, width, 3, filters)
    if kernel.shape[2] != 3:
        raise UserError(f"The first convolution {layer.name!r} does not read RGB images.")
    images = np.moveaxis(kernel, 3, 0)
    low = images.min(axis=(1, 2, 3), keepdims=True)
    span = images.max(axis=(1, 2, 3), keepdims=True) - low
    scaled = np.divide(images - low, span, out=np.full_like(images, 0.5), where=span > 0)
    if layer.name == "whiten":
        note = (
            "The first convolution of our fast model is 'whiten': 24 fixed 2x2 filters computed from "
            "CIFAR-10 statistics before training (the eigenvectors of 2x2 patches, in both signs). "
            "They are frozen: training never changes them. The learned ones start at 'block1_conv1'."
        )
    else:
        note = (
            f"The {kernel.shape[3]} learned {kernel.shape[0]}x{kernel.shape[1]} filters of "
            f"{layer.name!r}, as RGB pictures."
        )
    return Filters(layer.name, scaled, note)


# ---------------------------------------------------------------- feature maps


@dataclass(frozen=True)
class Stage:
    """The activations of one layer for one image."""

    layer_name: str
    layer_type: str
    activations: np.ndarray  # (height, width, channels): Keras is channels-last


def following_layers(model, layer_name: str) -> list:
    """The conv layer `layer_name` and the activation/normalization/pooling layers right after it.

    Dropout, which does nothing at prediction time, is skipped; the chain stops
    at the next convolution, flatten, dense or global pooling layer.
    """
    trunk = conv_trunk(model)
    names = [layer.name for layer in trunk.layers]
    if layer_name not in names or type(trunk.get_layer(layer_name)).__name__ != "Conv2D":
        raise UserError(
            f"{layer_name!r} is not a convolution layer of this model: "
            f"choose one of {', '.join(conv_layer_names(model))}."
        )
    chain = [trunk.get_layer(layer_name)]
    tensor = chain[0].output
    for layer in trunk.layers[names.index(layer_name) + 1 :]:
        if layer.input is not tensor:
            break
        layer_type = type(layer).__name__
        if layer_type == "Dropout":
            tensor = layer.output
            continue
        if layer_type not in _FOLLOWER_TYPES:
            break
        chain.append(layer)
        tensor = layer.output
    return chain


def feature_maps(model, image_uint8: np.ndarray, layer_name: str, *, policy: str = "squash") -> list[Stage]:
    """Activations (H, W, C) of a conv layer and of the layers that follow it, for one image.

    Args:
        model: any zoo model (for the fast wrapper, its trunk is used).
        image_uint8: one RGB uint8 image of any size (resized with `policy`).
        layer_name: a name from `conv_layer_names(model)`.
        policy: resize policy, as in `cnn.inference.preprocess`.
    """
    chain = following_layers(model, layer_name)
    trunk = conv_trunk(model)
    key = ("maps", layer_name)
    submodel = _submodel(model, trunk, key, lambda: [layer.output for layer in chain])
    with model_lock(model):
        outputs = submodel(preprocess(image_uint8, policy=policy), training=False)
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    return [Stage(layer.name, _row(layer).layer_type, np.asarray(output)[0]) for layer, output in zip(chain, outputs)]


def _submodel(model, trunk, key, outputs):
    """A cached keras.Model from the trunk's input to `outputs()` (built once per trunk and key)."""
    import keras

    with model_lock(model):
        cache = _SUBMODELS.setdefault(trunk, {})
        if key not in cache:
            cache[key] = keras.Model(trunk.input, outputs())
        return cache[key]


# ---------------------------------------------------------------- Grad-CAM


@dataclass(frozen=True)
class GradCam:
    """A Grad-CAM heatmap: where the evidence for one class lies, approximately."""

    heatmap: np.ndarray  # (32, 32) float in [0, 1], peak 1 (all 0 when empty)
    class_index: int
    layer_name: str  # the layer whose maps were weighted
    map_size: tuple[int, int]  # that layer's height and width, before upsampling to 32x32
    note: str


def grad_cam_layer(model) -> str:
    """The layer Grad-CAM weights: the last conv layer's output after its activation, before pooling."""
    chain = following_layers(model, conv_layer_names(model)[-1])
    before_pooling = [layer for layer in chain if type(layer).__name__ not in _POOLING_TYPES]
    return before_pooling[-1].name


def gradcam_heatmap(image_batch, grad_model, class_index: int) -> np.ndarray:
    """Grad-CAM's core (Selvaraju et al. 2017), as in the keras-io Grad-CAM example.

    Args:
        image_batch: one preprocessed image, shape (1, 32, 32, 3).
        grad_model: image batch -> (the chosen conv layer's maps, the class logits before softmax).
        class_index: the class to explain.

    Returns:
        The heatmap at the maps' size, scaled to [0, 1] by its peak (all zeros when no region raised the class).
    """
    import tensorflow as tf

    with tf.GradientTape() as tape:
        conv_maps, logits = grad_model(image_batch, training=False)
        class_score = logits[:, class_index]
    # How much each position of each map raises the class's score ...
    gradients = tape.gradient(class_score, conv_maps)
    # ... averaged over the positions: one weight per channel.
    pooled_gradients = tf.reduce_mean(gradients, axis=(0, 1, 2))
    # The maps summed over channels, each weighted by how much it matters.
    heatmap = conv_maps[0] @ pooled_gradients[..., tf.newaxis]
    heatmap = tf.squeeze(heatmap, axis=-1)
    # Keep only the regions that raise the score, scaled to [0, 1].
    heatmap = tf.nn.relu(heatmap)
    peak = float(tf.reduce_max(heatmap))
    if peak <= 0:
        return np.zeros(tuple(heatmap.shape), dtype=np.float32)
    return np.asarray(heatmap / peak, dtype=np.float32)


def grad_cam(model, image_uint8: np.ndarray, class_index: int | None = None, *, policy: str = "squash") -> GradCam:
    """Grad-CAM of one image for one class, stretched to the 32x32 input (see `gradcam_heatmap`).

    Args:
        model: any zoo model. For the view-averaging fast model, the trunk is
            used on the image as is (unshifted, unflipped) only.
        image_uint8: one RGB uint8 image of any size (resized with `policy`).
        class_index: the class to explain; default: the model's top class.
        policy: resize policy, as in `cnn.inference.preprocess`.
    """
    image_batch = preprocess(image_uint8, policy=policy)
    layer_name = grad_cam_layer(model)
    with model_lock(model):
        if class_index is None:
            class_index = int(np.argmax(np.asarray(model(image_batch, training=False))[0]))
        _check_class_index(class_index)
        heatmap = gradcam_heatmap(image_batch, _grad_model(model, layer_name), class_index)
    stretched = upsampled(heatmap)
    if stretched.max() > 0:  # bilinear samples fall between the map's cells and miss its peak: restore it
        stretched /= stretched.max()
    return GradCam(stretched, int(class_index), layer_name, heatmap.shape, _grad_cam_note(model, layer_name, heatmap))


def _check_class_index(class_index: int) -> None:
    if not 0 <= class_index < NUM_CLASSES:
        raise UserError(f"The class index must be between 0 and {NUM_CLASSES - 1}, not {class_index}.")


def _grad_model(model, layer_name: str):
    """image batch -> (maps of `layer_name`, class logits), through the conv trunk (`model` itself when flat)."""
    trunk = conv_trunk(model)
    output_layer = trunk.layers[-1]
    to_maps_and_features = _submodel(
        model, trunk, ("cam", layer_name), lambda: [trunk.get_layer(layer_name).output, output_layer.input]
    )

    def grad_model(image_batch, training=False):
        maps, features = to_maps_and_features(image_batch, training=training)
        return maps, _logits(output_layer, features)

    return grad_model


def _logits(output_layer, before_softmax):
    """The class scores before softmax, from the input of the model's last layer."""
    import tensorflow as tf

    if type(output_layer).__name__ == "Dense":
        logits = tf.matmul(before_softmax, output_layer.kernel)
        return logits + output_layer.bias if output_layer.use_bias else logits
    return before_softmax  # an Activation("softmax") layer: its input already is the logits


def upsampled(heatmap: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """A map-size heatmap in [0, 1] stretched (bilinear) to size x size; bilinear stays within [0, 1]."""
    import tensorflow as tf

    resized = tf.image.resize(heatmap[None, :, :, None], (size, size), method="bilinear")[0, :, :, 0]
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def _grad_cam_note(model, layer_name: str, heatmap: np.ndarray) -> str:
    """What the heatmap is and is not, for the caption under it."""
    height, width = heatmap.shape
    note = (
        f"Approximate: computed on the {height}x{width} maps of {layer_name!r} and "
        "stretched to 32x32, so it shows roughly where, not exactly which pixels."
    )
    if is_view_averaging_wrapper(model):
        note += (
            " This model averages its answer over shifted and mirrored copies of the image; the heatmap "
            "is computed on the network inside it, with the unshifted, unflipped image only."
        )
    if not heatmap.any():
        note += " No region raised this class's score, so the map is empty."
    return note


# ---------------------------------------------------------------- one prediction, explained


@dataclass(frozen=True)
class Explained:
    """Everything the Predict page shows for one image."""

    model_input: np.ndarray  # the 32x32 RGB uint8 image the model sees
    probabilities: np.ndarray  # (10,)
    top: list  # top-3 cnn.inference.Ranked
    low_confidence: bool
    cam: GradCam


def explain_prediction(predictor, image, *, policy: str = "squash") -> Explained:
    """Predict one image with a `cnn.inference.Predictor` and explain it with Grad-CAM.

    `image` is a PIL RGB image or a uint8 array of any size; the 32x32 input is
    made by `cnn.inference.to_model_input`, as `preprocess` makes it.
    """
    model_input = to_model_input(image, policy)
    probabilities = predictor.predict_proba(model_input[None])[0]
    top = top_k(probabilities, TOP_K)
    cam = grad_cam(predictor.model, model_input, top[0].label)
    return Explained(model_input, probabilities, top, top[0].probability < LOW_CONFIDENCE, cam)
