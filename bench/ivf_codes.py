"""How many bits an IVF code needs once ``Replica`` re-ranks the candidates exactly, on real embeddings.

The quantised index (``semroute/cache/_ivf.py``) only proposes candidates; the replica keeps the
nearest by the store's own vectors. So what matters is whether the true nearest row is among the
candidates, not the codes' scores. Base: 4,000 banking77 and 4,081 clinc150 *train* utterances
(8,081 rows, 362 lists: the size a 131k scope gets; nprobe 16), embedded with multilingual-e5-small
and held as float16 as the store holds them. Queries: 500 banking77 and 500 clinc150 *test*
utterances (held out). Reported: among queries whose nearest row is at cosine >= 0.9 (the rows a hit
could come from), the share whose nearest row is in the top 4 after exact re-ranking of 4, 8 or 16
candidates, for 8-bit codes (the baseline, same run), 6 and 4 bits.

    python bench/ivf_codes.py [--json]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from shared_data import banking77, clinc150

from semroute.embed import E5Embedder

NLIST, NPROBE, TOP = 362, 16, 4


def embed(texts: list[str]) -> np.ndarray:
    embedder = E5Embedder(threads=2)
    return np.concatenate([embedder.embed(texts[i:i + 256]) for i in range(0, len(texts), 256)])


def sample(rows: list[tuple[str, str]], n: int, rng: np.random.Generator) -> list[str]:
    return [rows[i][0] for i in rng.choice(len(rows), n, replace=False)]


def recall(base: np.ndarray, queries: np.ndarray, bits: int) -> dict[str, float]:
    import faiss

    truth = (queries @ base.T).argmax(1)
    hard = (queries @ base.T).max(1) >= 0.9
    qtype = {4: faiss.ScalarQuantizer.QT_4bit, 6: faiss.ScalarQuantizer.QT_6bit, 8: faiss.ScalarQuantizer.QT_8bit}[bits]
    index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(base.shape[1]), base.shape[1], NLIST, qtype,
                                          faiss.METRIC_INNER_PRODUCT, False)
    index.cp.max_points_per_centroid, index.cp.seed = 32, 1234
    index.train(base)
    index.add(base)
    index.nprobe = NPROBE
    out: dict[str, float] = {"code_bytes": float(index.code_size)}
    for fetched in (TOP, 2 * TOP, 4 * TOP):
        _, labels = index.search(queries, fetched)
        found = []
        for query, candidates, want in zip(queries, labels, truth):
            candidates = candidates[candidates >= 0]
            kept = candidates[np.argsort(-(base[candidates] @ query))][:TOP]
            found.append(want in kept)
        out[f"top{TOP}_of_{fetched}"] = round(float(np.asarray(found)[hard].mean()), 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    base_texts = sample(banking77("train"), 4000, rng) + sample(clinc150("train"), 4081, rng)
    query_texts = sample(banking77("test"), 500, rng) + sample(clinc150("test"), 500, rng)
    base = embed(base_texts).astype(np.float16).astype(np.float32)
    queries = embed(query_texts).astype(np.float32)
    result = {f"{bits}bit": recall(base, queries, bits) for bits in (8, 6, 4)}
    result["queries_nearest_at_0.9"] = int(((queries @ base.T).max(1) >= 0.9).sum())
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
