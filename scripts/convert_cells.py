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
        params = grid._cell_params(rec["dataset"], rec["n"], rec["eta"], rec["seed"], rec["epochs"], rec["lr"], {})
        params["version"] = rec["version"]
        record = {k: v for k, v in rec.items() if k not in REALDATA_PROV}
        name, kind = grid._cell_name(rec["dataset"], rec["n"], rec["eta"], rec["seed"]), "realdata"
    else:  # an encoder cell
        p = rec["provenance"]
        prov = {"package": None, "torch": p["torch"], "device": p["device"], "threads": p["threads"],
                "machine": p["cpu"], "date": p["date"]}
        params = encoder._cell_params(rec["d"], rec["signal_norm"], rec["seed"], rec["steps"], rec["lr"],
                                      rec["mlp_dim"], rec["dtype"])
        record = {k: v for k, v in rec.items() if k != "provenance"}
        name, kind = encoder._cell_name(rec["d"], rec["signal_norm"], rec["seed"]), "encoder"
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
