#!/usr/bin/env python3
"""Scores wav pairs with PESQ (ITU-T P.862.2, wideband) and prints JSON.

Input: a JSON file (path as the only argument, or '-' / nothing for stdin) holding a list of
    {"ref": "reference.wav", "deg": "degraded.wav"}
Both files must be 16 kHz mono (run.ts resamples them with sox beforehand).

Output (stdout): a JSON list, one entry per input pair, in input order:
    {"ref": ..., "deg": ..., "mos": <MOS-LQO float> | null, "error": <str> | null}

Needs: pip install pesq numpy soundfile  (pesq is the C reference implementation of P.862 wrapped
for Python: https://pypi.org/project/pesq/; 'wb' mode applies the P.862.2 wideband mapping).
Environment: PESQ_JOBS = worker processes (default: CPU count).
"""
import json
import os
import sys
from multiprocessing import Pool


def _score(pair):
    import numpy as np
    import soundfile as sf
    from pesq import pesq

    out = {"ref": pair["ref"], "deg": pair["deg"], "mos": None, "error": None}
    try:
        ref, fs_r = sf.read(pair["ref"], dtype="float64")
        deg, fs_d = sf.read(pair["deg"], dtype="float64")
        if fs_r != 16000 or fs_d != 16000:
            raise ValueError(f"expected 16 kHz input, got ref {fs_r} Hz, deg {fs_d} Hz")
        if ref.ndim != 1 or deg.ndim != 1:
            raise ValueError("expected mono input")
        n = min(len(ref), len(deg))
        out["mos"] = float(pesq(16000, np.ascontiguousarray(ref[:n]), np.ascontiguousarray(deg[:n]), "wb"))
    except Exception as exc:  # report per pair, never abort the batch
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "-"
    pairs = json.load(sys.stdin if src == "-" else open(src, encoding="utf-8"))
    jobs = int(os.environ.get("PESQ_JOBS", "0")) or os.cpu_count() or 1
    if jobs > 1 and len(pairs) > 1:
        with Pool(jobs) as pool:
            results = pool.map(_score, pairs, chunksize=4)
    else:
        results = [_score(p) for p in pairs]
    json.dump(results, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
