"""Labs: gradient estimators for stochastic nodes, discrete latents, the gradient-variance lab."""
