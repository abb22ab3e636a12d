#!/usr/bin/Rscript
# Reference values of the Hodges-Lehmann shift and its confidence interval
# from R's wilcox.test(x, y, conf.int = TRUE) (Debian r-base-core, R 4.2).
# Regenerate with:
#
#     Rscript internal/gate/canary/testdata/gen_r.R
#
# It writes r_wilcox.json next to this script (or to the path given as the
# first argument), inputs included, so the Go
# tests need neither R nor this script. Doubles are printed with 17
# significant digits, which round-trips them exactly.
args <- commandArgs(trailingOnly = FALSE)
here <- dirname(normalizePath(sub("^--file=", "", args[grep("^--file=", args)])))
set.seed(20240611)

lognormal <- function(n, median = 0.2, sigma = 0.3) exp(log(median) + sigma * rnorm(n))

cases <- list(
  list(name = "3x4", x = c(1.83, 0.50, 1.62), y = c(0.878, 0.647, 0.598, 2.05)),
  list(name = "5x5", x = lognormal(5), y = lognormal(5, 0.25)),
  list(name = "10x12", x = lognormal(10), y = lognormal(12, 0.22)),
  list(name = "1x7", x = c(0.3), y = lognormal(7)),
  list(name = "49x49", x = lognormal(49), y = lognormal(49, 0.21)),
  list(name = "ties-8x9", x = c(1, 2, 2, 3, 5, 5, 7, 8), y = c(2, 3, 3, 4, 6, 6, 9, 9, 10)),
  list(name = "50x50", x = lognormal(50), y = lognormal(50, 0.23)),
  list(name = "60x70", x = lognormal(60), y = lognormal(70, 0.2)),
  list(name = "ties-int-80x90", x = as.double(sample(0:10, 80, replace = TRUE)),
       y = as.double(sample(1:11, 90, replace = TRUE))),
  list(name = "200x150", x = lognormal(200), y = lognormal(150, 0.21)),
  list(name = "rounded-500x400", x = round(lognormal(500), 3), y = round(lognormal(400, 0.205), 3)),
  list(name = "1000x1000", x = lognormal(1000), y = lognormal(1000, 0.22)),
  list(name = "3000x2000", x = lognormal(3000, 0.2, 0.5), y = lognormal(2000, 0.2, 0.5)),
  list(name = "normal-300x250", x = rnorm(300, 10, 2), y = rnorm(250, 9, 3)),
  list(name = "edge-1-vs-2to60", x = c(1), y = as.double(2:60))
)

num <- function(v) {
  if (is.infinite(v)) return(if (v > 0) "\"+Inf\"" else "\"-Inf\"")
  sprintf("%.17g", v)
}
vec <- function(v) paste0("[", paste(sprintf("%.17g", v), collapse = ","), "]")

out <- c()
results <- c()
for (cs in cases) {
  out <- c(out, sprintf("{\"name\":\"%s\",\"x\":%s,\"y\":%s}", cs$name, vec(cs$x), vec(cs$y)))
  for (alt in c("two.sided", "less", "greater")) {
    for (conf in c(0.95, 0.9, 0.99)) {
      r <- suppressWarnings(wilcox.test(cs$x, cs$y, alternative = alt, conf.int = TRUE, conf.level = conf))
      results <- c(results, sprintf(
        "{\"case\":\"%s\",\"alternative\":\"%s\",\"conf_level\":%s,\"w\":%s,\"p\":%s,\"estimate\":%s,\"lower\":%s,\"upper\":%s,\"reported_conf_level\":%s,\"exact\":%s}",
        cs$name, alt, num(conf), num(unname(r$statistic)), num(r$p.value), num(unname(r$estimate)),
        num(r$conf.int[1]), num(r$conf.int[2]), num(attr(r$conf.int, "conf.level")),
        if (grepl("exact", r$method)) "true" else "false"))
    }
  }
}
json <- paste0("{\n\"generator\":\"internal/gate/canary/testdata/gen_r.R\",\n\"r\":\"", R.version.string,
               "\",\n\"cases\":[\n", paste(out, collapse = ",\n"), "\n],\n\"results\":[\n",
               paste(results, collapse = ",\n"), "\n]}\n")
trailing <- commandArgs(trailingOnly = TRUE)
target <- if (length(trailing) > 0) trailing[1] else file.path(here, "r_wilcox.json")
writeLines(json, target, sep = "")
