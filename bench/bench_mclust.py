"""emkit's model-based clustering side by side with R's mclust, in one run.

Needs ``Rscript`` with the mclust package (it reads mclust's bundled data sets through R;
nothing is stored here). Three workloads (issue 14's targets):

* ``selection``: on mclust's faithful, iris, diabetes, banknote, wreath and thyroid data,
  the (G, model) that ``emkit.ModelBasedClustering()`` keeps by BIC against mclust's
  ``mclustBIC`` best, both over G = 1..9 and the covariance models emkit has (mclust's
  names in brackets); mclust's best over all its 14 models is shown too, with the BIC of
  both at the kept cell (mclust's sign, higher is better);
* ``sweep``: the time of the whole faithful table, emkit's models x 9 components against
  ``mclustBIC`` on the same models and on all 14 (best of ``--repeats``);
* ``em10``: 10 EM iterations on iris (150 x 4, K = 3, VVV / full) from the same
  hierarchical start, emkit against mclust's ``em()`` (per call, best of ``--repeats``
  batches).

Machine load changes the times: compare the ratios of one run. Run
``python bench/bench_mclust.py --help``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

DATASETS = ("faithful", "iris", "diabetes", "banknote", "wreath", "thyroid")
# emkit's names of mclust's models
EMKIT_OF_MCLUST = {"VVV": "full", "EEE": "tied", "VVI": "diag", "VII": "spherical"}

_R_SCRIPT = r"""
suppressMessages(library(mclust))
args <- commandArgs(trailingOnly = TRUE)
out <- args[1]; repeats <- as.integer(args[2]); models <- strsplit(args[3], ",")[[1]]
data(faithful); data(diabetes); data(banknote); data(wreath); data(thyroid)
sets <- list(faithful = faithful, iris = iris[, 1:4], diabetes = diabetes[, -1],
             banknote = banknote[, -1], wreath = wreath, thyroid = thyroid[, -1])
best_of <- function(b) {
  i <- which(b == max(b, na.rm = TRUE), arr.ind = TRUE)[1, ]
  list(G = as.integer(rownames(b)[i[1]]), model = colnames(b)[i[2]], bic = max(b, na.rm = TRUE))
}
res <- list()
for (name in names(sets)) {
  X <- as.matrix(sets[[name]])
  write.csv(X, file.path(out, paste0(name, ".csv")), row.names = FALSE)
  res[[name]] <- list(same = best_of(mclustBIC(X, G = 1:9, modelNames = models, verbose = FALSE)),
                      all = best_of(mclustBIC(X, G = 1:9, verbose = FALSE)))
}
X <- as.matrix(faithful)
t_same <- min(replicate(repeats, system.time(mclustBIC(X, G = 1:9, modelNames = models,
                                                       verbose = FALSE))[["elapsed"]]))
t_all <- min(replicate(repeats, system.time(mclustBIC(X, G = 1:9, verbose = FALSE))[["elapsed"]]))
I <- as.matrix(iris[, 1:4])
start <- mstep(modelName = "VVV", data = I, z = unmap(hclass(hc(I), 3)))
calls <- 200
t_em <- min(replicate(repeats, system.time(for (r in 1:calls)
  em(modelName = "VVV", data = I, parameters = start$parameters,
     control = emControl(itmax = 10, tol = c(0, 0))))[["elapsed"]])) / calls
res$sweep <- list(same = t_same, all = t_all)
res$em10 <- t_em
write(sprintf('{"sweep_same": %.6f, "sweep_all": %.6f, "em10": %.8f}', t_same, t_all, t_em),
      file.path(out, "times.json"))
for (name in names(sets)) {
  write(sprintf("%s,%d,%s,%.4f,%d,%s,%.4f", name, res[[name]]$same$G, res[[name]]$same$model,
                res[[name]]$same$bic, res[[name]]$all$G, res[[name]]$all$model,
                res[[name]]$all$bic), file.path(out, "best.csv"), append = TRUE)
}
"""


def run_r(out: Path, repeats: int, models: list[str]) -> dict[str, Any]:
    script = out / "bench.R"
    script.write_text(_R_SCRIPT)
    subprocess.run(
        ["Rscript", str(script), str(out), str(repeats), ",".join(models)],
        check=True,
        capture_output=True,
        text=True,
    )
    times = json.loads((out / "times.json").read_text())
    best = {}
    for line in (out / "best.csv").read_text().splitlines():
        name, g, model, bic, g_all, model_all, bic_all = line.split(",")
        best[name] = {
            "same": (int(g), model, float(bic)),
            "all": (int(g_all), model_all, float(bic_all)),
        }
    return {"times": times, "best": best}


def load(out: Path, name: str) -> np.ndarray:
    return np.loadtxt(out / f"{name}.csv", delimiter=",", skiprows=1)


def best_time(fn: Any, repeats: int) -> float:
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return float(best)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args()
    if shutil.which("Rscript") is None:
        raise SystemExit("bench_mclust.py needs Rscript with R's mclust package installed.")

    from emkit import GaussianMixture, ModelBasedClustering
    from emkit.estimators.selection import all_covariance_types

    ours = all_covariance_types()
    mclust_of = {v: k for k, v in EMKIT_OF_MCLUST.items()}
    models = [mclust_of.get(name, name) for name in ours]
    report: dict[str, Any] = {"models": models}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        r = run_r(out, args.repeats, models)
        rows = []
        for name in DATASETS:
            X = load(out, name)
            start = time.perf_counter()
            mbc = ModelBasedClustering().fit(X)
            seconds = time.perf_counter() - start
            g, model, bic = r["best"][name]["same"]
            mine = (mbc.n_components_, mclust_of.get(mbc.covariance_type_, mbc.covariance_type_))
            rows.append(
                {
                    "data": name,
                    "shape": list(X.shape),
                    "emkit": list(mine),
                    "emkit_bic": float(mbc.results_["bic"][mbc.best_index_]),
                    "mclust": [g, model],
                    "mclust_bic": bic,
                    "same_choice": mine == (g, model),
                    "mclust_all_models": list(r["best"][name]["all"]),
                    "emkit_seconds": seconds,
                }
            )
        report["selection"] = rows
        faithful = load(out, "faithful")
        sweep = best_time(lambda: ModelBasedClustering().fit(faithful), args.repeats)
        report["sweep"] = {
            "emkit": sweep,
            "mclust_same_models": r["times"]["sweep_same"],
            "mclust_all_14": r["times"]["sweep_all"],
        }
        iris = load(out, "iris")
        start_model = GaussianMixture(3, init_params="hc", max_iter=0).fit(iris)
        given = {
            "weights_init": start_model.weights_,
            "means_init": start_model.means_,
            "precisions_init": start_model.precisions_,
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            calls = 50
            em10 = best_time(
                lambda: [
                    GaussianMixture(3, tol=0, max_iter=10, **given).fit(iris) for _ in range(calls)
                ],
                args.repeats,
            )
        report["em10"] = {"emkit": em10 / calls, "mclust": r["times"]["em10"]}

    print(f"models compared: {', '.join(models)} (mclust's names)")
    print(f"{'data':<10} {'n x d':>9} {'emkit':>10} {'mclust':>10} {'same':>5}  mclust (14)")
    for row in report["selection"]:
        shape = "x".join(map(str, row["shape"]))
        emk = f"{row['emkit'][1]},{row['emkit'][0]}"
        mcl = f"{row['mclust'][1]},{row['mclust'][0]}"
        g14, m14, b14 = row["mclust_all_models"]
        same = "yes" if row["same_choice"] else "NO"
        print(
            f"{row['data']:<10} {shape:>9} {emk:>10} {mcl:>10} {same:>5}"
            f"  {m14},{g14} ({b14:.2f}); BIC emkit {row['emkit_bic']:.2f}, mclust "
            f"{row['mclust_bic']:.2f}"
        )
    s = report["sweep"]
    print(
        f"faithful sweep ({len(models)} models x 9): emkit {s['emkit']:.3f} s, mclust "
        f"{s['mclust_same_models']:.3f} s on the same models (ratio "
        f"{s['emkit'] / s['mclust_same_models']:.2f}), {s['mclust_all_14']:.3f} s on all 14"
    )
    e = report["em10"]
    print(
        f"10 EM iterations, iris, K = 3, VVV: emkit {1e3 * e['emkit']:.2f} ms, mclust em() "
        f"{1e3 * e['mclust']:.2f} ms (ratio {e['emkit'] / e['mclust']:.2f})"
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
