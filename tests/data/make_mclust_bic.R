# mclust's BIC table on its 14 covariance models (scikit-learn's spherical, diag, tied and
# full are VII, VVI, EEE and VVV), for tests/test_selection.py (run from the repository
# root: Rscript tests/data/make_mclust_bic.R). mclust 6.0.0, default hc start; NA cells
# (models mclust could not fit) are written empty.
library(mclust)
data(faithful)
data(diabetes)
sets <- list(faithful = as.matrix(faithful), iris = as.matrix(iris[, 1:4]),
             diabetes = as.matrix(diabetes[, -1]))
models <- c("EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE", "VEE", "EVE", "VVE", "EEV",
            "VEV", "EVV", "VVV")
out <- NULL
for (name in names(sets)) {
  b <- mclustBIC(sets[[name]], G = 1:9, modelNames = models)
  for (m in models) {
    out <- rbind(out, data.frame(data = name, covariance_type = m, G = 1:9,
                                 bic = round(b[, m], 4)))
  }
}
write.csv(out, "tests/data/mclust_bic.csv", row.names = FALSE, quote = FALSE, na = "")
write.csv(diabetes[, -1], "tests/data/diabetes.csv", row.names = FALSE, quote = FALSE)
