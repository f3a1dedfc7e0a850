"""The one module that names backends, artifact formats, precisions, graph kinds and devices.

The CLI, the manifest, the engine registry and the engines all read these, so a backend, precision or graph
kind is added here once. Two vocabularies meet in an export and are kept apart on purpose:

- a *backend* runs a graph (``onnxruntime``, ``torch``, ``tensorrt``; ``onnx-reference`` is ONNX's NumPy
  evaluator, used to check graphs ONNX Runtime cannot run);
- an artifact *format* is what an export holds (``onnx`` graphs, ``tensorrt`` plans, ``torch`` weights).

Rows per call, one meaning per name:

- ``batch_size``: most rows in one engine call of one ``predict``/``dispatch`` (``predict --batch-size``); also the
  rows per forward pass of training and calibration;
- ``max_group``: the engine's default ``batch_size`` (`runtime.options.LoadOptions.max_group`), and the largest
  depth group ``plan_groups`` cuts;
- ``engine_batch``: the ``batch_size`` the service passes to every pooled ``predict`` (``serve --engine-batch``);
- ``max_batch``: the largest batch an engine accepts (``export --max-batch``: TensorRT profiles, CUDA-graph
  buckets) and, in the service, the most requests per pool (``serve --max-batch``, ``@serve.batch``).

A precision says what numbers the arithmetic uses; how a graph reaches it is its *variant* (int8 is ONNX Runtime's
dynamic quantisation for ``onnxruntime`` and a Q/DQ graph for TensorRT).
"""

from __future__ import annotations

from geep_deploy.errors import ConfigError

# -- backends (what runs a graph) ----------------------------------------------------------------------------
ONNXRUNTIME, TORCH, TENSORRT, ONNX_REFERENCE = "onnxruntime", "torch", "tensorrt", "onnx-reference"
BACKENDS = (ONNXRUNTIME, TORCH, TENSORRT)  # what users choose from
AUTO = "auto"
AUTO_RULE = f"{TENSORRT} on CUDA with plans, else {ONNXRUNTIME}, else {TORCH}"
"""What ``--backend auto`` resolves to (`engines.registry.resolve_backend`), in words for help texts."""
BACKEND_ALIASES = {"ort": ONNXRUNTIME, "trt": TENSORRT, "pytorch": TORCH, "onnxref": ONNX_REFERENCE}

# -- artifact formats (what an export holds) -----------------------------------------------------------------
ONNX, PLAN, WEIGHTS = "onnx", "tensorrt", "torch"
EXPORT_FORMATS = (ONNX, PLAN)  # what `geep-deploy export --format` builds (torch weights come with onnx)
FORMAT_OF_BACKEND = {ONNXRUNTIME: ONNX, ONNX_REFERENCE: ONNX, TENSORRT: PLAN, TORCH: WEIGHTS}

# -- precisions and graph variants ---------------------------------------------------------------------------
PRECISIONS = ("fp32", "tf32", "fp16", "bf16", "int8")
EXPORT_PRECISIONS = ("fp32", "fp16", "bf16", "int8")  # tf32 is fp32 weights run with TF32 matmuls
LOW_PRECISIONS = ("fp16", "bf16")  # casts in the graph; LayerNorm/Softmax stay fp32
QDQ = "qdq"  # int8 as QuantizeLinear/DequantizeLinear pairs: what TensorRT builds int8 plans from
VARIANT_DIRS = {("int8", QDQ): "int8_qdq"}  # onnx/<dir>/ of a (precision, variant); default: the precision

# -- graph kinds -----------------------------------------------------------------------------------------------
DEPTH, EMBED, LAYER, MODEL = "depth", "embed", "layer", "model"
PREFIX, CONT = "prefix", "cont"  # the probe dispatch: embeddings + layer 1, then layers 2..d from cached states
GRAPH_KINDS = (DEPTH, EMBED, LAYER, PREFIX, CONT)  # MODEL is the torch weights, not a graph
DEPTHLESS_KINDS = (EMBED, PREFIX)  # graph kinds without a depth (one graph per precision)
DEVICES = ("cpu", "cuda")

# -- exit predictors (what picks each row's depth) --------------------------------------------------------------
TABLE, PROBE, ENTROPY = "table", "probe", "entropy"
# the token exit table (before the model runs), the layer-1 probe, or FastBERT's entropy exit over the export's
# own heads (layer by layer, a head check after every layer: `runtime.layerwise`)
PREDICTOR_KINDS = (TABLE, PROBE, ENTROPY)
DEFAULT_PREDICTOR = {"cpu": ENTROPY, "cuda": PROBE}
"""The predictor kind the product ships by default on each device (`DEVICES`): what ``geep-deploy calibrate
--predictor`` (and the demo) defaults to for the device it targets. Set from the measured results page:
docs/results.md, "Which dispatch on GEEP's heads" (the probe dispatch against the entropy exit over GEEP's own heads
at equal accuracy, CPU batch 64, both read from the committed suite JSON); the dispatch that wins more sets there is
the device's default, and tests/test_default_predictor.py fails when this value and that measurement disagree. On the
CPU the entropy exit wins more sets (every training seed of the suite counted). ``cuda`` is unmeasured (no GPU has run the
comparison), so it keeps the probe, whose dense per-depth groups are what GPUs are expected to need."""

# -- exit paths ------------------------------------------------------------------------------------------------
STUDENT, SKIP = "student", "skip"
EXIT_MODES = (STUDENT, SKIP)  # depth k < L exits through student head k, or through layer L and the teacher


def exits_through_teacher(exit_mode: str, depth: int, num_layers: int) -> bool:
    """Whether a row answered at ``depth`` runs layer L and the teacher after its own layers (the shared exit path
    of ``skip`` below depth L) rather than its student head."""
    return exit_mode == SKIP and depth < num_layers


def first_continuation(exit_mode: str) -> int:
    """The shallowest ``cont{d}`` graph an exit mode has: 2 for student heads (depth 1 answers from the prefix
    graph's own head), 1 for the shared exit path (depth 1 still runs layer L and the teacher)."""
    return 1 if exit_mode == SKIP else 2


def canonical_backend(name: str, *, allow_auto: bool = False) -> str:
    """Resolve aliases (``ort``, ``trt``) and reject unknown names with the list of known ones."""
    if allow_auto and name == AUTO:
        return AUTO
    key = BACKEND_ALIASES.get(name, name)
    if key not in (*BACKENDS, ONNX_REFERENCE):
        known = [*BACKENDS, *([AUTO] if allow_auto else [])]
        raise ConfigError(f"backend | unknown backend {name!r}. Expected one of {known}.")
    return key


def weights_precision(precision: str) -> str:
    """The precision of the weights a runtime precision runs on (tf32 runs fp32 weights)."""
    return "fp32" if precision == "tf32" else precision


def variant_dir(precision: str, variant: str = "") -> str:
    """The ``onnx/<dir>`` folder of a precision's graphs, e.g. ``int8_qdq`` for int8 Q/DQ."""
    return VARIANT_DIRS.get((precision, variant), precision)


def check_choice(what: str, value: str, allowed: tuple[str, ...]) -> str:
    """Return ``value`` if it is in ``allowed``, else raise ``ConfigError`` listing the choices."""
    if value not in allowed:
        raise ConfigError(f"{what} | unknown {what} {value!r}. Expected one of {list(allowed)}.")
    return value
