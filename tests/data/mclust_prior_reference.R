# Reference values from R's mclust with its default conjugate prior (priorControl()), for
# tests/test_mclust_prior.py. Run from the repository root:
#     Rscript tests/data/mclust_prior_reference.R
# Writes tests/data/mclust_prior_reference.json; reads the data sets that
# tests/data/mclust_reference.R exported (mclust_iris.csv, mclust_faithful.csv,
# mclust_waiting.csv), with the same fixed soft classification z (0.8 on a known label,
# the rest spread evenly).
#
# For each model: defaultPrior()'s hyper-parameters, the M-step from z with the prior
# (mstep), the log-likelihood at those parameters (estep), EM started from that
# classification (me) to a tight tolerance, and me()'s first M-step alone (one iteration). mclust has no prior for VEE, EVE, VVE and EVV
# (its M-step returns NA with a warning): those are recorded as null.
suppressMessages({library(mclust); library(jsonlite)})

read <- function(name) as.matrix(read.csv(file.path("tests", "data", paste0("mclust_", name, ".csv"))))
soft <- function(labels, G) {
  z <- matrix(0.2 / (G - 1), length(labels), G)
  z[cbind(seq_along(labels), labels)] <- 0.8
  z
}
params <- function(p, G, d) {
  if (d == 1) {
    mean <- matrix(p$mean, ncol = 1)
    sigma <- array(rep_len(p$variance$sigmasq, G), c(G, 1, 1))
  } else {
    mean <- t(p$mean)
    sigma <- aperm(p$variance$sigma, c(3, 1, 2))
  }
  list(pro = as.numeric(p$pro), mean = unname(mean), sigma = unname(sigma))
}
faithful_labels <- ifelse(faithful$eruptions > 3, 2L, 1L)
sets <- list(
  iris = list(X = read("iris"), labels = as.integer(iris$Species), G = 3),
  faithful = list(X = read("faithful"), labels = faithful_labels, G = 2),
  waiting = list(X = read("waiting"), labels = faithful_labels, G = 2)
)
models <- c("EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE", "VEE", "EVE", "VVE", "EEV",
            "VEV", "EVV", "VVV")
tight <- emControl(tol = c(1e-11, 1e-13), itmax = c(100000L, 100000L))
out <- list(mclust_version = as.character(packageVersion("mclust")), sets = list())
for (name in names(sets)) {
  s <- sets[[name]]
  z <- soft(s$labels, s$G)
  res <- list()
  for (m in if (ncol(s$X) == 1) c("E", "V") else models) {
    hyper <- defaultPrior(s$X, s$G, m)
    ms <- suppressWarnings(mstep(data = s$X, modelName = m, z = z, prior = priorControl(),
                                 control = tight))
    if (m %in% c("VEE", "EVE", "VVE", "EVV")) {  # "model is not available with prior"
      stopifnot(all(ms$parameters$variance$sigma == 0) || anyNA(ms$parameters$variance$sigma))
      res[[m]] <- NULL
      next
    }
    es <- estep(data = s$X, modelName = m, parameters = ms$parameters)
    em <- me(data = s$X, modelName = m, z = z, prior = priorControl(), control = tight)
    ee <- estep(data = s$X, modelName = m, parameters = em$parameters)
    # me()'s first M-step from the same z: for EEI, EVI and EEV it is not mstep()'s
    first <- me(data = s$X, modelName = m, z = z, prior = priorControl(),
                control = emControl(tol = c(1e-11, 1e-13), itmax = c(1L, 100000L)))
    res[[m]] <- list(
      prior = list(shrinkage = hyper$shrinkage, mean = unname(as.numeric(hyper$mean)),
                   dof = hyper$dof, scale = unname(hyper$scale)),
      mstep = c(params(ms$parameters, s$G, ncol(s$X)), list(loglik = es$loglik)),
      me = c(params(em$parameters, s$G, ncol(s$X)),
             list(loglik = em$loglik, estep_loglik = ee$loglik,
                  iterations = unname(attr(em, "info")[1]))),
      me_first_m_step = params(first$parameters, s$G, ncol(s$X))
    )
  }
  out$sets[[name]] <- list(G = s$G, labels = s$labels, models = res)
}
write_json(out, file.path("tests", "data", "mclust_prior_reference.json"), digits = NA,
           auto_unbox = TRUE)
