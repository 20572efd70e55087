"""What a compression does (Options): one value per family field (families.FIELDS: channels,
sparsity, nm, block4, rank, codebook, wbits, abits, outliers, plus_rank; None where a family is not
used), and how it is solved, corrected and written. check() refuses bad values and combinations
with OptionErrors that name the fields (the command line names its flags instead)."""

from __future__ import annotations

import dataclasses

from . import families, runtimes
from .errors import OptionError
from .sessions import custom_op_library

METHODS = ("exact", "gptq", "sparsegpt", "magnitude", "rtn")
# for pruning then quantizing, the baselines pair up: magnitude with RTN, SparseGPT with GPTQ
PRUNE_OF = {"exact": "exact", "sparsegpt": "sparsegpt", "magnitude": "magnitude", "gptq": "sparsegpt",
            "rtn": "magnitude"}
QUANT_OF = {"exact": "exact", "gptq": "gptq", "rtn": "rtn", "sparsegpt": "gptq", "magnitude": "rtn"}
ACT_RANGES = ("auto", "output", "histogram")
BUDGET_FIELDS = ("speedup", "size", "flops", "bops")
UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600}


def parse_duration(text: str) -> float | None:
    """'10m', '90s', '1.5h', '600' (seconds) → seconds; 'none' → None (no limit)."""
    t = str(text).strip().lower()
    if t == "none":
        return None
    unit = next((u for u in sorted(UNITS, key=len, reverse=True) if t.endswith(u)), "")
    try:
        seconds = float(t.removesuffix(unit)) * UNITS.get(unit, 1)
    except ValueError:
        raise OptionError(f"{{max_time}} takes a duration such as 10m, 90s or 1h (or none), got {text!r}") from None
    if not seconds > 0:
        raise OptionError(f"{{max_time}} must be a positive duration, got {text!r}")
    return seconds


@dataclasses.dataclass(frozen=True)
class Options(families.Spec):
    symmetric: bool = True  # weight grids with zero point 0
    method: str = "exact"  # exact, or a baseline: gptq, sparsegpt, magnitude, rtn
    damp: float = 0.01  # relative Hessian dampening
    act_ranges: str = "auto"  # int8 activation ranges of layer inputs: by the error of the layers they feed
    #                           ("output"), by the tensor's own histogram error ("histogram"; calib/ranges.py), or
    #                           "auto": compress writes both and keeps the one of lower held-out output error
    smooth: str | float = "auto"  # with int8 activations, move activation outliers into the MatMul/Gemm weights
    #                               (SmoothQuant, graph/smooth.py): "auto" picks α per tensor by the layers' output
    #                               error (calib/smoothing.py), "off", or a fixed α in (0, 1]
    slow_int8: str = "float"  # with int8 activations, layers whose int8 form runs slower than float on the target
    #                           runtime stay float where the whole model measures faster so (slow_int8.py); "keep"
    skip: tuple = ()  # weight or node names left dense
    batch_size: int = 8
    holdout: float = 0.25  # share of calibration samples kept for verification
    bias_correction: bool = True  # fold (W − Ŵ)·E[x] into each compressed layer's bias
    variance_correction: bool = True  # rescale channels read by a BatchNormalization to the dense variance
    runtime: str = "onnxruntime"  # the target (runtimes.NAMES): its int8 form, opset limits, latency
    matmulnbits: bool = False  # quantized MatMul weights as onnxruntime's MatMulNBits instead of DequantizeLinear
    custom_ops: tuple = ()  # custom-op libraries for onnxruntime: "extensions" or library paths
    max_memory: float | None = None  # GiB a layer's Hessians and solve may take (default: the memory available)
    max_time: float | None = None  # seconds the exact solves may take, predicted (deadline.py); None: no limit
    ray: str | None = None  # solve the layers on this Ray cluster ("auto", an address, or "local")
    sequential: str | bool = "auto"  # "on" (True): solve wave after wave on the compressed model's inputs
    #                                  (sequential.py); "off" (False): every layer on the dense model's inputs;
    #                                  "auto": both where the format loses most (solve_modes), the lower held-out
    #                                  output error kept
    workers: int = 0  # processes that solve layers here (schedule.py); 0: one per core where that repays
    device: str = "auto"  # where Hessians are summed and the exact solvers run: "cpu", "cuda" (CuPy), or
    #                       "auto": the GPU where CuPy has one, else the CPU

    @property
    def target(self):
        """The runtime object of `runtime`."""
        return runtimes.get(self.runtime)

    @property
    def per_tensor(self) -> bool:
        """One weight grid per layer: int8 on a runtime whose int8 kernels want per-tensor scales."""
        return self.abits == 8 and self.target.int8.per_tensor

    @property
    def solve_modes(self) -> tuple:
        """The ways compress solves the layers: ("independent",), ("sequential",) or, with sequential
        "auto" where errors compound most (static int8 activations, or weights of 4 bits or fewer;
        the exact solvers, the baselines being run as published; not on a Ray cluster), both, the
        model of lower held-out output error kept."""
        if self.sequential in ("on", True):
            return ("sequential",)
        if self.sequential in ("off", False) or self.ray or self.method != "exact":
            return ("independent",)
        lossy = self.abits == 8 or (self.wbits is not None and self.wbits <= 4)
        return ("independent", "sequential") if lossy else ("independent",)

    @property
    def prune_method(self) -> str:
        return PRUNE_OF[self.method]

    @property
    def quant_method(self) -> str:
        return QUANT_OF[self.method]

    def family_fields(self) -> dict:
        return {f: getattr(self, f) for f in families.FIELDS}

    def check(self, planned: bool = False) -> None:
        """Raise OptionError on a bad value or combination. `planned`: a budget picks the levels,
        so the options must not pick any themselves."""
        runtime = self.target  # first: the families' checks consult it
        if planned and families.present(self):
            raise OptionError("a budget (" + ", ".join(f"{{{b}}}" for b in BUDGET_FIELDS) + ") chooses each layer's "
                              "level itself: drop " + ", ".join(f"{{{f}}}" for f in families.FIELDS))
        if self.method not in METHODS:
            raise OptionError(f"{{method}} must be one of {METHODS}, got {self.method!r}")
        families.check(self)
        for f in families.FAMILIES:
            f.check_options(self, runtime)
        if not planned and not families.compresses(self):
            keys = [f"{{{f.key}}}" for f in families.FAMILIES if f.role in ("structured", "prune", "quantize", "alone")]
            raise OptionError(f"nothing to do: give {', '.join(keys[:-1])} or {keys[-1]}")
        pruning, quantizing = families.of_role(self, "prune"), families.of_role(self, "quantize")
        if self.method in ("gptq", "rtn") and pruning and not quantizing:
            raise OptionError(f"{{method}} {self.method} quantizes; use exact, sparsegpt or magnitude for pruning")
        if self.method in ("sparsegpt", "magnitude") and quantizing and not pruning:
            raise OptionError(f"{{method}} {self.method} prunes; use exact, gptq or rtn with {{wbits}}")
        for lib in self.custom_ops:
            custom_op_library(lib)  # a clear error now rather than after calibration
        if self.act_ranges not in ACT_RANGES:
            raise OptionError(f"{{act_ranges}} must be one of {ACT_RANGES}, got {self.act_ranges!r}")
        if self.smooth not in ("auto", "off") and not (isinstance(self.smooth, (int, float))
                                                       and 0 < self.smooth <= 1):
            raise OptionError(f"{{smooth}} takes auto, off or a migration strength α in (0, 1], got {self.smooth!r}")
        if self.slow_int8 not in ("float", "keep"):
            raise OptionError(f"{{slow_int8}} must be float or keep, got {self.slow_int8!r}")
        if not 0 < self.holdout < 1:
            raise OptionError(f"{{holdout}} must be in (0, 1), got {self.holdout}")
        if self.max_time is not None and not self.max_time > 0:
            raise OptionError(f"{{max_time}} must be a positive duration, got {self.max_time} s")
        if self.sequential not in ("auto", "on", "off", True, False):
            raise OptionError(f"{{sequential}} takes auto, on or off, got {self.sequential!r}")
        if self.sequential in ("on", True) and planned:
            raise OptionError("{sequential} solves each layer on the inputs the layers before it give at their "
                              "fixed levels; a budget's database holds every level of every layer alone: drop one")
        if self.workers < 0:
            raise OptionError(f"{{workers}} is a number of processes (0: one per core), got {self.workers}")
        if self.sequential in ("on", True) and self.ray:
            raise OptionError("{sequential} solves wave after wave here, each on the one before: drop {ray}")
        if self.max_memory is not None and not self.max_memory > 0:
            raise OptionError(f"{{max_memory}} is in GiB and must be positive, got {self.max_memory}")
