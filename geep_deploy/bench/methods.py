"""The bench's methods: ``full``, ``static:k``, ``geep``, ``geep-pool``, ``probe``, ``entropy``, ``fastbert``,
``pabee``, parsed from ``--methods`` strings (`parse_methods`) into `MethodSpec` values (what each runs:
`geep_deploy.bench.baselines`).

``entropy[:T]`` is the product's entropy dispatch as `GeepEngine` serves it (``GeepEngine.with_entropy``; bare:
the export's own threshold from ``export --entropy``); ``fastbert:T`` runs the same rule through the bench's own
layer-by-layer walk, on FastBERT's export when ``--baseline-export fastbert=DIR`` gives one.
"""

from __future__ import annotations

from dataclasses import dataclass

from geep_deploy.errors import ConfigError
from geep_deploy.exits import BENCH_SWEEPS
from geep_deploy.names import ENTROPY, PROBE

FAMILIES = ("full", "static", "geep", "geep-pool", PROBE, ENTROPY, "fastbert", "pabee")
DISPATCHED = ("geep", "geep-pool", PROBE, ENTROPY)
"""Families that run through ``GeepEngine.dispatch`` (the served path), not the bench's layer-by-layer walk."""
GEEP_FAMILIES = ("geep", "geep-pool")
DEFAULT_SWEEPS = BENCH_SWEEPS


@dataclass(frozen=True)
class MethodSpec:
    """A method name with its parameter: ``fastbert:0.3`` -> ("fastbert", 0.3)."""

    family: str
    param: float | int | str | None = None
    source: str | None = None  # ``probe:0.3@skip``: runs on the bench's export named ``skip``

    @property
    def name(self) -> str:
        at = "" if self.source is None else f"@{self.source}"
        if self.param is None:
            return self.family + at
        return (f"{self.family}:{self.param}" if isinstance(self.param, str) else f"{self.family}:{self.param:g}") + at

    @property
    def layerwise(self) -> bool:
        return self.family in ("fastbert", "pabee")


def parse_methods(text: str, num_layers: int) -> list[MethodSpec]:
    """Parse ``full,geep,fastbert:0.3,pabee,static:2``; a bare fastbert/pabee/static expands to a sweep.

    ``geep`` uses the export's tuned exit table; ``geep:Q+M`` overrides its quantile Q and margin M.
    ``probe`` uses the export's probe at its stored knobs; ``probe:R`` sets the risk R, ``probe:R+escT`` also the
    escalation threshold T (``export.probe_fit.probe_knob`` writes these strings).
    ``geep-pool`` (same parameters) pools the whole split per predicted depth before batching, as a service
    that collects requests does: batches are cut from rows sorted by (depth, length), not from length order.
    A suffix ``@NAME`` runs the method on another export the bench was given under that name
    (``probe:0.3@skip``: the probe dispatch of an export that exits through the shared exit path).

    Raises:
        ConfigError: unknown family or bad parameter, naming the expected form.
    """
    out: list[MethodSpec] = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        method, at, source = item.partition("@")
        if at and not source.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"bench | bad method {item!r}: after @ comes the name of an export given to the bench "
                              "(letters, digits, - and _), e.g. probe:0.3@skip.")
        before = len(out)
        family, _, arg = method.partition(":")
        if family not in FAMILIES:
            raise ConfigError(f"bench | unknown method {family!r}. Expected one of {FAMILIES} "
                              "(with :speed for fastbert, :patience for pabee, :k for static).")
        try:
            if family == "full":
                if arg:
                    raise ValueError
                out.append(MethodSpec(family))
            elif family in GEEP_FAMILIES:
                if arg:
                    q, _, m = arg.partition("+")
                    if not 0.0 <= float(q) <= 1.0 or int(m or 0) < 0:
                        raise ValueError
                    out.append(MethodSpec(family, f"{float(q):g}+{int(m or 0)}"))
                else:
                    out.append(MethodSpec(family))
            elif family == PROBE:
                out.append(MethodSpec(family, _probe_param(arg) if arg else None))
            elif family == ENTROPY:
                if arg and not 0.0 <= float(arg) <= 1.0:
                    raise ValueError
                out.append(MethodSpec(family, float(arg) if arg else None))
            elif family == "static":
                ks = [int(arg)] if arg else list(range(1, num_layers))
                if any(not 1 <= k <= num_layers for k in ks):
                    raise ValueError
                out += [MethodSpec("static", k) for k in ks]
            elif family == "fastbert":
                speeds = [float(arg)] if arg else list(DEFAULT_SWEEPS["fastbert"])
                if any(not 0.0 <= s <= 1.0 for s in speeds):
                    raise ValueError
                out += [MethodSpec("fastbert", s) for s in speeds]
            else:
                ps = [int(arg)] if arg else list(DEFAULT_SWEEPS["pabee"])
                if any(p < 1 for p in ps):
                    raise ValueError
                out += [MethodSpec("pabee", p) for p in ps]
        except ValueError:
            raise ConfigError(f"bench | bad method {item!r}: static:k needs 1 <= k <= {num_layers}, fastbert:s "
                              "needs 0 <= s <= 1, entropy:T needs 0 <= T <= 1, pabee:p needs p >= 1, geep:Q+M "
                              "needs quantile 0 <= Q <= 1 and "
                              "margin M >= 0 (e.g. geep:0.5+1), probe:R[+escT] needs risk and threshold in [0, 1] "
                              "(e.g. probe:0.3+esc0.6).") from None
        if at:
            out[before:] = [MethodSpec(m.family, m.param, source) for m in out[before:]]
    if not out:
        raise ConfigError(f"bench | --methods {text!r} names no method. Give a comma list such as full,geep.")
    return list(dict.fromkeys(out))


def _probe_param(arg: str) -> str:
    """``0.3`` or ``0.3+esc0.6`` checked and normalised (ValueError when malformed)."""
    risk, esc = probe_knobs(arg)
    return f"{risk:g}" + ("" if esc is None else f"+esc{esc:g}")


def probe_knobs(param: str) -> tuple[float, float | None]:
    """(risk, escalation threshold or None) of a ``probe:`` parameter; ValueError when malformed."""
    r, plus, e = param.partition("+")
    if plus and not e.startswith("esc"):
        raise ValueError(param)
    risk, esc = float(r), float(e[3:]) if plus else None
    if not 0.0 <= risk <= 1.0 or (esc is not None and not 0.0 <= esc <= 1.0):
        raise ValueError(param)
    return risk, esc
