# mclust's BIC table on its 14 covariance models (scikit-learn's spherical, diag, tied and
# full are VII, VVI, EEE and VVV), for tests/test_selection.py and bench/bench_mclust.py
# (run from the repository root: Rscript tests/data/make_mclust_bic.R). mclust 6.0.0,
# default hc start; NA cells (models mclust could not fit) are written empty.
#
# The data sets and where they come from (mclust ships them; mclust itself is GPL, the
# data are published measurements or simulations, exported here as plain tables):
# - faithful (R's datasets), iris (R's datasets; Anderson 1935, Fisher 1936): R's own;
# - diabetes: Reaven & Miller (1979), Diabetologia 16:17-24 (mclust's `diabetes`, class
#   column dropped) -> tests/data/diabetes.csv;
# - banknote: Swiss banknotes, Flury & Riedwyl (1988), Multivariate Statistics: A
#   Practical Approach, Tables 1.1 and 1.2 (Status column dropped) -> banknote.csv;
# - wreath: 1000 points simulated from 14 Gaussians by Fraley, Raftery & Wehrens (2005),
#   J. Comput. Graph. Stat. 14(3) -> wreath.csv;
# - thyroid: UCI Machine Learning Repository, Thyroid Disease (new-thyroid), Coomans et
#   al. (1983) (Diagnosis column dropped) -> thyroid.csv.
library(mclust)
data(faithful)
data(diabetes)
data(banknote)
data(wreath)
data(thyroid)
sets <- list(faithful = as.matrix(faithful), iris = as.matrix(iris[, 1:4]),
             diabetes = as.matrix(diabetes[, -1]), banknote = as.matrix(banknote[, -1]),
             wreath = as.matrix(wreath), thyroid = as.matrix(thyroid[, -1]))
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
# wreath's 14 simulated components lie beyond G = 9: its table to G = 20 as well, as
# "wreath_g20" (its cells G <= 9 are the 1:9 table's: the same hc start)
b <- mclustBIC(sets$wreath, G = 1:20, modelNames = models)
for (m in models) {
  out <- rbind(out, data.frame(data = "wreath_g20", covariance_type = m, G = 1:20,
                               bic = round(b[, m], 4)))
}
write.csv(out, "tests/data/mclust_bic.csv", row.names = FALSE, quote = FALSE, na = "")
for (name in c("diabetes", "banknote", "wreath", "thyroid")) {
  write.csv(sets[[name]], file.path("tests", "data", paste0(name, ".csv")), row.names = FALSE,
            quote = FALSE)
}
