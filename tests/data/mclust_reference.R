# Reference values from R's mclust for tests/test_mclust_models.py.
# Run from the repository root:  Rscript tests/data/mclust_reference.R
# Writes tests/data/mclust_reference.json and the two data sets it used (CSV).
#
# For each data set (the one-dimensional one with mclust's E and V models), a fixed soft classification z (0.8 on a known label, the rest spread
# evenly) and each of mclust's 14 models: the M-step from z (mstep), the log-likelihood at
# those parameters (estep), and EM started from that M-step (me) run to a tight tolerance.
suppressMessages({library(mclust); library(jsonlite)})

soft <- function(labels, G) {
  z <- matrix(0.2 / (G - 1), length(labels), G)
  z[cbind(seq_along(labels), labels)] <- 0.8
  z
}
params <- function(p, G, d) {
  if (d == 1) {  # one dimension: a vector of means, sigmasq of length 1 (E) or G (V)
    mean <- matrix(p$mean, ncol = 1)
    sigma <- array(rep_len(p$variance$sigmasq, G), c(G, 1, 1))
  } else {
    mean <- t(p$mean)
    sigma <- aperm(p$variance$sigma, c(3, 1, 2))
  }
  list(pro = as.numeric(p$pro), mean = unname(mean), sigma = unname(sigma))  # (G, d, d)
}

sets <- list(
  iris = list(X = as.matrix(iris[, 1:4]), labels = as.integer(iris$Species), G = 3),
  faithful = list(X = as.matrix(faithful), labels = ifelse(faithful$eruptions > 3, 2L, 1L),
                  G = 2),
  waiting = list(X = as.matrix(faithful[, "waiting", drop = FALSE]),
                 labels = ifelse(faithful$eruptions > 3, 2L, 1L), G = 2)
)
models <- c("EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE", "VEE", "EVE", "VVE", "EEV",
            "VEV", "EVV", "VVV")
tight <- emControl(tol = c(1e-11, 1e-13), itmax = c(100000L, 100000L))
out <- list(mclust_version = as.character(packageVersion("mclust")), sets = list())
for (name in names(sets)) {
  s <- sets[[name]]
  write.csv(s$X, file.path("tests", "data", paste0("mclust_", name, ".csv")), row.names = FALSE)
  z <- soft(s$labels, s$G)
  res <- list()
  for (m in if (ncol(s$X) == 1) c("E", "V") else models) {
    ms <- mstep(data = s$X, modelName = m, z = z, control = tight)
    es <- estep(data = s$X, modelName = m, parameters = ms$parameters)
    em <- me(data = s$X, modelName = m, z = z, control = tight)
    res[[m]] <- list(
      df = nVarParams(m, ncol(s$X), s$G),
      mstep = c(params(ms$parameters, s$G, ncol(s$X)), list(loglik = es$loglik)),
      me = c(params(em$parameters, s$G, ncol(s$X)), list(loglik = em$loglik, iterations = unname(attr(em, "info")[1])))
    )
  }
  out$sets[[name]] <- list(G = s$G, labels = s$labels, models = res)
}
write_json(out, file.path("tests", "data", "mclust_reference.json"), digits = NA, auto_unbox = TRUE)
