# Reference partitions of mclust's model-based hierarchical clustering, for
# tests/test_hierarchical.py (run from the repository root: Rscript tests/data/make_mclust_hc.R).
# mclust 6.0.0: hc(data, modelName, use = "SVD") and hclass() at 2..9 clusters.
library(mclust)
data(faithful)
sets <- list(iris = as.matrix(iris[, 1:4]), faithful = as.matrix(faithful))
out <- NULL
for (name in names(sets)) {
  X <- sets[[name]]
  for (model in c("VVV", "EII")) {
    tree <- hc(X, modelName = model, use = "SVD")
    cl <- hclass(tree, 2:9)
    for (g in 2:9) {
      # one digit per row, in the rows' order
      out <- rbind(out, data.frame(data = name, model = model, G = g,
                                   labels = paste(cl[, as.character(g)], collapse = "")))
    }
  }
}
write.csv(out, "tests/data/mclust_hc.csv", row.names = FALSE, quote = FALSE)
# (iris itself is tests/data/mclust_iris.csv, written by mclust_reference.R)
