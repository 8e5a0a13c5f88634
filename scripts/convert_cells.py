"""Convert cell folders written before the one cell cache (plain json per cell) to its format.

Until version 0.1.0 the encoder grid (``results/encoder``) and the real-data grid (``results/realdata``)
stored each cell as a plain json record, with no parameters block and no checksum. This script rewrites
each such file in place, under the same name, as a :class:`benign_attention.cache.CellCache` cell:
the same record (every number kept as it was), its parameters, its provenance as recorded (the date is
unknown for the real-data cells) and a checksum. Files that are already converted are left alone.

    python scripts/convert_cells.py results/encoder results/realdata
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benign_attention.cache import CellCache  # noqa: E402
from benign_attention import encoder  # noqa: E402
from benign_attention.realdata import grid  # noqa: E402

REALDATA_PROV = ("version", "torch", "threads", "machine", "device")


def convert(path):
    """Rewrite one legacy cell file; returns 'encoder', 'realdata' or None (already converted)."""
    path = Path(path)
    rec = json.loads(path.read_text())
    if "checksum" in rec and "params" in rec:
        return None
    cache = CellCache(path.parent, "folder")
    if "dataset" in rec:  # a real-data cell
        prov = {"package": rec["version"], "torch": rec.get("torch"), "device": rec.get("device"),
                "threads": rec.get("threads"), "machine": rec.get("machine"), "date": None}  # None: not recorded
        cell = dict(dataset=rec["dataset"], n=int(rec["n"]), eta=float(rec["eta"]), seed=int(rec["seed"]))
        params = dict(experiment="realdata", **cell, epochs=int(rec["epochs"]), lr=float(rec["lr"]),
                      version=rec["version"])
        record = {k: v for k, v in rec.items() if k not in REALDATA_PROV}
        name, kind = grid.CELL_NAME.format(**cell), "realdata"
    else:  # an encoder cell
        p = rec["provenance"]
        prov = {"package": None, "torch": p["torch"], "device": p["device"], "threads": p["threads"],
                "machine": p["cpu"], "date": p["date"]}
        params = {"experiment": "encoder", "d": int(rec["d"]), "signal_norm": float(rec["signal_norm"]),
                  "seed": int(rec["seed"]), "steps": int(rec["steps"]), "lr": float(rec["lr"]),
                  "mlp_dim": int(rec["mlp_dim"]), "dtype": str(rec["dtype"])}
        record = {k: v for k, v in rec.items() if k != "provenance"}
        name, kind = encoder.CELL_NAME.format(**params), "encoder"
    if cache.path(name) != path:
        raise ValueError(f"{path}: its cell would be called {name}.json")
    cache.save(name, params, record=record, provenance=prov)
    return kind


def main(folders):
    for folder in folders:
        kinds = [convert(p) for p in sorted(Path(folder).glob("*.json"))]
        done = sum(k is not None for k in kinds)
        print(f"{folder}: {done} converted, {len(kinds) - done} already in the cache format")


if __name__ == "__main__":
    main(sys.argv[1:])
