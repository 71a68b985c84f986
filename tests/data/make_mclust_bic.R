# mclust's BIC table on the four covariance models scikit-learn also has (spherical =
# VII, diag = VVI, tied = EEE, full = VVV), for tests/test_selection.py (run from the
# repository root: Rscript tests/data/make_mclust_bic.R). mclust 6.0.0, default hc start.
library(mclust)
data(faithful)
data(diabetes)
sets <- list(faithful = as.matrix(faithful), iris = as.matrix(iris[, 1:4]),
             diabetes = as.matrix(diabetes[, -1]))
names4 <- c(VII = "spherical", VVI = "diag", EEE = "tied", VVV = "full")
out <- NULL
for (name in names(sets)) {
  b <- mclustBIC(sets[[name]], G = 1:9, modelNames = names(names4))
  for (m in names(names4)) {
    out <- rbind(out, data.frame(data = name, covariance_type = names4[[m]], G = 1:9,
                                 bic = round(b[, m], 4)))
  }
}
write.csv(out, "tests/data/mclust_bic.csv", row.names = FALSE, quote = FALSE)
write.csv(diabetes[, -1], "tests/data/diabetes.csv", row.names = FALSE, quote = FALSE)
