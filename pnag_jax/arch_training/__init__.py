"""Training one architecture on real data (`pnag train-arch`)."""
